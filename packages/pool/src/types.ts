import type pg from 'pg';
import type { LatencySummary } from './latency-window.js';
import type { ConnectionSample } from './monitor.js';

/** Per-acquire options of `connect`, `withClient`, `withTransaction` and `query`. */
export interface AcquireOptions {
  /**
   * Gives up the acquire (`E_POOL_ABORTED`) when aborted, whether queued or connecting: the
   * caller's work never runs, and a connection that arrives later goes straight back to the pool.
   */
  signal?: AbortSignal | undefined;
  /** A shorter bound than the pool's `acquireTimeoutMs` for this acquire (1..acquireTimeoutMs). */
  timeoutMs?: number | undefined;
}

/** Options of `withTransaction`. */
export interface TransactionOptions extends AcquireOptions {
  /** `BEGIN ISOLATION LEVEL ...`. @default the server's default (read committed) */
  isolationLevel?: 'read committed' | 'repeatable read' | 'serializable' | undefined;
  /** `BEGIN READ ONLY`. @default false */
  readOnly?: boolean | undefined;
}

/** The payload of the `leak` event. */
export interface LeakEvent {
  /** Application name of the pool. */
  readonly applicationName: string;
  /** Server process id of the leaked connection (`pg_backend_pid()` read when it opened). */
  readonly pid: number | undefined;
  /** When it was checked out (epoch ms, from the pool's clock). */
  readonly acquiredAt: number;
  /** How long it has been out when detected, ms. */
  readonly heldMs: number;
  /** Stack of the code that checked it out (`connect`, `withClient`, `withTransaction`). */
  readonly stack: string | undefined;
  /** The statement of a `pool.query()` that has held its client this long (first 500 characters). */
  readonly query: string | undefined;
}

/** The payload of the `error` event: a connection error that the pool absorbed. */
export interface PoolErrorEvent {
  readonly applicationName: string;
  readonly error: Error;
  /** `idle`: an idle pooled connection died; `checked-out`: one in use died; `connect`: opening failed. */
  readonly phase: 'idle' | 'checked-out' | 'connect';
  readonly pid: number | undefined;
}

/** The payload of the `warning` event (from `verify()`). */
export interface PoolWarning {
  readonly code: 'E_POOL_MISFIT' | 'E_POOL_TIGHT';
  readonly message: string;
  readonly result: VerifyResult;
}

/** Events of a {@link SluicePool}. */
export interface PoolEvents {
  leak: LeakEvent;
  error: PoolErrorEvent;
  warning: PoolWarning;
  /** A new server connection was opened. */
  connect: { readonly pid: number | undefined };
  /** A server connection was closed (idle timeout, lifetime, broken, close()). */
  remove: { readonly pid: number | undefined };
}

/** A snapshot of a pool's gauges and counters. */
export interface PoolStats {
  /** Configured ceiling. */
  readonly max: number;
  /** Server connections open now (idle + in use + opening). */
  readonly total: number;
  /** Open and idle now. */
  readonly idle: number;
  /** Checked out now. */
  readonly active: number;
  /** Acquires waiting now because all `max` connections were busy when they came. */
  readonly waiting: number;
  /** Configured queue bound. */
  readonly maxWaiting: number;
  /** Leaks detected since the pool was created. */
  readonly leaked: number;
  /** Successful acquires since the pool was created. */
  readonly acquired: number;
  /** Acquires refused with `E_POOL_EXHAUSTED`. */
  readonly exhausted: number;
  /** Acquires that failed with `E_POOL_TIMEOUT`. */
  readonly timeouts: number;
  /** Connection errors absorbed (idle, checked-out and connect). */
  readonly errors: number;
  /** Clients discarded instead of reused (broken, or released inside a transaction). */
  readonly destroyed: number;
  /** Acquire wait (queue + connect) over the last 1024 acquires, ms. */
  readonly acquireWaitMs: LatencySummary;
}

/** What `verify()` found: the server's connection settings, as a monitor sample reports them, and the fit. */
export interface VerifyResult
  extends Readonly<Pick<ConnectionSample, 'maxConnections' | 'reservedConnections'>> {
  /** Connections ordinary roles may open: `maxConnections - reservedConnections`. */
  readonly budget: number;
  /** The pool's `max`. */
  readonly poolMax: number;
  /** Client backends open now that are not this pool's. */
  readonly otherConnections: number;
  /** `poolMax <= budget`: the pool can fit the server at all. */
  readonly fits: boolean;
  /** `poolMax <= budget - otherConnections`: the pool can fit next to what is connected now. */
  readonly fitsNow: boolean;
}

/** Options of `verify()`. */
export interface VerifyOptions {
  /** What to do when `max` exceeds the server's budget. @default 'warn' */
  onMisfit?: 'warn' | 'throw' | undefined;
}

/**
 * A bounded PostgreSQL pool (a wrapper around `pg.Pool`).
 *
 * @example
 * ```ts
 * await using pool = createPool({ connectionString: process.env.DATABASE_URL!, max: 10 });
 * const { rows } = await pool.query<{ n: number }>('SELECT 1 AS n');
 * ```
 */
export interface SluicePool {
  /** Configured ceiling of server connections. */
  readonly max: number;
  /** Server connections open now. */
  readonly totalCount: number;
  /** Open and idle now. */
  readonly idleCount: number;
  /** Checked out now. */
  readonly activeCount: number;
  /** Acquires waiting now because all `max` connections were busy when they came. */
  readonly waitingCount: number;
  /** `application_name` of this pool's connections. */
  readonly applicationName: string;
  /** True once `close()` was called. */
  readonly closed: boolean;

  /**
   * Runs one statement on a pooled connection.
   * @throws {PoolError} `E_POOL_EXHAUSTED`, `E_POOL_TIMEOUT`, `E_POOL_CLOSED`, `E_POOL_ABORTED`, `E_POOL_CONNECT`
   */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
    options?: AcquireOptions,
  ): Promise<pg.QueryResult<R>>;
  /**
   * Checks a client out; the caller must call `client.release()` exactly once (`pg.Pool` throws on
   * a second call), and `client.release(err)` to destroy it (after an error, or inside an open
   * transaction). Prefer `withClient`, which does both.
   */
  connect(options?: AcquireOptions): Promise<pg.PoolClient>;
  /** Runs `fn` with a checked-out client and releases it exactly once, whatever `fn` does. */
  withClient<T>(fn: (client: pg.PoolClient) => Promise<T>, options?: AcquireOptions): Promise<T>;
  /**
   * Runs `fn` inside BEGIN ... COMMIT (ROLLBACK when it throws) and releases the client exactly
   * once. With server timeouts sent per transaction (see `serverTimeouts`), `BEGIN` carries
   * `SET LOCAL statement_timeout` / `idle_in_transaction_session_timeout` in the same round trip.
   */
  withTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Gauges and counters now. */
  stats(): PoolStats;
  /**
   * Compares `max` with the server's `max_connections` minus its reserved connections.
   * @throws {PoolError} `E_POOL_MISFIT` when `onMisfit: 'throw'` and `max` does not fit
   */
  verify(options?: VerifyOptions): Promise<VerifyResult>;
  /** Server process ids of this pool's open connections (`pg_backend_pid()`, read once per connection). */
  backendPids(): number[];
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof PoolEvents>(event: E, listener: (payload: PoolEvents[E]) => void): () => void;
  /** Refuses new work, fails queued acquires with `E_POOL_CLOSED`, drains and ends. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
