import {
  checkFunction,
  checkInteger,
  checkObject,
  checkString,
  optional,
  show,
  withTimeout,
} from '@sluice/kit';
import pg from 'pg';
import type { MonitorOptions } from './monitor.js';
import { Repeater, type Scheduled } from './repeater.js';

/** What {@link detectPgBouncer} found. */
export interface PgBouncerInfo {
  /** The admin console: the same URL with database `pgbouncer`. */
  readonly adminUrl: string;
  /** `SHOW VERSION`, e.g. `'PgBouncer 1.18.0'`. */
  readonly version: string;
}

/** Options of {@link detectPgBouncer}. */
export interface DetectPgBouncerOptions {
  /** Longest the whole check (connect + `SHOW VERSION`) may take, ms. @default 2000 */
  timeoutMs?: number | undefined;
  /** Gives up the check (resolving `undefined`). */
  signal?: AbortSignal | undefined;
}

/** The admin console URL of a connection string: the same host, port, user and parameters, database `pgbouncer`. */
function adminUrlOf(connectionString: unknown): string {
  const text = typeof connectionString === 'string' ? connectionString : '';
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url?.protocol !== 'postgres:' && url?.protocol !== 'postgresql:') {
    throw new TypeError(`connectionString should be a postgres:// URL, got ${show(connectionString)}`);
  }
  url.pathname = '/pgbouncer';
  return url.href;
}

/**
 * Tells whether `connectionString` points at PgBouncer: it connects to the admin console on the
 * same host, port and user (database `pgbouncer`) and asks `SHOW VERSION`. The user must be in
 * PgBouncer's `admin_users` or `stats_users`. Resolves `undefined` for anything else (a plain
 * PostgreSQL answers "database pgbouncer does not exist"), for an unreachable server and after
 * `timeoutMs`; one short-lived connection, closed before it resolves.
 *
 * @throws {TypeError} when `connectionString` is not a postgres:// URL
 * @example
 * ```ts
 * const bouncer = await detectPgBouncer(process.env.DATABASE_URL!);
 * if (bouncer) monitorPgBouncer({ adminUrl: bouncer.adminUrl, database: 'cvat', intervalMs: 250 });
 * ```
 */
export async function detectPgBouncer(
  connectionString: string,
  options: DetectPgBouncerOptions = {},
): Promise<PgBouncerInfo | undefined> {
  const adminUrl = adminUrlOf(connectionString);
  const timeoutMs = optional(options.timeoutMs, 2000, (v) => checkInteger('timeoutMs', v, 1, 60_000));
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined); // a late socket error after we gave up
  try {
    const { rows } = await withTimeout(
      async () => {
        await client.connect();
        return client.query<{ version?: unknown }>('SHOW VERSION');
      },
      timeoutMs,
      { signal: options.signal },
    );
    const version = rows[0]?.version;
    return typeof version === 'string' && /pgbouncer/i.test(version) ? { adminUrl, version } : undefined;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** One look at PgBouncer's pools for a database (`SHOW POOLS` + `SHOW DATABASES`). */
export interface PgBouncerSample {
  /** When it was taken, epoch ms. */
  at: number;
  /** The database sampled, or `undefined` for every database but the admin console. */
  database: string | undefined;
  /** `pool_mode` of the pools (`'transaction'`, `'session'`, `'statement'`); undefined without a pool yet. */
  poolMode: string | undefined;
  /** `(database, user)` pools of the database (one per user that connected). */
  pools: number;
  /** Server connections those pools may open: `pool_size` (or `default_pool_size`) per pool. */
  poolSize: number;
  /** `cl_active`: clients linked to a server connection or idle without a request. */
  clientActive: number;
  /** `cl_waiting`: clients that sent a query and wait for a server connection. */
  clientWaiting: number;
  /** `sv_active`: server connections linked to a client. */
  serverActive: number;
  /** `sv_idle`: server connections ready for a client. */
  serverIdle: number;
  /** `sv_used`: server connections idle long enough to need a check before reuse. */
  serverUsed: number;
  /** `maxwait` + `maxwait_us`: how long the oldest waiting client has waited, ms. */
  maxWaitMs: number;
}

/** Options of {@link monitorPgBouncer}: `intervalMs` and `now` as the connection monitor's. */
export interface PgBouncerMonitorOptions extends Pick<MonitorOptions, 'intervalMs' | 'now'> {
  /** The admin console (`detectPgBouncer(...).adminUrl`, or `postgres://user@host:port/pgbouncer`). */
  adminUrl: string;
  /** The upstream's database as clients name it. @default every database but `pgbouncer` */
  database?: string | undefined;
  /** Longest one sample (with a reconnect) may take, ms. @default 2000 */
  timeoutMs?: number | undefined;
}

/** Events of a {@link PgBouncerMonitor}. */
export interface PgBouncerMonitorEvents {
  /** Every sample. */
  sample: PgBouncerSample;
  /** A sample failed (without a listener: one process warning per failing streak). */
  error: unknown;
}

/** A running PgBouncer monitor, like the connection monitor; `close()` also ends its admin connection. */
export interface PgBouncerMonitor extends Scheduled<PgBouncerMonitorEvents> {
  /** The most recent sample, once one was taken. */
  readonly lastSample: PgBouncerSample | undefined;
  /** Takes a sample now (or joins the one in flight). @throws {PoolError} `E_POOL_CLOSED` after close() */
  sampleNow(): Promise<PgBouncerSample>;
}

type Row = Record<string, unknown>;
const num = (value: unknown): number => Number(value ?? 0) || 0;

/**
 * Samples PgBouncer's admin console every `intervalMs` over one kept connection (simple query
 * protocol, as the console requires; reopened after a failure): `SHOW POOLS` for clients active
 * and waiting, server connections active, idle and used and the longest wait, and `SHOW DATABASES`
 * (or `SHOW CONFIG`'s `default_pool_size`) for the pool size. The first sample is taken at once.
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using bouncer = monitorPgBouncer({ adminUrl, database: 'cvat', intervalMs: 250 });
 * bouncer.on('sample', ({ clientWaiting, poolSize }) => limit.observe(clientWaiting, poolSize));
 * ```
 */
export function monitorPgBouncer(options: PgBouncerMonitorOptions): PgBouncerMonitor {
  checkObject('options', options);
  const adminUrl = checkString('adminUrl', options.adminUrl);
  const database = optional(options.database, undefined, (v) => checkString('database', v));
  const intervalMs = checkInteger('intervalMs', options.intervalMs, 10, 86_400_000);
  const timeoutMs = optional(options.timeoutMs, 2000, (v) => checkInteger('timeoutMs', v, 1, 60_000));
  const now = optional(options.now, Date.now, (v) => checkFunction<() => number>('now', v));
  let client: pg.Client | undefined;
  let closed = false;

  const open = async (): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: timeoutMs });
    c.on('error', () => {
      if (client === c) client = undefined;
    });
    await c.connect();
    if (closed) await c.end();
    else client = c;
    return c;
  };
  const wanted = (row: Row, key: string): boolean =>
    database === undefined ? row[key] !== 'pgbouncer' : row[key] === database;

  const sample = async (): Promise<PgBouncerSample> => {
    const c = client ?? (await open());
    const pools = (await c.query<Row>('SHOW POOLS')).rows.filter((r) => wanted(r, 'database'));
    const sizes = (await c.query<Row>('SHOW DATABASES')).rows.filter((r) => wanted(r, 'name'));
    const perPool =
      sizes.length > 0
        ? Math.max(...sizes.map((r) => num(r.pool_size)))
        : num((await c.query<Row>('SHOW CONFIG')).rows.find((r) => r.key === 'default_pool_size')?.value);
    const sum = (key: string): number => pools.reduce((total, r) => total + num(r[key]), 0);
    const mode = pools[0]?.pool_mode;
    return {
      at: now(),
      database,
      poolMode: typeof mode === 'string' ? mode : undefined,
      pools: pools.length,
      poolSize: perPool * Math.max(1, pools.length),
      clientActive: sum('cl_active'),
      clientWaiting: sum('cl_waiting'),
      serverActive: sum('sv_active'),
      serverIdle: sum('sv_idle'),
      serverUsed: sum('sv_used'),
      maxWaitMs: Math.max(0, ...pools.map((r) => num(r.maxwait) * 1000 + num(r.maxwait_us) / 1000)),
    };
  };

  const repeater = new Repeater<PgBouncerMonitorEvents, 'sample'>({
    event: 'sample',
    task: (signal) =>
      withTimeout(sample, timeoutMs, {
        signal,
        message: `PgBouncer did not answer within ${timeoutMs} ms`,
      }).catch((error: unknown) => {
        client?.end().catch(() => undefined); // reopened on the next sample
        client = undefined;
        throw error;
      }),
    intervalMs,
    firstRunMs: 0,
    name: 'PgBouncer monitor: sampling the admin console',
    warningCode: 'SLUICE_PGBOUNCER_SAMPLE_FAILED',
  });
  const close = async (): Promise<void> => {
    closed = true;
    await repeater.close();
    await client?.end().catch(() => undefined);
    client = undefined;
  };
  return {
    get lastSample() {
      return repeater.last;
    },
    sampleNow: () => repeater.runNow(),
    on: (event, listener) => repeater.events.on(event, listener),
    close,
    [Symbol.asyncDispose]: close,
  };
}
