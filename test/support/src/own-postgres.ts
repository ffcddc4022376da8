import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { freePort, waitFor } from './ports.js';

/** Options for {@link startOwnPostgres}. */
export interface OwnPostgresOptions {
  /** `max_connections` of the private cluster. @default 100 */
  maxConnections?: number;
  /** Extra server settings, passed as `-c name=value`. */
  settings?: Readonly<Record<string, string | number | boolean>>;
  /** Turns on `log_statement = all` so `onLog` sees every statement the server runs. @default false */
  logStatements?: boolean;
  /** How long `start()` waits for the server to accept connections. @default 30000 */
  startTimeoutMs?: number;
}

/** A private PostgreSQL cluster that a test owns and may kill, restart or stop. */
export interface OwnPostgres {
  readonly host: string;
  readonly port: number;
  /** The folder holding the unix socket (and the data directory under it). */
  readonly socketDir: string;
  readonly dataDir: string;
  /** The postmaster's pid while it runs. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** `postgres://postgres@127.0.0.1:<port>/<database>`. @default database 'postgres' */
  url(database?: string): string;
  /** Runs one statement as the superuser on `database` (a fresh connection each time). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
    database?: string,
  ): Promise<pg.QueryResult<R>>;
  /** Starts the server again on the same port and data (after `kill()` this runs crash recovery). */
  start(): Promise<void>;
  /** A crash: SIGKILLs the postmaster and every backend at once. */
  kill(): Promise<void>;
  /** Shuts down (`fast`: SIGINT, `immediate`: SIGQUIT) and starts again on the same port. */
  restart(options?: { mode?: 'fast' | 'immediate' }): Promise<void>;
  /** Stops the server for good and removes its folder. Idempotent. */
  stop(): Promise<void>;
  /** Every line the server writes to its log (stderr). Returns an unsubscribe function. */
  onLog(listener: (line: string) => void): () => void;
  /** The last few kilobytes of the server log, for error messages. */
  logTail(): string;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Binaries {
  readonly initdb: string;
  readonly postgres: string;
}

interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

let binaries: Binaries | undefined;

/**
 * Finds the PostgreSQL server binaries at run time: `SLUICE_PG_BINDIR`, then `pg_config --bindir`,
 * then the newest `/usr/lib/postgresql/<version>/bin`, then `initdb` on PATH.
 */
export function postgresBinDir(): string {
  return dirname(resolveBinaries().initdb);
}

function resolveBinaries(): Binaries {
  if (binaries) return binaries;
  const candidates: string[] = [];
  if (process.env.SLUICE_PG_BINDIR) candidates.push(process.env.SLUICE_PG_BINDIR);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {
    // pg_config is optional
  }
  const debianRoot = '/usr/lib/postgresql';
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(join(debianRoot, v, 'bin'));
  }
  for (const dir of candidates) {
    const initdb = join(dir, 'initdb');
    const postgres = join(dir, 'postgres');
    if (existsSync(initdb) && existsSync(postgres)) {
      binaries = { initdb, postgres };
      return binaries;
    }
  }
  try {
    const initdb = execFileSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim();
    const postgres = join(dirname(initdb), 'postgres');
    if (initdb && existsSync(postgres)) {
      binaries = { initdb, postgres };
      return binaries;
    }
  } catch {
    // fall through to the error
  }
  throw new Error(
    `PostgreSQL server binaries not found (tried ${candidates.join(', ') || 'nothing'}); set SLUICE_PG_BINDIR`,
  );
}

/** initdb and postgres refuse to run as root: as root, run them as the `postgres` OS user. */
function runAs(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch (cause) {
    throw new Error('running as root needs a `postgres` OS user to own the private cluster', { cause });
  }
}

function childEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', TZ: 'UTC' };
}

async function makeOwnedTempDir(prefix: string, owner: RunAs | undefined): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (owner) await chown(dir, owner.uid, owner.gid);
  return dir;
}

function runToEnd(command: string, args: string[], owner: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: childEnv(),
      cwd: tmpdir(),
      ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4000);
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} failed (${code ?? signal}): ${stderr.trim()}`));
    });
  });
}

/**
 * One initdb per process; further clusters copy its data directory (much faster than initdb).
 * It goes when the last cluster of this process stops, so it is never left behind.
 */
let template: Promise<string> | undefined;
/** Clusters of this process started and not stopped yet. */
let clusters = 0;
const liveDirs = new Set<string>();
const livePids = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  });
}

function templateDataDir(owner: RunAs | undefined): Promise<string> {
  template ??= (async () => {
    const { initdb } = resolveBinaries();
    const base = await makeOwnedTempDir(`sluice-pg-template-${process.pid}-`, owner);
    liveDirs.add(base);
    const data = join(base, 'data');
    await runToEnd(
      initdb,
      ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      owner,
    );
    return data;
  })();
  return template;
}

async function releaseTemplate(): Promise<void> {
  clusters -= 1;
  const current = template;
  if (clusters > 0 || !current) return;
  const data = await current.catch(() => undefined);
  if (clusters > 0 || template !== current) return;
  template = undefined;
  if (!data) return;
  await rm(dirname(data), { recursive: true, force: true });
  liveDirs.delete(dirname(data));
}

/**
 * Removes clusters and templates left by processes that are gone (a test runner may kill its
 * workers before their exit hooks run), stopping a postmaster still running in one.
 */
function sweepStale(): void {
  for (const entry of readdirSync(tmpdir())) {
    const pid = Number(/^sluice-pg-(?:template-)?(\d+)-/.exec(entry)?.[1]);
    if (!pid || pid === process.pid || !isGone(pid)) continue;
    const dir = join(tmpdir(), entry);
    try {
      const postmaster = Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
      const cmdline = readFileSync(`/proc/${postmaster}/cmdline`, 'utf8');
      if (postmaster > 0 && !isGone(postmaster) && cmdline.includes(dir)) process.kill(postmaster, 'SIGQUIT');
    } catch {
      // no server left running there
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Pids whose parent is `pid` (Linux /proc); empty elsewhere. */
function childPids(pid: number): number[] {
  if (!existsSync('/proc')) return [];
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) found.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return found;
}

function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }
}

/**
 * Starts a private PostgreSQL cluster (from `initdb`, trust auth) in a temporary folder on a free
 * port, listening on 127.0.0.1 and on a unix socket in that folder. As root it runs as the
 * `postgres` OS user. Tuned for tests (fsync off). `stop()` removes everything it created.
 *
 * @example
 * await using pg = await startOwnPostgres();
 * await pg.query('CREATE DATABASE app');
 * await pg.restart();
 */
export async function startOwnPostgres(options: OwnPostgresOptions = {}): Promise<OwnPostgres> {
  const maxConnections = options.maxConnections ?? 100;
  if (!Number.isInteger(maxConnections) || maxConnections < 5) {
    throw new RangeError(`maxConnections should be an integer >= 5, got ${String(options.maxConnections)}`);
  }
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const owner = runAs();
  const { postgres } = resolveBinaries();
  installExitHook();
  sweepStale();
  clusters += 1;
  let base: string;
  try {
    const templateDir = await templateDataDir(owner);
    base = await makeOwnedTempDir(`sluice-pg-${process.pid}-`, owner);
    liveDirs.add(base);
    // cp -a keeps owner and modes (the data directory must be 0700 and owned by the server user).
    await runToEnd('cp', ['-a', templateDir, join(base, 'data')], undefined);
  } catch (err) {
    await releaseTemplate();
    throw err;
  }
  const dataDir = join(base, 'data');
  const port = await freePort();
  const host = '127.0.0.1';

  const settings: Record<string, string> = {
    listen_addresses: host,
    unix_socket_directories: base,
    max_connections: String(maxConnections),
    fsync: 'off',
    full_page_writes: 'off',
    shared_buffers: '16MB',
    logging_collector: 'off',
    log_destination: 'stderr',
    log_line_prefix: '%m [%p] %a ',
  };
  if (options.logStatements) settings.log_statement = 'all';
  for (const [k, v] of Object.entries(options.settings ?? {})) settings[k] = String(v);
  const args = ['-D', dataDir, '-p', String(port)];
  for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);

  const listeners = new Set<(line: string) => void>();
  let tail = '';
  let child: ChildProcess | undefined;
  let stopped = false;

  const url = (database = 'postgres'): string => `postgres://postgres@${host}:${port}/${database}`;

  const query = async <R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    database = 'postgres',
  ): Promise<pg.QueryResult<R>> => {
    const client = new pg.Client({ connectionString: url(database), application_name: 'sluice-test-admin' });
    client.on('error', () => {});
    await client.connect();
    try {
      return await client.query<R>(sql, params);
    } finally {
      await client.end().catch(() => {});
    }
  };

  const start = async (): Promise<void> => {
    if (stopped) throw new Error('this PostgreSQL cluster was stopped');
    if (child && child.exitCode === null && child.signalCode === null) return;
    const proc = spawn(postgres, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: childEnv(),
      cwd: base,
      ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
    });
    child = proc;
    if (proc.pid) livePids.add(proc.pid);
    let partial = '';
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-8000);
      if (listeners.size === 0) return;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) for (const l of listeners) l(line);
    });
    proc.once('exit', () => {
      if (proc.pid) livePids.delete(proc.pid);
    });
    let exited = false;
    const exitedEarly = new Promise<never>((_, reject) => {
      proc.once('exit', (code, signal) => {
        exited = true;
        reject(new Error(`postgres exited (${code ?? signal})`));
      });
      proc.once('error', reject);
    });
    exitedEarly.catch(() => {});
    const ready = waitFor(
      async () => {
        const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 1000 });
        client.on('error', () => {});
        try {
          await client.connect();
          await client.query('SELECT 1');
          return true;
        } finally {
          await client.end().catch(() => {});
        }
      },
      { timeoutMs: startTimeoutMs, intervalMs: 50, what: `PostgreSQL on port ${port}` },
    );
    try {
      await Promise.race([ready, exitedEarly]);
    } catch (cause) {
      ready.catch(() => {});
      if (!exited) await kill();
      throw new Error(`private PostgreSQL did not start on port ${port}: ${tail.slice(-2000)}`, { cause });
    }
  };

  const waitExit = async (proc: ChildProcess, timeoutMs: number): Promise<boolean> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      proc.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc?.pid || proc.exitCode !== null || proc.signalCode !== null) return;
    const backends = childPids(proc.pid);
    proc.kill('SIGKILL');
    for (const pid of backends) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await waitExit(proc, 10_000);
    await waitFor(() => backends.every(isGone), { timeoutMs: 10_000, what: 'PostgreSQL backends to exit' });
  };

  const shutdown = async (signal: 'SIGINT' | 'SIGQUIT'): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      child = undefined;
      return;
    }
    proc.kill(signal);
    if (!(await waitExit(proc, 15_000))) await kill();
    child = undefined;
  };

  const restart = async ({ mode = 'fast' }: { mode?: 'fast' | 'immediate' } = {}): Promise<void> => {
    await shutdown(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    await start();
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await shutdown('SIGINT');
    await rm(base, { recursive: true, force: true });
    liveDirs.delete(base);
    await releaseTemplate();
  };

  try {
    await start();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host,
    port,
    socketDir: base,
    dataDir,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    url,
    query,
    start,
    kill,
    restart,
    stop,
    onLog(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    logTail: () => tail,
    [Symbol.asyncDispose]: stop,
  };
}
