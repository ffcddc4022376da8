import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '@sluice/test-support';
import { spawnGuarded, stopChild } from './child-process.js';

/** `sluice-gateway` running as its own process, as an operator would run it. */
export interface GatewayProcess {
  readonly url: string;
  /** Its process id (setpriv execs it in place). */
  readonly pid: number | undefined;
  /** The tail of its stderr (and of stdout, when `logs` is true). */
  logs(): string;
  /** SIGTERM (the gateway drains), SIGKILL after 15 s. Idempotent. */
  stop(): Promise<void>;
}

const distCli = fileURLToPath(new URL('../../../packages/gateway/dist/cli.js', import.meta.url));
const sourceCli = fileURLToPath(new URL('../../../packages/gateway/src/cli.ts', import.meta.url));

/** The command line that runs the gateway's CLI: the build (`pnpm demo` builds first), else the source through tsx. */
export function gatewayCommand(): string[] | undefined {
  if (existsSync(distCli)) return [distCli];
  if (existsSync(sourceCli)) return ['--conditions=source', '--import', 'tsx', sourceCli];
  return undefined;
}

/**
 * Starts the CLI with `args` on a free port and waits until `/healthz` answers. The process dies
 * with this one, however this one ends (see `spawnGuarded`).
 */
export async function startGateway(
  args: readonly string[],
  o: { logs?: boolean } = {},
): Promise<GatewayProcess> {
  const command = gatewayCommand();
  if (!command) throw new Error('the gateway is not built: run `pnpm build` (packages/gateway/dist/cli.js)');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawnGuarded(
    process.execPath,
    [...command, '--listen', `127.0.0.1:${port}`, ...args],
    {
      stdio: ['ignore', o.logs ? 'pipe' : 'ignore', 'pipe'],
      // The demo passes everything as flags: no DATABASE_URL/REDIS_URL leaking in from the shell.
      env: { ...process.env, DATABASE_URL: '', REDIS_URL: '', SLUICE_DATABASE_URL: '', SLUICE_REDIS_URL: '' },
    },
  );
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= stopChild(child, 15_000);
    return stopped;
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) return true; // reported below
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return res.ok;
      },
      { timeoutMs: 30_000, what: `sluice-gateway on ${url}` },
    );
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited with ${child.exitCode ?? child.signalCode}`);
    }
  } catch (e) {
    await stop();
    throw new Error(`sluice-gateway did not start: ${tail}`, { cause: e });
  }
  return { url, pid: child.pid, logs: () => tail, stop };
}
