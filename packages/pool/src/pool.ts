import { performance } from 'node:perf_hooks';
import {
  armWait,
  checkChoice,
  checkInteger,
  Evented,
  isTimeoutError,
  optional,
  show,
  withTimeout,
} from '@sluice/kit';
import pg from 'pg';
import { poolChannels } from './channels.js';
import { isConnectionError } from './connection-errors.js';
import { PoolError, type PoolErrorCode } from './errors.js';
import { LatencyWindow } from './latency-window.js';
import { type PoolOptions, type ResolvedPoolOptions, resolvePoolOptions } from './options.js';
import { BUDGET_COLUMNS, clientBackendSql } from './server-budget.js';
import type {
  AcquireOptions,
  PoolEvents,
  PoolStats,
  PoolWarning,
  SluicePool,
  TransactionOptions,
  VerifyOptions,
  VerifyResult,
} from './types.js';

/**
 * Creates a bounded pool on `pg.Pool`'s documented API: at most `max` server connections, at most
 * `maxWaiting` acquires waiting (one more fails at once with `E_POOL_EXHAUSTED`), every acquire
 * bounded by `acquireTimeoutMs` (and by its own `timeoutMs`/`signal`), leak detection, and
 * `'error'` listeners so a dying connection, idle or checked out, never crashes the process.
 *
 * @throws {TypeError | RangeError} when an option is missing or out of range (the message names it)
 * @example
 * ```ts
 * await using pool = createPool({ connectionString: process.env.DATABASE_URL!, max: 10 });
 * await pool.verify({ onMisfit: 'throw' });
 * const user = await pool.withTransaction(async (c) => {
 *   const { rows } = await c.query('SELECT id FROM auth_user WHERE username = $1 FOR UPDATE', ['ada']);
 *   return rows[0];
 * });
 * ```
 */
export function createPool(options: PoolOptions): SluicePool {
  return new BoundedPool(resolvePoolOptions(options));
}

/** A stack captured where a client was checked out (for leak reports). */
type AcquireSite = Pick<Error, 'name' | 'message' | 'stack'>;

type AcquireDone = (error: Error | undefined, checkout: Checkout | undefined) => void;

/** One acquire handed to `pg.Pool#connect`; once `settled`, a client it still gets goes straight back. */
type Acquire = ReturnType<typeof newAcquire>;

function newAcquire(site: AcquireSite | undefined, timeoutMs: number, queued: boolean, done: AcquireDone) {
  return {
    site,
    started: performance.now(),
    timeoutMs,
    /** It came while all `max` connections were busy: it counts as waiting. */
    queued,
    done,
    settled: false,
    retried: false,
    disarm: undefined as (() => void) | undefined,
  };
}

/** One checked-out client. */
type Checkout = ReturnType<typeof newCheckout>;

function newCheckout(client: pg.PoolClient, acquiredAt: number, site: AcquireSite | undefined) {
  return {
    client,
    acquiredAt,
    site,
    /** The SQL of a `pool.query()` checkout. */
    query: undefined as string | undefined,
    broken: undefined as Error | undefined,
    released: false,
    leaked: false,
  };
}

const inTransaction = (client: pg.ClientBase): boolean => {
  const status = client.getTransactionStatus();
  return status === 'T' || status === 'E';
};

/**
 * The pool's connections: `connect()` also reads the server's `pg_backend_pid()` (one round trip
 * per connection, before pg.Pool hands the client out), the documented way to learn the pid.
 */
class SluiceClient extends pg.Client {
  backendPid: number | undefined;

  override connect(): Promise<pg.Client>;
  override connect(callback: (error: Error | undefined) => void): void;
  override connect(callback?: (error: Error | undefined) => void): Promise<pg.Client> | undefined {
    const connected = super
      .connect()
      .then(() => this.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))
      .then(
        ({ rows }) => {
          this.backendPid = rows[0]?.pid;
          return this;
        },
        (error: unknown) => {
          this.end().catch(() => undefined); // pg.Pool drops a client whose connect failed, unclosed
          throw error;
        },
      );
    if (!callback) return connected;
    connected.then(() => callback(undefined), callback);
    return undefined;
  }
}

const pidOf = (client: pg.ClientBase): number | undefined => (client as SluiceClient).backendPid;

/** The server's budget and the client backends that are not this pool's (`$1`, and the one asking). */
const BUDGET_SQL = `SELECT ${BUDGET_COLUMNS},
       (count(*) FILTER (WHERE NOT (pid = ANY($1::int[]) OR pid = pg_backend_pid())))::int AS others
  FROM pg_stat_activity WHERE ${clientBackendSql()}`;

/** PgBouncer's answer to a startup parameter it does not know (e.g. `statement_timeout`). */
const isStartupRefusal = (error: unknown): boolean =>
  error instanceof Error && /unsupported startup parameter/i.test(error.message);

/** The {@link SluicePool} implementation behind {@link createPool}. */
class BoundedPool extends Evented<PoolEvents> implements SluicePool {
  readonly #o: ResolvedPoolOptions;
  readonly #pg: pg.Pool;
  readonly #checkouts = new Map<pg.ClientBase, Checkout>();
  /** Acquires in flight, so close() can fail them; the order of service is pg.Pool's. */
  readonly #pending = new Set<Acquire>();
  /** Server connections opened and not yet fully closed. */
  readonly #clients = new Set<pg.ClientBase>();
  readonly #discarded = new WeakSet<pg.ClientBase>();
  readonly #waits = new LatencyWindow(1024);
  readonly #sweepTimer: NodeJS.Timeout | undefined;
  /** Server timeouts sent as startup parameters; emptied once a server refuses them. */
  #startup: pg.ClientConfig = {};
  #closing: Promise<void> | undefined;
  #allRemoved: (() => void) | undefined;
  #queued = 0;
  /** The counters of `stats()`. */
  readonly #counts = { leaked: 0, acquired: 0, exhausted: 0, timeouts: 0, errors: 0, destroyed: 0 };

  constructor(o: ResolvedPoolOptions) {
    super();
    this.#o = o;
    if (o.serverTimeouts !== 'transaction') {
      if (o.statementTimeoutMs !== undefined) this.#startup.statement_timeout = o.statementTimeoutMs;
      if (o.idleInTransactionTimeoutMs !== undefined) {
        this.#startup.idle_in_transaction_session_timeout = o.idleInTransactionTimeoutMs;
      }
    }
    const pool = this;
    this.#pg = new pg.Pool({
      connectionString: o.connectionString,
      max: o.max,
      application_name: o.applicationName,
      idleTimeoutMillis: o.idleTimeoutMs,
      maxLifetimeSeconds: o.maxLifetimeSeconds,
      // Bounds both the wait in pg.Pool's queue and a new connection: acquireTimeoutMs in all.
      connectionTimeoutMillis: o.acquireTimeoutMs,
      ...(o.queryTimeoutMs > 0 ? { query_timeout: o.queryTimeoutMs } : {}),
      // pg.Pool's documented custom Client: the connect timeout of one connection, and the server
      // timeouts for as long as the server accepts them as startup parameters.
      Client: class extends SluiceClient {
        constructor(config?: pg.ClientConfig) {
          super({ ...config, ...pool.#startup, connectionTimeoutMillis: o.connectTimeoutMs });
        }
      },
    });
    // Without this listener an idle client's error (server restart, pg_terminate_backend) is an
    // unhandled 'error' event and kills the process. pg.Pool has already dropped the client.
    this.#pg.on('error', (error, client) => {
      // A client this pool already discarded may still report its socket closing: counted once.
      if (!this.#discarded.has(client)) this.#clientError(error, 'idle', pidOf(client));
    });
    this.#pg.on('connect', (client) => {
      this.#clients.add(client);
      // pg.Pool listens for errors only while a client is idle; a checked-out client's error with
      // no listener would throw. This one stays for the client's life and acts while it is out.
      client.on('error', (error) => {
        const co = this.#checkouts.get(client);
        if (co) this.#markBroken(co, error);
      });
      this.events.emit('connect', { pid: pidOf(client) });
    });
    this.#pg.on('release', (error, client) => {
      const co = this.#checkouts.get(client);
      if (!co) return; // an acquire that gave up, handing its client straight back
      co.released = true;
      this.#checkouts.delete(client);
      if (error) {
        this.#counts.destroyed += 1;
        this.#discarded.add(client);
      }
    });
    this.#pg.on('remove', (client) => {
      this.#clients.delete(client);
      this.events.emit('remove', { pid: pidOf(client) });
      if (this.#clients.size === 0) this.#allRemoved?.();
    });
    if (o.leakDetectionMs > 0) {
      const every = Math.min(1000, Math.max(10, Math.floor(o.leakDetectionMs / 4)));
      this.#sweepTimer = setInterval(() => this.#sweepLeaks(), every);
      this.#sweepTimer.unref();
    }
  }

  get max(): number {
    return this.#o.max;
  }
  get totalCount(): number {
    return this.#pg.totalCount;
  }
  get idleCount(): number {
    return this.#pg.idleCount;
  }
  get activeCount(): number {
    return this.#checkouts.size;
  }
  get waitingCount(): number {
    return this.#queued;
  }
  get applicationName(): string {
    return this.#o.applicationName;
  }
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
    options?: AcquireOptions,
  ): Promise<pg.QueryResult<R>> {
    return new Promise((resolve, reject) => {
      // No stack here: capturing one costs more than pg's whole acquire, and query() always
      // releases, so what it can "leak" is a slow statement; the leak event names the SQL instead.
      this.#acquireThen(undefined, options, (acquireError, co) => {
        if (!co) {
          reject(acquireError);
          return;
        }
        co.query = text;
        const done = (error: Error | undefined, result?: pg.QueryResult<R>): void => {
          if (error && isConnectionError(error)) this.#markBroken(co, error);
          this.#release(co);
          if (error) reject(error);
          else resolve(result as pg.QueryResult<R>);
        };
        try {
          co.client.query<R>(text, values as unknown[], (error, result) => done(error ?? undefined, result));
        } catch (error) {
          done(toError(error));
        }
      });
    });
  }

  async connect(options?: AcquireOptions): Promise<pg.PoolClient> {
    return (await this.#acquire(this.#captureSite(this.connect), options)).client;
  }

  async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>, options?: AcquireOptions): Promise<T> {
    const co = await this.#acquire(this.#captureSite(this.withClient), options);
    try {
      return await fn(co.client);
    } catch (error) {
      if (isConnectionError(error)) this.#markBroken(co, toError(error));
      throw error;
    } finally {
      this.#release(co);
    }
  }

  async withTransaction<T>(
    fn: (client: pg.PoolClient) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T> {
    const begin = beginStatement(options);
    const co = await this.#acquire(this.#captureSite(this.withTransaction), options);
    const { client } = co;
    try {
      await client.query(begin + this.#localTimeouts());
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (isConnectionError(error)) this.#markBroken(co, toError(error));
      if (!co.broken && !co.released && inTransaction(client)) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          this.#markBroken(co, toError(rollbackError));
        });
      }
      throw error;
    } finally {
      this.#release(co);
    }
  }

  stats(): PoolStats {
    return {
      max: this.#o.max,
      total: this.#pg.totalCount,
      idle: this.#pg.idleCount,
      active: this.#checkouts.size,
      waiting: this.#queued,
      maxWaiting: this.#o.maxWaiting,
      ...this.#counts,
      acquireWaitMs: this.#waits.summary(),
    };
  }

  async verify(options?: VerifyOptions): Promise<VerifyResult> {
    const onMisfit = checkChoice('onMisfit', options?.onMisfit ?? 'warn', ['warn', 'throw'] as const);
    const { rows } = await this.query<{ mc: number; rc: number; others: number }>(BUDGET_SQL, [
      this.backendPids(),
    ]);
    const { mc: maxConnections, rc: reservedConnections, others: otherConnections } = rows[0]!; // an aggregate
    const budget = maxConnections - reservedConnections;
    const free = budget - otherConnections;
    const name = this.#o.applicationName;
    const result: VerifyResult = {
      maxConnections,
      reservedConnections,
      budget,
      poolMax: this.#o.max,
      otherConnections,
      fits: this.#o.max <= budget,
      fitsNow: this.#o.max <= free,
    };
    if (!result.fits) {
      const message =
        `pool '${name}' max ${this.#o.max} does not fit the server's budget of ${budget} ` +
        `connections (max_connections ${maxConnections} - reserved ${reservedConnections})`;
      if (onMisfit === 'throw') throw new PoolError('E_POOL_MISFIT', message);
      this.#warn({ code: 'E_POOL_MISFIT', message, result });
    } else if (!result.fitsNow) {
      const message =
        `pool '${name}' max ${this.#o.max} exceeds the ${Math.max(0, free)} connections free ` +
        `now (${otherConnections} of ${budget} are used by other clients)`;
      this.#warn({ code: 'E_POOL_TIGHT', message, result });
    }
    return result;
  }

  backendPids(): number[] {
    return [...this.#clients].flatMap((client) => pidOf(client) ?? []);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    for (const a of [...this.#pending]) {
      this.#settle(a);
      a.done(this.#failure('E_POOL_CLOSED', 'the pool closed while the acquire waited'), undefined);
    }
    const ended = this.#pg.end();
    await withTimeout(() => ended, this.#o.closeTimeoutMs).catch((e: unknown) => {
      if (!isTimeoutError(e)) throw e;
      const error = new PoolError('E_POOL_CLOSED', 'the pool closed while this client was checked out');
      for (const co of [...this.#checkouts.values()]) co.client.release(error);
      return ended;
    });
    // pg.end() resolves once no client is left in the pool; their sockets close a moment later.
    if (this.#clients.size > 0) {
      const removed = new Promise<void>((resolve) => {
        this.#allRemoved = resolve;
      });
      await withTimeout(() => removed, this.#o.closeTimeoutMs).catch(() => undefined);
    }
  }

  // --- acquire / release -------------------------------------------------------------------

  #acquire(site: AcquireSite | undefined, options: AcquireOptions | undefined): Promise<Checkout> {
    return new Promise((resolve, reject) => {
      this.#acquireThen(site, options, (error, co) => (co ? resolve(co) : reject(error)));
    });
  }

  /**
   * The acquire, callback style (`query()` allocates one promise in all, as `pg.Pool#query`
   * does). `done` is called exactly once. pg.Pool's queue orders the waiters and bounds them by
   * `acquireTimeoutMs`; a shorter timeout or a signal is armed here, and an acquire that gives up
   * is settled at once: pg.Pool hands the connection it gets later straight back.
   */
  #acquireThen(site: AcquireSite | undefined, options: AcquireOptions | undefined, done: AcquireDone): void {
    if (this.#closing) {
      done(this.#failure('E_POOL_CLOSED', 'the pool is closed'), undefined);
      return;
    }
    const { acquireTimeoutMs } = this.#o;
    const signal = options?.signal;
    let timeoutMs = acquireTimeoutMs;
    try {
      timeoutMs = optional(options?.timeoutMs, timeoutMs, (v) =>
        checkInteger('timeoutMs', v, 1, acquireTimeoutMs),
      );
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError(`signal should be an AbortSignal, got ${show(signal)}`);
      }
    } catch (error) {
      done(error as Error, undefined);
      return;
    }
    if (signal?.aborted) {
      done(this.#failure('E_POOL_ABORTED', 'the acquire was aborted', signal.reason), undefined);
      return;
    }
    const queued = this.#pg.idleCount === 0 && this.#pg.totalCount >= this.#o.max;
    if (queued && this.#queued >= this.#o.maxWaiting) {
      const message = `all ${this.#o.max} connections are in use and ${this.#o.maxWaiting} acquires are already waiting`;
      done(this.#failure('E_POOL_EXHAUSTED', message), undefined);
      return;
    }
    const a = newAcquire(site, timeoutMs, queued, done);
    if (queued) this.#queued += 1;
    this.#pending.add(a);
    if (signal !== undefined || timeoutMs < this.#o.acquireTimeoutMs) {
      a.disarm = armWait(timeoutMs < this.#o.acquireTimeoutMs ? timeoutMs : undefined, signal, (why) => {
        this.#settle(a);
        done(
          why === 'timeout'
            ? this.#failure('E_POOL_TIMEOUT', `no connection within ${timeoutMs} ms`)
            : this.#failure('E_POOL_ABORTED', 'the acquire was aborted', signal?.reason),
          undefined,
        );
      });
    }
    this.#pg.connect((error, client) => this.#connected(a, error, client));
  }

  #connected(a: Acquire, error: Error | undefined, client: pg.PoolClient | undefined): void {
    if (a.settled) {
      client?.release(); // it gave up (timeout, abort, close): its work never runs
      return;
    }
    if (client) {
      this.#settle(a);
      a.done(undefined, this.#checkout(client, a));
      return;
    }
    if (isStartupRefusal(error) && this.#o.serverTimeouts === 'auto' && !a.retried && !this.#closing) {
      // PgBouncer: from now on the server timeouts go with each transaction; connect again.
      this.#startup = {};
      a.retried = true;
      this.#pg.connect((retryError, retryClient) => this.#connected(a, retryError, retryClient));
      return;
    }
    this.#settle(a);
    if (this.#closing) a.done(this.#failure('E_POOL_CLOSED', 'the pool is closed'), undefined);
    // pg.Pool's own timer ended it: the pool's acquireTimeoutMs has passed.
    else if (performance.now() - a.started >= a.timeoutMs - 1) {
      a.done(this.#failure('E_POOL_TIMEOUT', `no connection within ${a.timeoutMs} ms`, error), undefined);
    } else {
      this.#clientError(toError(error), 'connect', undefined);
      const reason = error instanceof Error ? error.message : String(error);
      a.done(this.#failure('E_POOL_CONNECT', `could not open a connection: ${reason}`, error), undefined);
    }
  }

  #settle(a: Acquire): void {
    a.settled = true;
    a.disarm?.();
    this.#pending.delete(a);
    if (a.queued) this.#queued -= 1;
  }

  #checkout(client: pg.PoolClient, a: Acquire): Checkout {
    const co = newCheckout(client, this.#sweepTimer ? this.#o.now() : 0, a.site);
    this.#checkouts.set(client, co);
    this.#counts.acquired += 1;
    const waitMs = performance.now() - a.started;
    this.#waits.add(waitMs);
    if (poolChannels.acquire.hasSubscribers) {
      poolChannels.acquire.publish({ applicationName: this.#o.applicationName, waitMs });
    }
    return co;
  }

  /** Returns the client unless its holder did; destroys it when broken or inside a transaction. */
  #release(co: Checkout): void {
    if (co.released) return;
    co.client.release(
      co.broken ??
        (inTransaction(co.client) ? new Error('client released inside an open transaction') : undefined),
    );
  }

  /** Records, once per checkout, that its connection broke; release() will destroy it. */
  #markBroken(co: Checkout, error: Error): void {
    if (co.broken) return;
    co.broken = error;
    this.#clientError(error, 'checked-out', pidOf(co.client));
  }

  /** `SET LOCAL` of the server timeouts that do not go at startup (one round trip with BEGIN). */
  #localTimeouts(): string {
    const { statementTimeoutMs: st, idleInTransactionTimeoutMs: it } = this.#o;
    let sql = '';
    if (st !== undefined && this.#startup.statement_timeout === undefined) {
      sql += `; SET LOCAL statement_timeout = ${st}`;
    }
    if (it !== undefined && this.#startup.idle_in_transaction_session_timeout === undefined) {
      sql += `; SET LOCAL idle_in_transaction_session_timeout = ${it}`;
    }
    return sql;
  }

  #failure(code: PoolErrorCode, message: string, cause?: unknown): PoolError {
    if (code === 'E_POOL_EXHAUSTED') this.#counts.exhausted += 1;
    else if (code === 'E_POOL_TIMEOUT') this.#counts.timeouts += 1;
    if (poolChannels.acquireFailed.hasSubscribers) {
      poolChannels.acquireFailed.publish({ applicationName: this.#o.applicationName, code });
    }
    return new PoolError(
      code,
      `${this.#o.applicationName}: ${message}`,
      cause === undefined ? undefined : { cause },
    );
  }

  #clientError(error: Error, phase: 'idle' | 'checked-out' | 'connect', pid: number | undefined): void {
    this.#counts.errors += 1;
    const event = { applicationName: this.#o.applicationName, error, phase, pid };
    if (poolChannels.error.hasSubscribers) poolChannels.error.publish(event);
    this.events.emit('error', event);
  }

  // --- leaks ---------------------------------------------------------------------------------

  #captureSite(fn: (...args: never[]) => unknown): AcquireSite | undefined {
    if (!this.#sweepTimer) return undefined;
    const site: AcquireSite = { name: 'AcquireSite', message: 'client checked out' };
    Error.captureStackTrace(site, fn);
    return site;
  }

  #sweepLeaks(): void {
    if (this.#checkouts.size === 0) return;
    const now = this.#o.now();
    for (const co of this.#checkouts.values()) {
      const heldMs = now - co.acquiredAt;
      if (co.leaked || heldMs < this.#o.leakDetectionMs) continue;
      co.leaked = true;
      this.#counts.leaked += 1;
      const event = {
        applicationName: this.#o.applicationName,
        pid: pidOf(co.client),
        acquiredAt: co.acquiredAt,
        heldMs,
        stack: co.site?.stack,
        query: co.query?.slice(0, 500),
      };
      if (poolChannels.leak.hasSubscribers) poolChannels.leak.publish(event);
      this.events.emit('leak', event);
    }
  }

  #warn(warning: PoolWarning): void {
    if (this.events.has('warning')) this.events.emit('warning', warning);
    else process.emitWarning(warning.message, { code: `SLUICE_${warning.code}` });
  }
}

function beginStatement(options: TransactionOptions | undefined): string {
  let sql = 'BEGIN';
  if (options?.isolationLevel !== undefined) {
    const level = checkChoice('isolationLevel', options.isolationLevel, [
      'read committed',
      'repeatable read',
      'serializable',
    ] as const);
    sql += ` ISOLATION LEVEL ${level.toUpperCase()}`;
  }
  return options?.readOnly === true ? `${sql} READ ONLY` : sql;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
