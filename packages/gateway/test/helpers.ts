import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '@sluice/test-support';
import pino from 'pino';
import { chromium, type Page } from 'playwright-core';
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
  /** The admin listener: `/metrics`, `/readyz`, the status page. */
  readonly adminUrl: string;
  /** stdout so far (pino JSON lines). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/** Spawns the CLI (`src/cli.ts` through tsx) and waits until `/healthz` answers. */
export async function spawnGateway(args: readonly string[], port: number): Promise<GatewayChild> {
  const adminPort = await freePort();
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
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
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
    adminUrl: `http://127.0.0.1:${adminPort}`,
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

/** The URL of a gateway's admin listener (`/metrics`, `/readyz`, the status page). */
export function adminUrl(gateway: Gateway): string {
  const address = gateway.adminAddress();
  if (!address) throw new Error('the gateway has no admin listener');
  return address.url;
}

/** Headless Chromium (Debian's, or `SLUICE_CHROMIUM`) with one page; console errors are collected. */
export async function openChromium(): Promise<{
  page: Page;
  errors: string[];
  /** Saves a full-page screenshot as `.artifacts/<name>.png` and returns its path. */
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'sluice-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  return {
    page,
    errors,
    async screenshot(name) {
      const artifacts = join(repoRoot, '.artifacts');
      await mkdir(artifacts, { recursive: true });
      const file = join(artifacts, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}
