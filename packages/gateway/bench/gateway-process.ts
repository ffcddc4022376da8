import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../../test/support/src/index.ts';
import { startService, waitForHttp } from './processes.js';

/** A `sluice-gateway` the bench started as a child process. */
export interface GatewayProcess {
  readonly url: string;
  stop(): Promise<void>;
}

const cliSource = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

/** True when the gateway's CLI exists (the bench skips the gateway column otherwise). */
export function gatewayAvailable(): boolean {
  return existsSync(cliSource);
}

/**
 * Starts the CLI (`src/cli.ts` through tsx, as `pnpm bench` runs everything) in its own process,
 * in front of `upstream`, and waits for `/healthz`. `args` are extra CLI flags.
 */
export async function startGatewayProcess(
  upstream: string,
  args: readonly string[],
): Promise<GatewayProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const service = startService(
    process.execPath,
    [
      '--conditions=source',
      '--import',
      'tsx',
      cliSource,
      '--upstream',
      upstream,
      '--listen',
      `127.0.0.1:${port}`,
      ...args,
    ],
    // No DATABASE_URL/REDIS_URL from the caller's environment: the bench measures the embedded default.
    {
      env: { ...process.env, DATABASE_URL: '', REDIS_URL: '', SLUICE_DATABASE_URL: '', SLUICE_REDIS_URL: '' },
    },
  );
  try {
    const exited = new Promise<never>((_, reject) => {
      service.child.once('exit', (code) =>
        reject(new Error(`sluice-gateway exited (${code}) before listening`)),
      );
    });
    exited.catch(() => undefined);
    await Promise.race([waitForHttp(`${url}/healthz`, 30_000), exited]);
  } catch (e) {
    await service.stop();
    throw e;
  }
  return { url, stop: () => service.stop(15_000) };
}
