import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, waitFor } from './ports.js';
import { pgUrl } from './postgres.js';

/** Options of {@link startPgBouncer}. */
export interface PgBouncerOptions {
  /** The PostgreSQL database it fronts, as a URL (host, port, user and database are taken from it). */
  databaseUrl?: string | undefined;
  /** Or a database name on the shared test server. */
  database?: string | undefined;
  /** `default_pool_size`: server connections per (database, user) pool. @default 20 */
  poolSize?: number | undefined;
  /** `pool_mode`. @default 'transaction' */
  poolMode?: 'session' | 'transaction' | 'statement' | undefined;
  /** `max_client_conn`. @default 200 */
  maxClientConn?: number | undefined;
  /** `ignore_startup_parameters` beyond `extra_float_digits` (PgBouncer's own default). @default [] */
  ignoreStartupParameters?: readonly string[] | undefined;
  /** How long `startPgBouncer()` waits for the admin console to answer. @default 15000 */
  startTimeoutMs?: number | undefined;
}

/** A private PgBouncer a test owns. */
export interface OwnPgBouncer {
  /** `postgres://<user>@127.0.0.1:<port>/<database>`: the database, through PgBouncer. */
  readonly url: string;
  /** The admin console: `postgres://<user>@127.0.0.1:<port>/pgbouncer` (the user is in `admin_users`). */
  readonly adminUrl: string;
  readonly port: number;
  /** Its temporary folder (ini, userlist), removed by `stop()`. */
  readonly dir: string;
  /** The pgbouncer process id while it runs. */
  readonly pid: number | undefined;
  /** The last few kilobytes of its log, for error messages. */
  logTail(): string;
  /** Stops it and removes its folder. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const BINARY = process.env.SLUICE_PGBOUNCER ?? '/usr/sbin/pgbouncer';
const PREFIX = 'sluice-pgbouncer-';
const live = new Map<ChildProcess, string>();
let exitHookInstalled = false;

/** PgBouncer refuses to run as root: as root, run it as the `postgres` OS user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string): number =>
    Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? false;
  } catch {
    return true;
  }
}

/** Kills PgBouncers (and removes folders) left by test processes that are gone. */
function sweepStale(): void {
  for (const entry of readdirSync(tmpdir())) {
    const owner = Number(new RegExp(`^${PREFIX}(\\d+)-`).exec(entry)?.[1]);
    if (!owner || owner === process.pid || !isGone(owner)) continue;
    const dir = join(tmpdir(), entry);
    try {
      const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
      if (!isGone(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir))
        process.kill(pid, 'SIGKILL');
    } catch {
      // nothing running there
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Starts Debian's `pgbouncer` (`/usr/sbin/pgbouncer`, or `SLUICE_PGBOUNCER`) on a free port in
 * front of a database, from a generated ini in a temporary folder: `auth_type = trust`, the URL's
 * user in `admin_users`, the given pool mode and size. Every database name is routed to the same
 * server (`* = host=... port=...`). `stop()` (or the process's exit) kills it and removes the folder.
 *
 * @example
 * ```ts
 * await using bouncer = await startPgBouncer({ database: db.name, poolSize: 2 });
 * const pool = createPool({ connectionString: bouncer.url, max: 10 });
 * ```
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<OwnPgBouncer> {
  const target = new URL(options.databaseUrl ?? pgUrl(options.database ?? 'postgres'));
  const user = decodeURIComponent(target.username) || 'postgres';
  const database = decodeURIComponent(target.pathname.slice(1)) || 'postgres';
  const owner = runAs();
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const [child, dir] of live) {
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
  sweepStale();
  const dir = await mkdtemp(join(tmpdir(), `${PREFIX}${process.pid}-`));
  if (owner) await chown(dir, owner.uid, owner.gid);
  const port = await freePort();
  const ini = join(dir, 'pgbouncer.ini');
  await writeFile(join(dir, 'userlist.txt'), `${JSON.stringify(user)} ""\n`);
  await writeFile(
    ini,
    [
      '[databases]',
      `* = host=${target.hostname || '127.0.0.1'} port=${target.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      `admin_users = ${user}`,
      `pool_mode = ${options.poolMode ?? 'transaction'}`,
      `default_pool_size = ${options.poolSize ?? 20}`,
      `max_client_conn = ${options.maxClientConn ?? 200}`,
      `ignore_startup_parameters = ${['extra_float_digits', ...(options.ignoreStartupParameters ?? [])].join(',')}`,
      'logfile =',
      'pidfile =',
      '',
    ].join('\n'),
  );
  const child = spawn(BINARY, [ini], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' },
    ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
  });
  live.set(child, dir);
  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);
  if (child.pid) await writeFile(join(dir, 'pid'), String(child.pid));
  const at = (db: string): string =>
    `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(db)}`;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM'); // immediate shutdown
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
    live.delete(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error('exited');
        const client = new pg.Client({ connectionString: at('pgbouncer'), connectionTimeoutMillis: 1000 });
        client.on('error', () => undefined);
        try {
          await client.connect();
          await client.query('SHOW VERSION');
          return true;
        } finally {
          await client.end().catch(() => undefined);
        }
      },
      { timeoutMs: options.startTimeoutMs ?? 15_000, intervalMs: 50, what: `PgBouncer on port ${port}` },
    );
  } catch (cause) {
    await stop();
    throw new Error(`PgBouncer did not start on port ${port}: ${tail.slice(-2000)}`, { cause });
  }
  return {
    url: at(database),
    adminUrl: at('pgbouncer'),
    port,
    dir,
    get pid() {
      return child.exitCode === null ? child.pid : undefined;
    },
    logTail: () => tail,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
