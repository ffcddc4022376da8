// A private PgBouncer for the incident benchmark: Debian's `pgbouncer`, on a port of its own, in
// front of the shared PostgreSQL server, configured for the databases it is given, and gone
// (process and folder) on stop() or when this process dies.
import type { ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, pgHost, pgPort, waitFor } from '@sluice/test-support';
import { spawnGuarded, stopChild } from '../demo/child-process.js';

/** A database PgBouncer serves: clients connect to `name` as `user`; it logs in as `user`. */
export interface PgBouncerDatabase {
  readonly name: string;
  readonly user: string;
}

/** Options of {@link startPgBouncer}. */
export interface PgBouncerOptions {
  readonly databases: readonly PgBouncerDatabase[];
  /** Server connections per database and user (`default_pool_size`). @default 20 */
  readonly poolSize?: number;
  /** @default 'transaction' */
  readonly poolMode?: 'session' | 'transaction' | 'statement';
  /** Client connections it accepts (`max_client_conn`). @default 1000 */
  readonly maxClientConn?: number;
  /** The port to listen on (127.0.0.1). @default a free one */
  readonly port?: number;
  /** The user PgBouncer runs as when this process is root (it refuses root). @default 'postgres' */
  readonly runAs?: string;
}

/** A running PgBouncer. */
export interface PgBouncer {
  readonly host: string;
  readonly port: number;
  /** `postgres://<user>@host:port/<name>` for a configured database. */
  url(database: PgBouncerDatabase): string;
  /** Its admin console (`SHOW POOLS`, `SHOW STATS`), as the superuser. */
  readonly adminUrl: string;
  /** The tail of its log. */
  logs(): string;
  /** Stops it (SIGTERM, SIGKILL after 3 s) and removes its folder. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const quote = (s: string): string => `"${s.replaceAll('"', '""')}"`;
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const FOLDER_PREFIX = 'sluice-pgbouncer-';

/** Folders of PgBouncers whose process was killed before it could remove them. */
async function removeStaleFolders(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const pid = Number(/^sluice-pgbouncer-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as { code?: string }).code === 'ESRCH')
        await rm(join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

/**
 * Starts `pgbouncer` with a fresh configuration in a temporary folder and waits until it accepts
 * connections. Authentication is `trust` (as the shared server's), for the databases' users and
 * the superuser (its admin).
 * @throws {Error} when `pgbouncer` is not installed or does not start within 10 s, with its log
 */
export async function startPgBouncer(o: PgBouncerOptions): Promise<PgBouncer> {
  if (o.databases.length === 0) throw new RangeError('databases should list at least one database');
  for (const d of o.databases) {
    if (!PLAIN_NAME.test(d.name) || !PLAIN_NAME.test(d.user)) {
      throw new TypeError(`databases should name plain identifiers, got ${JSON.stringify(d)}`);
    }
  }
  const port = o.port ?? (await freePort());
  const admin = process.env.SLUICE_TEST_PG_USER ?? 'postgres';
  await removeStaleFolders();
  const dir = await mkdtemp(join(tmpdir(), `${FOLDER_PREFIX}${process.pid}-`));
  const users = new Set([admin, ...o.databases.map((d) => d.user)]);
  const ini = [
    '[databases]',
    ...o.databases.map((d) => `${d.name} = host=${pgHost} port=${pgPort} dbname=${d.name} user=${d.user}`),
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    `admin_users = ${admin}`,
    `stats_users = ${[...users].join(', ')}`,
    `pool_mode = ${o.poolMode ?? 'transaction'}`,
    `default_pool_size = ${o.poolSize ?? 20}`,
    'min_pool_size = 0',
    'reserve_pool_size = 0',
    `max_client_conn = ${o.maxClientConn ?? 1000}`,
    'ignore_startup_parameters = extra_float_digits',
    'log_connections = 0',
    'log_disconnections = 0',
    '',
  ].join('\n');
  await writeFile(join(dir, 'pgbouncer.ini'), ini);
  await writeFile(join(dir, 'userlist.txt'), `${[...users].map((u) => `${quote(u)} ""`).join('\n')}\n`);
  // PgBouncer may run as another user: it reads its folder, nothing in it is secret.
  await chmod(dir, 0o755);

  const runAs = process.getuid?.() === 0 ? (o.runAs ?? 'postgres') : undefined;
  const child: ChildProcess = spawnGuarded('pgbouncer', [join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(runAs ? { user: runAs } : {}),
  });
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
  });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= stopChild(child, 3000).then(() => rm(dir, { recursive: true, force: true }));
    return stopped;
  };
  try {
    await waitFor(
      async () => {
        if (spawnError || child.exitCode !== null || child.signalCode !== null) return true;
        return accepts(port);
      },
      { timeoutMs: 10_000, intervalMs: 25, what: `pgbouncer on port ${port}` },
    );
    if (spawnError) throw spawnError;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('pgbouncer exited');
  } catch (e) {
    await stop();
    throw new Error(`pgbouncer did not start: ${tail}`, { cause: e });
  }
  return {
    host: '127.0.0.1',
    port,
    url: (d) => `postgres://${encodeURIComponent(d.user)}@127.0.0.1:${port}/${encodeURIComponent(d.name)}`,
    adminUrl: `postgres://${encodeURIComponent(admin)}@127.0.0.1:${port}/pgbouncer`,
    logs: () => tail,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
