import {
  checkChoice,
  checkFunction,
  checkInteger,
  checkObject,
  checkString,
  optional,
  show,
} from '@sluice/kit';

/** Options of {@link createPool} and {@link sharedPool}. */
export interface PoolOptions {
  /** `postgres://user:password@host:port/database?...`, as `pg` understands it. */
  connectionString: string;
  /** Hard ceiling of server connections this pool opens (`pg.Pool`'s `max`). Required. */
  max: number;
  /**
   * How many acquires may wait while all `max` connections are busy; one more fails at once with
   * `E_POOL_EXHAUSTED`. @default 1000
   */
  maxWaiting?: number | undefined;
  /**
   * How long an acquire may take in all (queue plus connect) before it fails with
   * `E_POOL_TIMEOUT` (`pg.Pool`'s `connectionTimeoutMillis`); an acquire's own `timeoutMs` may
   * only shorten it. @default 10000
   */
  acquireTimeoutMs?: number | undefined;
  /**
   * `application_name` of every connection, what `pg_stat_activity` shows (at most 63 bytes).
   * @default 'sluice'
   */
  applicationName?: string | undefined;
  /** Server-side `statement_timeout` of every connection, ms; 0 turns it off. Unset: the server's. */
  statementTimeoutMs?: number | undefined;
  /** Server-side `idle_in_transaction_session_timeout`, ms; 0 turns it off. Unset: the server's. */
  idleInTransactionTimeoutMs?: number | undefined;
  /**
   * How the two server-side timeouts reach the server. `'startup'`: as startup parameters of every
   * connection. `'transaction'`: never at startup; `SET LOCAL` at the start of every
   * `withTransaction` (PgBouncer in transaction mode refuses unknown startup parameters).
   * `'auto'`: startup parameters until a server refuses them ("unsupported startup parameter",
   * PgBouncer), then `'transaction'` for the life of the pool (the refused connect is retried).
   * @default 'auto'
   */
  serverTimeouts?: 'auto' | 'startup' | 'transaction' | undefined;
  /**
   * Client-side backstop on every statement (`pg`'s `query_timeout`), ms; 0 turns it off. A
   * statement that outlives it fails, and its connection is destroyed, not reused.
   * @default statementTimeoutMs + 1000 when statementTimeoutMs > 0, else 0
   */
  queryTimeoutMs?: number | undefined;
  /** An idle connection is closed after this long; 0 keeps idle connections open. @default 10000 */
  idleTimeoutMs?: number | undefined;
  /** A connection is closed (when next idle) once it is this old; 0 turns it off. @default 1800 */
  maxLifetimeSeconds?: number | undefined;
  /**
   * A client checked out longer than this fires `leak` (once per checkout); 0 turns it off. @default 60000
   */
  leakDetectionMs?: number | undefined;
  /**
   * How long opening one server connection may take; at most `acquireTimeoutMs`. @default acquireTimeoutMs
   */
  connectTimeoutMs?: number | undefined;
  /**
   * `close()` waits this long for checked-out clients, then closes their connections anyway. @default 5000
   */
  closeTimeoutMs?: number | undefined;
  /** Clock for leak timing (epoch ms). @default Date.now */
  now?: (() => number) | undefined;
}

/** {@link PoolOptions} with every default filled in. */
export type ResolvedPoolOptions = Readonly<ReturnType<typeof resolvePoolOptions>>;

const DAY_MS = 86_400_000;
const INT32 = 2_147_483_647;

/** Validates options and resolves defaults; throws TypeError/RangeError naming the option. */
export function resolvePoolOptions(o: PoolOptions) {
  checkObject('options', o);
  const ms = <D extends number | undefined>(name: keyof PoolOptions, fallback: D, min = 0, max = DAY_MS) =>
    optional(o[name], fallback, (v) => checkInteger(name, v, min, max));
  const applicationName = optional(o.applicationName, 'sluice', (v) => checkString('applicationName', v));
  if (Buffer.byteLength(applicationName) > 63 || !/^[\x20-\x7e]+$/.test(applicationName)) {
    throw new RangeError(
      `applicationName should be at most 63 printable ASCII characters (PostgreSQL truncates longer names), got ${show(applicationName)}`,
    );
  }
  const acquireTimeoutMs = ms('acquireTimeoutMs', 10_000, 1);
  const statementTimeoutMs = ms('statementTimeoutMs', undefined, 0, INT32);
  return {
    connectionString: checkString('connectionString', o.connectionString),
    max: checkInteger('max', o.max, 1, 10_000),
    maxWaiting: ms('maxWaiting', 1000, 0, 1_000_000),
    acquireTimeoutMs,
    applicationName,
    statementTimeoutMs,
    idleInTransactionTimeoutMs: ms('idleInTransactionTimeoutMs', undefined, 0, INT32),
    serverTimeouts: optional(o.serverTimeouts, 'auto', (v) =>
      checkChoice('serverTimeouts', v, ['auto', 'startup', 'transaction'] as const),
    ),
    queryTimeoutMs: ms('queryTimeoutMs', statementTimeoutMs ? statementTimeoutMs + 1000 : 0, 0, INT32),
    idleTimeoutMs: ms('idleTimeoutMs', 10_000),
    maxLifetimeSeconds: ms('maxLifetimeSeconds', 1800, 0, DAY_MS / 1000),
    leakDetectionMs: ms('leakDetectionMs', 60_000),
    // Within acquireTimeoutMs, so an acquire that finds room waits no longer than its bound.
    connectTimeoutMs: ms('connectTimeoutMs', acquireTimeoutMs, 1, acquireTimeoutMs),
    closeTimeoutMs: ms('closeTimeoutMs', 5000),
    now: optional(o.now, Date.now, (v) => checkFunction<() => number>('now', v)),
  };
}
