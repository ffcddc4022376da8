#!/usr/bin/env node
// sluice-gateway: reads flags and environment, validates them, starts the gateway, and drains on
// SIGTERM/SIGINT (a second signal exits at once).
import { configHelp } from './config/docs.js';
import { loadConfig, redactConfig } from './config/load.js';
import { formatIssue, isGatewayConfigError } from './errors.js';
import { createGateway, type Gateway, type GatewayAddress } from './gateway.js';
import { GATEWAY_VERSION } from './version.js';

const consequence: Record<string, string> = {
  upstream: 'requests get 502 until it answers',
  database: 'requests that need it get 503 until it answers',
  redis: 'the gateway uses its in-process cache and a local semaphore until it answers',
};

/** What a listen error code means, in words. */
const LISTEN_ERRORS = new Map([
  ['EADDRINUSE', 'the address is in use'],
  ['EACCES', 'permission denied'],
  ['EADDRNOTAVAIL', 'no such address on this machine'],
]);

/** One plain line: where it listens, where it forwards, in what mode, where the status page is. */
function startupLine(gateway: Gateway, address: GatewayAddress): string {
  const c = gateway.config;
  const s = gateway.status();
  const database = c.databaseUrl === undefined ? undefined : new URL(c.databaseUrl);
  const mode =
    database === undefined
      ? `embedded: in-process cache, credentials checked by the upstream, limit ${s.admission.limit}`
      : `database ${database.hostname}:${database.port || 5432}${database.pathname}` +
        `${s.admission.limitSource === 'pgbouncer' ? ' through PgBouncer' : ''}, limit ${s.admission.limit} under ${s.admission.ceiling}`;
  const redis = c.redisUrl === undefined ? '' : `, shared cache and limit in Redis`;
  const admin = gateway.adminAddress();
  const status = admin ? `; status ${admin.url}/sluice/status` : '';
  return `sluice-gateway ${GATEWAY_VERSION} on ${address.url} -> ${c.upstream} (${mode}${redis})${status}`;
}

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
  let address: GatewayAddress;
  try {
    address = await gateway.listen();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // Node's listen errors say which address failed (the public or the admin listener).
    const failed = error as { address?: unknown; port?: unknown };
    const where =
      typeof failed.address === 'string' && typeof failed.port === 'number'
        ? `${failed.address}:${failed.port}`
        : `${result.config.listen.host}:${result.config.listen.port}`;
    const reason =
      LISTEN_ERRORS.get(String(code)) ?? (error instanceof Error ? error.message : String(error));
    process.stderr.write(
      `sluice-gateway: cannot listen on ${where}: ${reason}${typeof code === 'string' ? ` (${code})` : ''}. Pass --listen host:port (and --admin-listen host:port or off).\n`,
    );
    await gateway.close(0).catch(() => undefined);
    return 1;
  }
  process.stdout.write(`${startupLine(gateway, address)}\n`);
  // What is not there yet is said now, plainly (the gateway starts anyway and copes).
  void gateway.readiness().then((report) => {
    for (const [name, check] of Object.entries(report.checks)) {
      if (!check.ok)
        process.stderr.write(
          `sluice-gateway: warning: ${name} unreachable at start (${check.error}); ${consequence[name] ?? 'retrying'}\n`,
        );
    }
  });
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
