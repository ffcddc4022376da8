import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../support/src/index.ts';

// A newcomer's path through the root README and the gateway's README, command by command, on a
// fresh `git clone` of this checkout's HEAD (what would land: uncommitted changes are not in it).
// The commands are read from the READMEs' code, so a README that changes changes what runs.
// Stand-ins, and why: `pnpm install` runs as `pnpm install --frozen-lockfile --offline` (no
// network in tests; the store already holds the lockfile's packages); `npm i -g pnpm@X` is not
// run (it would change the machine), its version is compared with the pnpm that runs; the
// gateway's ports come from SLUICE_LISTEN / SLUICE_ADMIN_LISTEN (documented variables), so the
// commands run as written without colliding with anything on 8090/8091. No PostgreSQL, no Redis:
// the gateway runs embedded, and `pnpm demo` is only asked for --help and given a bad value.

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
/** The line `sluice-gateway` prints once it listens. */
const startupLine = /^sluice-gateway \S+ on \S+ -> .*$/m;

/** A shell as a newcomer has it: none of this run's pnpm, npm or Sluice settings. */
function newcomerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(npm_|pnpm_|PNPM_|SLUICE_|DATABASE_URL$|REDIS_URL$|DJANGO_SECRET_KEY$|LOG_LEVEL$)/i.test(k),
    ),
  );
  return { ...env, ...extra };
}

/** The lines of the first ```sh block after `heading`, comments and blank lines dropped. */
function shBlock(markdown: string, heading: string): string[] {
  const at = markdown.indexOf(`\n${heading}\n`);
  expect(at, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  const block = /```sh\n([\s\S]*?)```/.exec(markdown.slice(at))?.[1] ?? '';
  return block
    .split('\n')
    .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
    .filter((line) => line !== '');
}

/** Inline code spans that start with `prefix` (a line break inside a span reads as a space). */
function inlineCommands(markdown: string, prefix: string): string[] {
  return [...markdown.matchAll(/`([^`\n]*(?:\n[^`\n]*)?)`/g)]
    .map((m) => (m[1] ?? '').replace(/\s*\n\s*/g, ' '))
    .filter((c) => c === prefix || c.startsWith(`${prefix} `));
}

interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Runs `command` (words split on spaces, no shell: the README commands have no quoting). */
function start(cwd: string, command: string, env: NodeJS.ProcessEnv) {
  const [bin = '', ...args] = command.split(/\s+/);
  // Its own process group: a signal reaches pnpm, the shell it runs and node, as Ctrl-C does.
  const child = spawn(bin, args, {
    cwd,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  let startupLineAt: number | undefined;
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (startupLineAt === undefined && startupLine.test(stdout)) startupLineAt = performance.now();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<Done>((resolve) => {
    // 'close': every process holding the pipes has gone, not only the one spawned.
    child.once('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, stdout: () => stdout, stderr: () => stderr, startupLineAt: () => startupLineAt };
}

async function runToEnd(cwd: string, command: string, timeoutMs: number, env = newcomerEnv()): Promise<Done> {
  const { child, done } = start(cwd, command, env);
  const timer = setTimeout(() => process.kill(-(child.pid ?? 0), 'SIGKILL'), timeoutMs);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

describe("a newcomer's path through the READMEs, on a fresh clone", () => {
  let clone: string;
  let rootReadme: string;
  let gatewayReadme: string;

  beforeAll(async () => {
    clone = mkdtempSync(join(tmpdir(), 'sluice-newcomer-'));
    const cloned = await runToEnd(repoRoot, `git clone --quiet ${repoRoot} ${clone}`, 30_000);
    expect(cloned.code, cloned.stderr).toBe(0);
    rootReadme = readFileSync(join(clone, 'README.md'), 'utf8');
    gatewayReadme = readFileSync(join(clone, 'packages/gateway/README.md'), 'utf8');
    const installed = await runToEnd(clone, 'pnpm install --frozen-lockfile --offline', 90_000);
    expect(installed.code, installed.stderr + installed.stdout).toBe(0);
  }, 120_000);

  afterAll(() => {
    for (const child of children) {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    if (clone) rmSync(clone, { recursive: true, force: true });
  });

  /** Starts a long-running README command, waits for the start-up line, then stops it with SIGTERM. */
  async function runGateway(command: string): Promise<{ line: string; listen: string; admin: string }> {
    const listen = `127.0.0.1:${await freePort()}`;
    const admin = `127.0.0.1:${await freePort()}`;
    const run = start(clone, command, newcomerEnv({ SLUICE_LISTEN: listen, SLUICE_ADMIN_LISTEN: admin }));
    try {
      await waitFor(() => startupLine.test(run.stdout()) || run.child.exitCode !== null, {
        timeoutMs: 30_000,
        intervalMs: 20,
        what: `the start-up line of ${command}`,
      });
      const line = startupLine.exec(run.stdout())?.[0];
      expect(line, `${command}: ${run.stderr()}`).toBeDefined();
      const health = await fetch(`http://${listen}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      // The status page the start-up line points at.
      const statusUrl = /; status (\S+)$/.exec(line ?? '')?.[1];
      expect(statusUrl).toBe(`http://${admin}/sluice/status`);
      const page = await fetch(statusUrl ?? '');
      await page.arrayBuffer();
      expect(page.status).toBe(200);
      return { line: line ?? '', listen, admin };
    } finally {
      // To the whole group, as Ctrl-C in a terminal: pnpm goes at once, the gateway drains.
      if (run.child.pid) process.kill(-run.child.pid, 'SIGTERM');
      const end = await run.done;
      expect(end.stdout).toContain('"msg":"sluice-gateway closed"');
    }
  }

  it("root README's first command: the pnpm it installs is this one, then install and start", async () => {
    // The section's second block, `bash .ci/run`, is CI's whole run (Debian packages, 8 minutes): not here.
    const [first, ...rest] = shBlock(rootReadme, '## Two commands');
    expect(rest).toEqual([]);
    const steps = first?.split(' && ') ?? [];
    const packageManager = JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')).packageManager;
    expect(steps).toEqual([`npm i -g ${packageManager}`, 'pnpm install', 'pnpm start']);
    const version = await runToEnd(clone, 'pnpm --version', 10_000);
    expect(`pnpm@${version.stdout.trim()}`).toBe(packageManager);
    // `pnpm install` ran in beforeAll (frozen and offline); `pnpm start` builds and starts.
    const { line, listen, admin } = await runGateway('pnpm start');
    // The line the gateway README shows, with this run's ports: "..." stands for the mode's details.
    const example = /it prints one plain line on stdout,\s+e\.g\. `([^`]+)`/.exec(gatewayReadme)?.[1];
    expect(example).toBeDefined();
    const shown = (example ?? '')
      .replace(/\s*\n\s*/g, ' ')
      .replace('127.0.0.1:8090', listen)
      .replace('127.0.0.1:8091', admin);
    const pattern = shown
      .split('...')
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')
      .replace(/^sluice-gateway [^ ]+ /, 'sluice-gateway \\S+ ');
    expect(line).toMatch(new RegExp(`^${pattern}$`));
    expect(line).toContain('-> http://127.0.0.1:8080 (embedded: ');
  }, 60_000);

  it("runs the gateway README's quick start, and the root README names only those commands", async () => {
    const commands = shBlock(gatewayReadme, '## Quick start');
    expect(commands).toEqual([
      'pnpm start',
      'pnpm start -- --help',
      'pnpm start -- --upstream http://127.0.0.1:8000 --db-budget 40',
    ]);
    for (const c of inlineCommands(rootReadme, 'pnpm start')) expect(commands).toContain(c);
    for (const command of commands) {
      if (command.includes('--help')) {
        const help = await runToEnd(clone, command, 30_000);
        expect(help.code, help.stderr).toBe(0);
        expect(help.stdout).toContain('Usage: sluice-gateway [flags]');
        for (const flag of [
          '--upstream <url>',
          '--listen <host:port>',
          '--admin-listen',
          '--db-budget <int>',
        ]) {
          expect(help.stdout).toContain(flag);
        }
      } else {
        const { line } = await runGateway(command);
        const upstream = /--upstream (\S+)/.exec(command)?.[1] ?? 'http://127.0.0.1:8080';
        expect(line).toContain(`-> ${upstream} (embedded: `);
        const budget = /--db-budget (\d+)/.exec(command)?.[1] ?? '20';
        expect(line).toContain(`limit ${budget})`);
      }
    }
  }, 60_000);

  it('prints the start-up line within a second of the gateway process starting; SIGTERM exits 0', async () => {
    // `pnpm start` is `pnpm build && node packages/gateway/dist/cli.js`: the build (done by the
    // runs above) is not the gateway starting, so this times node running the built CLI itself,
    // from spawn to the line on stdout.
    const scripts = JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')).scripts;
    expect(scripts.start).toBe('pnpm build && node packages/gateway/dist/cli.js');
    const built = await runToEnd(clone, 'pnpm build', 60_000); // done already unless run alone
    expect(built.code, built.stderr).toBe(0);
    const env = newcomerEnv({
      SLUICE_LISTEN: `127.0.0.1:${await freePort()}`,
      SLUICE_ADMIN_LISTEN: `127.0.0.1:${await freePort()}`,
    });
    const t0 = performance.now();
    const run = start(clone, 'node packages/gateway/dist/cli.js', env);
    await waitFor(() => run.startupLineAt() !== undefined || run.child.exitCode !== null, {
      timeoutMs: 10_000,
      what: 'the start-up line',
    });
    expect(run.stdout(), run.stderr()).toMatch(startupLine);
    const ms = (run.startupLineAt() ?? Number.POSITIVE_INFINITY) - t0;
    expect(ms).toBeLessThan(1000);
    run.child.kill('SIGTERM');
    const end = await run.done;
    expect({ code: end.code, signal: end.signal }).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('pnpm demo -- --help lists its flags; a bad value is one line and exit code 2', async () => {
    const bulkReadme = readFileSync(join(clone, 'examples/bulk-export/README.md'), 'utf8');
    for (const readme of [rootReadme, bulkReadme]) expect(readme).toContain('`pnpm demo -- --help`');
    const help = await runToEnd(clone, 'pnpm demo -- --help', 60_000);
    expect(help.code, help.stderr).toBe(0);
    for (const flag of ['--tasks N', '--concurrency N', '--connection-limit N', '--budget N']) {
      expect(help.stdout).toContain(flag);
    }
    const bad = await runToEnd(clone, 'pnpm demo -- --tasks x', 60_000);
    expect(bad.code).toBe(2);
    // Besides pnpm's own lines (`$ ...`, ELIFECYCLE), the demo's one line, and no stack trace.
    const own = bad.stderr
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('$ ') && !l.includes('ELIFECYCLE'));
    expect(own).toEqual([
      'pnpm demo: --tasks must be a whole number from 1 to 5000, got "x" (pnpm demo -- --help lists the flags)',
    ]);
  }, 90_000);
});
