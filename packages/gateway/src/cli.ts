#!/usr/bin/env node
// sluice-gateway: reads flags and environment, validates them, starts the gateway, and drains on
// SIGTERM/SIGINT (a second signal exits at once).
import { configHelp } from './config/docs.js';
import { loadConfig, redactConfig } from './config/load.js';
import { formatIssue, isGatewayConfigError } from './errors.js';
import { createGateway } from './gateway.js';
import { GATEWAY_VERSION } from './version.js';

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${configHelp()}\n`);
    return 0;
  }
  if (argv.includes('--version')) {
    process.stdout.write(`${GATEWAY_VERSION}\n`);
    return 0;
  }
  const printConfig = argv.includes('--print-config');
  const result = loadConfig(
    argv.filter((a) => a !== '--print-config'),
    process.env,
  );
  if (!result.ok) {
    process.stderr.write(`sluice-gateway: invalid configuration (${result.issues.length} problem(s)):\n`);
    for (const issue of result.issues) process.stderr.write(`  ${formatIssue(issue)}\n`);
    process.stderr.write('Run sluice-gateway --help for every flag and environment variable.\n');
    return 2;
  }
  if (printConfig) {
    process.stdout.write(
      `${JSON.stringify(redactConfig(result.config), (_key, value: unknown) => (value === undefined ? null : value), 2)}\n`,
    );
    return 0;
  }

  const gateway = createGateway(result.config);
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      gateway.logger.warn({ signal }, 'second signal: exiting without draining');
      gateway.logger.flush();
      process.exit(1);
    }
    gateway.logger.info({ signal }, 'signal received: draining');
    gateway.close().then(
      () => process.exit(0),
      (error: unknown) => {
        gateway.logger.error({ err: error }, 'shutdown failed');
        gateway.logger.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await gateway.listen();
  } catch (error) {
    gateway.logger.fatal({ err: error }, 'sluice-gateway could not start');
    await gateway.close(0).catch(() => undefined);
    return 1;
  }
  return -1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `sluice-gateway: ${isGatewayConfigError(error) ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
