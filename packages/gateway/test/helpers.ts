import { type ChildProcess, spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/test-support';
import pino from 'pino';
import type { AccessLogEntry, Gateway } from '../src/index.ts';

/** The repository root, from this file. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** A pino logger that keeps its lines in memory (tests assert on them). */
export function memoryLogger(): {
  logger: pino.Logger;
  lines: () => Record<string, unknown>[];
  text: () => string;
} {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  const text = (): string => chunks.join('');
  return {
    logger,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Collects the gateway's access log entries. */
export function recordRequests(gateway: Gateway): AccessLogEntry[] {
  const entries: AccessLogEntry[] = [];
  gateway.on('request', (entry) => entries.push(entry));
  return entries;
}

/** A `sluice-gateway` child process started from the TypeScript sources. */
export interface GatewayChild {
  readonly child: ChildProcess;
  readonly url: string;
  /** stdout so far (pino JSON lines). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/** Spawns the CLI (`src/cli.ts` through tsx) and waits until `/healthz` answers. */
export async function spawnGateway(args: readonly string[], port: number): Promise<GatewayChild> {
  const child = spawn(
    process.execPath,
    [
      '--conditions=source',
      '--import',
      'tsx',
      'packages/gateway/src/cli.ts',
      ...args,
      '--listen',
      `127.0.0.1:${port}`,
    ],
    {
      cwd: repoRoot,
      // TMPDIR: its spool files and tsx's cache go where the test run keeps its own.
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        ...(process.env.TMPDIR && { TMPDIR: process.env.TMPDIR }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString('utf8');
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  const url = `http://127.0.0.1:${port}`;
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  await waitFor(
    async () => {
      if (gone) throw new Error(`gateway exited: ${err}`);
      const res = await fetch(`${url}/healthz`);
      return res.status === 200;
    },
    { timeoutMs: 20_000, what: `sluice-gateway on ${url}` },
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\nstderr: ${err}\nstdout: ${out}`);
  });
  return {
    child,
    url,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** Resident set size and its peak (VmHWM) of a process, bytes, from /proc. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}
