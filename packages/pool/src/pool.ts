import { performance } from 'node:perf_hooks';
import { TypedEvents } from '@sluice/kit';
import pg from 'pg';
import { poolChannels } from './channels.js';
import { isConnectionError } from './connection-errors.js';
import { DeadlineQueue, type Expiring } from './deadline-queue.js';
import { PoolError, type PoolErrorCode } from './errors.js';
import { LatencyWindow } from './latency-window.js';
import { type PoolOptions, type ResolvedPoolOptions, resolvePoolOptions } from './options.js';
import { registerPool, unregisterPool } from './registry.js';
import { readServerBudget } from './server-budget.js';
import { GateEntry, SlotGate } from './slot-gate.js';
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
import { checkChoice, checkInteger } from './validate.js';

/**
 * Creates a bounded pool around `pg.Pool`: at most `max` server connections, at most
 * `maxWaiting` queued acquires (one more fails at once with `E_POOL_EXHAUSTED`), every acquire
 * bounded by `acquireTimeoutMs`, leak detection, and an `'error'` listener on the underlying
 * pool so a dying idle connection never crashes the process.
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
interface AcquireSite {
  name: string;
  message: string;
  stack?: string;
}

type AcquireDone = (error: Error | undefined, checkout: Checkout | undefined) => void;

/** One checked-out client. */
class Checkout {
  leaked = false;
  released = false;
  /** The SQL of a `pool.query()` checkout. */
  query: string | undefined = undefined;
  broken: Error | undefined = undefined;

  constructor(
    readonly client: pg.PoolClient,
    readonly pgRelease: (err?: Error | boolean) => void,
    readonly acquiredAt: number,
    readonly site: AcquireSite | undefined,
    readonly pid: number | undefined,
  ) {}
}

/** What a {@link Waiter} calls back into (closures made once per pool, not per acquire). */
interface WaiterHost {
  connect(waiter: Waiter): void;
  giveUp(waiter: Waiter, code: 'E_POOL_TIMEOUT' | 'E_POOL_ABORTED' | 'E_POOL_CLOSED'): void;
}

/**
 * An acquire that could not take a slot at once, or that carries its own timeout or signal.
 * It waits in the slot queue, then connects; its deadline covers both.
 */
class Waiter extends GateEntry implements Expiring {
  dlPrev: Expiring | undefined = undefined;
  dlNext: Expiring | undefined = undefined;
  inDeadlines = false;
  settled = false;
  /** Its own timer, only when it has a custom timeout (default ones share the pool's). */
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly host: WaiterHost,
    readonly site: AcquireSite | undefined,
    readonly started: number,
    readonly deadline: number,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined,
    readonly done: AcquireDone,
  ) {
    super();
  }

  grant(): void {
    this.host.connect(this);
  }
  cancel(): void {
    this.host.giveUp(this, 'E_POOL_CLOSED');
  }
  expire(): void {
    this.host.giveUp(this, 'E_POOL_TIMEOUT');
  }
  /** The signal's abort listener (an EventListener object: no closure). */
  handleEvent(): void {
    this.host.giveUp(this, 'E_POOL_ABORTED');
  }
}

/** A pg.Client class whose every instance gives up connecting after `timeoutMs`. */
function clientWithConnectTimeout(timeoutMs: number): typeof pg.Client {
  return class SluiceClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(
        typeof config === 'string'
          ? { connectionString: config, connectionTimeoutMillis: timeoutMs }
          : { ...config, connectionTimeoutMillis: timeoutMs },
      );
    }
  };
}

function processId(client: pg.ClientBase): number | undefined {
  const pid = (client as unknown as { processID?: unknown }).processID;
  return typeof pid === 'number' ? pid : undefined;
}

const ISOLATION = {
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
} as const;

/** The {@link SluicePool} implementation behind {@link createPool}. */
class BoundedPool implements SluicePool {
  readonly #o: ResolvedPoolOptions;
  readonly #pg: pg.Pool;
  readonly #gate: SlotGate;
  readonly #events = new TypedEvents<PoolEvents>();
  readonly #checkouts = new Map<pg.PoolClient, Checkout>();
  readonly #pids = new Set<number>();
  readonly #discarded = new WeakSet<pg.ClientBase>();
  readonly #deadlines = new DeadlineQueue();
  readonly #host: WaiterHost;
  /** One release function per physical client, reused across checkouts. */
  readonly #releasers = new WeakMap<pg.PoolClient, (err?: Error | boolean) => void>();
  /** The 'error' listener of every checked-out client (`this` is the client). */
  readonly #onCheckedOutError: (this: pg.PoolClient, error: Error) => void;
  readonly #waits = new LatencyWindow(1024);
  readonly #sweepTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  /** Server connections opened and not yet fully closed. */
  #open = 0;
  #allRemoved: (() => void) | undefined;
  #acquired = 0;
  #leaked = 0;
  #exhausted = 0;
  #timeouts = 0;
  #errors = 0;
  #destroyed = 0;

  constructor(o: ResolvedPoolOptions) {
    this.#o = o;
    this.#gate = new SlotGate(o.max, o.maxWaiting);
    const config: pg.PoolConfig = {
      connectionString: o.connectionString,
      max: o.max,
      application_name: o.applicationName,
      idleTimeoutMillis: o.idleTimeoutMs,
      maxLifetimeSeconds: o.maxLifetimeSeconds,
      // The connect timeout is set on each client rather than on pg.Pool: pg.Pool would arm a
      // timer for every checkout of an idle client too. Queue waits are bounded here instead.
      Client: clientWithConnectTimeout(o.connectTimeoutMs),
    };
    if (o.statementTimeoutMs !== undefined) config.statement_timeout = o.statementTimeoutMs;
    if (o.idleInTransactionTimeoutMs !== undefined) {
      config.idle_in_transaction_session_timeout = o.idleInTransactionTimeoutMs;
    }
    this.#pg = new pg.Pool(config);
    const pool = this;
    this.#onCheckedOutError = function onCheckedOutError(this: pg.PoolClient, error: Error): void {
      const co = pool.#checkouts.get(this);
      if (co) pool.#markBroken(co, error);
    };
    this.#host = {
      connect: (waiter) => this.#connectWaiter(waiter),
      giveUp: (waiter, code) => this.#giveUp(waiter, code),
    };
    // Without this listener an idle client's error (server restart, pg_terminate_backend) is an
    // unhandled 'error' event and kills the process. pg.Pool has already dropped the client.
    this.#pg.on('error', (error, client) => {
      // A client this pool already discarded may still report its socket closing: counted once.
      if (!this.#discarded.has(client)) this.#clientError(error, 'idle', processId(client));
    });
    this.#pg.on('connect', (client) => {
      // A checked-out client whose connection dies emits 'error', and with no listener that
      // throws. This listener stays for the client's life (no add/remove per checkout); it acts
      // only while the client is checked out; pg.Pool's own listener handles idle clients.
      client.on('error', this.#onCheckedOutError);
      const pid = processId(client);
      this.#open += 1;
      if (pid !== undefined) this.#pids.add(pid);
      this.#events.emit('connect', { pid });
    });
    this.#pg.on('remove', (client) => {
      const pid = processId(client);
      this.#open -= 1;
      if (pid !== undefined) this.#pids.delete(pid);
      this.#events.emit('remove', { pid });
      if (this.#open === 0) this.#allRemoved?.();
    });
    if (o.leakDetectionMs > 0) {
      const every = Math.min(1000, Math.max(10, Math.floor(o.leakDetectionMs / 4)));
      this.#sweepTimer = setInterval(() => this.#sweepLeaks(), every);
      this.#sweepTimer.unref();
    }
    registerPool(this);
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
    return this.#gate.waiting;
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
        try {
          co.client.query<R>(text, values as unknown[], (error, result) =>
            this.#queryDone(co, error, result, resolve, reject),
          );
        } catch (error) {
          this.#queryDone(co, toError(error), undefined, resolve, reject);
        }
      });
    });
  }

  /** Ends a `query()`: releases exactly once (destroying a broken client), then settles. */
  #queryDone<R extends pg.QueryResultRow>(
    co: Checkout,
    error: Error | null | undefined,
    result: pg.QueryResult<R> | undefined,
    resolve: (result: pg.QueryResult<R>) => void,
    reject: (error: unknown) => void,
  ): void {
    if (error && isConnectionError(error)) this.#markBroken(co, error);
    this.#release(co);
    if (error) reject(error);
    else resolve(result as pg.QueryResult<R>);
  }

  async connect(options?: AcquireOptions): Promise<pg.PoolClient> {
    const co = await this.#acquire(this.#captureSite(this.connect), options);
    return co.client;
  }

  async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>, options?: AcquireOptions): Promise<T> {
    const co = await this.#acquire(this.#captureSite(this.withClient), options);
    try {
      const result = await fn(co.client);
      this.#release(co);
      return result;
    } catch (error) {
      if (isConnectionError(error)) this.#markBroken(co, toError(error));
      this.#release(co);
      throw error;
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
      await client.query(begin);
      const result = await fn(client);
      await client.query('COMMIT');
      this.#release(co);
      return result;
    } catch (error) {
      if (isConnectionError(error)) this.#markBroken(co, toError(error));
      const status = client.getTransactionStatus();
      if (!co.broken && (status === 'T' || status === 'E')) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          this.#markBroken(co, toError(rollbackError));
        }
      }
      this.#release(co);
      throw error;
    }
  }

  stats(): PoolStats {
    return {
      max: this.#o.max,
      total: this.#pg.totalCount,
      idle: this.#pg.idleCount,
      active: this.#checkouts.size,
      waiting: this.#gate.waiting,
      maxWaiting: this.#o.maxWaiting,
      leaked: this.#leaked,
      acquired: this.#acquired,
      exhausted: this.#exhausted,
      timeouts: this.#timeouts,
      errors: this.#errors,
      destroyed: this.#destroyed,
      acquireWaitMs: this.#waits.summary(),
    };
  }

  async verify(options?: VerifyOptions): Promise<VerifyResult> {
    const onMisfit = checkChoice('verify', 'onMisfit', options?.onMisfit ?? 'warn', [
      'warn',
      'throw',
    ] as const);
    const server = await this.withClient((client) => readServerBudget(client, this.backendPids()));
    const budget = server.maxConnections - server.reservedConnections;
    const free = budget - server.otherBackends;
    const result: VerifyResult = {
      maxConnections: server.maxConnections,
      reservedConnections: server.reservedConnections,
      budget,
      poolMax: this.#o.max,
      otherConnections: server.otherBackends,
      fits: this.#o.max <= budget,
      fitsNow: this.#o.max <= free,
    };
    if (!result.fits) {
      const message =
        `pool '${this.#o.applicationName}' max ${this.#o.max} does not fit the server's budget of ${budget} ` +
        `connections (max_connections ${server.maxConnections} - reserved ${server.reservedConnections})`;
      if (onMisfit === 'throw') throw new PoolError('E_POOL_MISFIT', message);
      this.#warn({ code: 'E_POOL_MISFIT', message, result });
    } else if (!result.fitsNow) {
      this.#warn({
        code: 'E_POOL_TIGHT',
        message:
          `pool '${this.#o.applicationName}' max ${this.#o.max} exceeds the ${Math.max(0, free)} connections free ` +
          `now (${server.otherBackends} of ${budget} are used by other clients)`,
        result,
      });
    }
    return result;
  }

  backendPids(): number[] {
    return [...this.#pids];
  }

  on<E extends keyof PoolEvents>(event: E, listener: (payload: PoolEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #shutdown(): Promise<void> {
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    this.#gate.cancelAll();
    const ended = this.#pg.end();
    if (this.#checkouts.size > 0) {
      const force = setTimeout(() => {
        for (const co of [...this.#checkouts.values()]) {
          this.#release(
            co,
            new PoolError('E_POOL_CLOSED', 'the pool closed while this client was checked out'),
          );
        }
      }, this.#o.closeTimeoutMs);
      force.unref();
      try {
        await ended;
      } finally {
        clearTimeout(force);
      }
    } else {
      await ended;
    }
    // pg.end() resolves once no client is left in the pool; their sockets close a moment later.
    if (this.#open > 0) {
      await new Promise<void>((resolve) => {
        const bound = setTimeout(resolve, this.#o.closeTimeoutMs);
        bound.unref();
        this.#allRemoved = () => {
          clearTimeout(bound);
          resolve();
        };
      });
    }
    unregisterPool(this);
  }

  // --- acquire / release -------------------------------------------------------------------

  #acquire(site: AcquireSite | undefined, options: AcquireOptions | undefined): Promise<Checkout> {
    return new Promise((resolve, reject) => {
      this.#acquireThen(site, options, (error, co) => (co ? resolve(co) : reject(error)));
    });
  }

  /**
   * The acquire, callback style (the hot path of `query()` allocates one promise in all, as
   * `pg.Pool#query` does). `done` is called exactly once.
   */
  #acquireThen(site: AcquireSite | undefined, options: AcquireOptions | undefined, done: AcquireDone): void {
    if (this.#closing) {
      done(this.#failure('E_POOL_CLOSED', 'the pool is closed'), undefined);
      return;
    }
    const started = performance.now();
    if (options === undefined && this.#gate.tryTake()) {
      // Fast path: a slot is free and nobody waits; the client's own connect timeout bounds it.
      this.#pg.connect((error, client) => {
        if (error || !client) {
          this.#gate.release();
          done(this.#connectFailure(error), undefined);
        } else {
          done(undefined, this.#checkout(client, site, started));
        }
      });
      return;
    }
    let timeoutMs = this.#o.acquireTimeoutMs;
    const signal = options?.signal;
    try {
      if (options?.timeoutMs !== undefined) {
        timeoutMs = checkInteger('acquire', 'timeoutMs', options.timeoutMs, 1, 86_400_000);
      }
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError('acquire: signal should be an AbortSignal');
      }
    } catch (error) {
      done(error as Error, undefined);
      return;
    }
    if (signal?.aborted) {
      done(this.#failure('E_POOL_ABORTED', 'the acquire was aborted', signal.reason), undefined);
      return;
    }
    const waiter = new Waiter(this.#host, site, started, started + timeoutMs, timeoutMs, signal, done);
    if (timeoutMs === this.#o.acquireTimeoutMs) {
      this.#deadlines.add(waiter);
    } else {
      waiter.timer = setTimeout(() => this.#giveUp(waiter, 'E_POOL_TIMEOUT'), timeoutMs);
    }
    signal?.addEventListener('abort', waiter, { once: true });
    if (this.#gate.tryTake()) {
      this.#connectWaiter(waiter);
    } else if (!this.#gate.enqueue(waiter)) {
      this.#settle(waiter);
      done(
        this.#failure(
          'E_POOL_EXHAUSTED',
          `all ${this.#o.max} connections are in use and ${this.#o.maxWaiting} acquires are already waiting`,
        ),
        undefined,
      );
    }
  }

  /** A waiter holds a slot now: open (or take) a connection for it. */
  #connectWaiter(waiter: Waiter): void {
    this.#pg.connect((error, client) => {
      if (error || !client) {
        this.#gate.release();
        const failure = this.#connectFailure(error);
        if (waiter.settled) return;
        this.#settle(waiter);
        waiter.done(failure, undefined);
      } else if (waiter.settled) {
        // It gave up while connecting: hand the client and the slot straight back.
        client.release();
        this.#gate.release();
      } else {
        this.#settle(waiter);
        waiter.done(undefined, this.#checkout(client, waiter.site, waiter.started));
      }
    });
  }

  /** A waiter's timeout, abort or the pool's close: it leaves, holding nothing. */
  #giveUp(waiter: Waiter, code: 'E_POOL_TIMEOUT' | 'E_POOL_ABORTED' | 'E_POOL_CLOSED'): void {
    if (waiter.settled) return;
    this.#settle(waiter);
    // Still queued: leave the queue. Connecting: #connectWaiter sees `settled` and returns the client.
    this.#gate.remove(waiter);
    const error =
      code === 'E_POOL_TIMEOUT'
        ? this.#failure(code, `no connection within ${waiter.timeoutMs} ms`)
        : code === 'E_POOL_ABORTED'
          ? this.#failure(code, 'the acquire was aborted', waiter.signal?.reason)
          : this.#failure(code, 'the pool closed while the acquire was queued');
    waiter.done(error, undefined);
  }

  #settle(waiter: Waiter): void {
    waiter.settled = true;
    this.#deadlines.remove(waiter);
    if (waiter.timer) clearTimeout(waiter.timer);
    waiter.signal?.removeEventListener('abort', waiter);
  }

  #checkout(client: pg.PoolClient, site: AcquireSite | undefined, started: number): Checkout {
    const co = new Checkout(
      client,
      client.release,
      this.#sweepTimer ? this.#o.now() : 0,
      site,
      processId(client),
    );
    let release = this.#releasers.get(client);
    if (!release) {
      release = (err?: Error | boolean): void => {
        const current = this.#checkouts.get(client);
        if (current) this.#release(current, err);
      };
      this.#releasers.set(client, release);
    }
    client.release = release;
    this.#checkouts.set(client, co);
    this.#acquired += 1;
    const waitMs = performance.now() - started;
    this.#waits.add(waitMs);
    if (poolChannels.acquire.hasSubscribers) {
      poolChannels.acquire.publish({ applicationName: this.#o.applicationName, waitMs });
    }
    return co;
  }

  /** Returns the client exactly once; destroys it when broken or left inside a transaction. */
  #release(co: Checkout, err?: Error | boolean): void {
    if (co.released) return;
    co.released = true;
    this.#checkouts.delete(co.client);
    let destroy: Error | boolean | undefined = err || co.broken;
    if (!destroy) {
      const status = co.client.getTransactionStatus();
      if (status === 'T' || status === 'E') destroy = new Error('client released inside an open transaction');
    }
    if (destroy) {
      // pg drops the client from its count at once, so a waiter granted next opens a new one.
      this.#destroyed += 1;
      this.#discarded.add(co.client);
      co.pgRelease(destroy);
      this.#gate.release();
    } else {
      // Grant first: a waiter's pg.connect() then finds pg full and queues inside pg, and pg's
      // own release below hands it this client synchronously (no idle round trip, no tick).
      this.#gate.release();
      co.pgRelease();
    }
  }

  /** Records, once per checkout, that its connection broke; release() will destroy it. */
  #markBroken(co: Checkout, error: Error): void {
    if (co.broken) return;
    co.broken = error;
    this.#clientError(error, 'checked-out', co.pid);
  }

  #failure(code: PoolErrorCode, message: string, cause?: unknown): PoolError {
    if (code === 'E_POOL_EXHAUSTED') this.#exhausted += 1;
    else if (code === 'E_POOL_TIMEOUT') this.#timeouts += 1;
    if (poolChannels.acquireFailed.hasSubscribers) {
      poolChannels.acquireFailed.publish({ applicationName: this.#o.applicationName, code });
    }
    return new PoolError(
      code,
      `${this.#o.applicationName}: ${message}`,
      cause === undefined ? undefined : { cause },
    );
  }

  #connectFailure(error: unknown): PoolError {
    this.#clientError(toError(error), 'connect', undefined);
    const reason = error instanceof Error ? error.message : String(error);
    return this.#failure('E_POOL_CONNECT', `could not open a connection: ${reason}`, error);
  }

  #clientError(error: Error, phase: 'idle' | 'checked-out' | 'connect', pid: number | undefined): void {
    this.#errors += 1;
    const event = { applicationName: this.#o.applicationName, error, phase, pid };
    if (poolChannels.error.hasSubscribers) poolChannels.error.publish(event);
    this.#events.emit('error', event);
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
      this.#leaked += 1;
      const event = {
        applicationName: this.#o.applicationName,
        pid: co.pid,
        acquiredAt: co.acquiredAt,
        heldMs,
        stack: co.site?.stack,
        query: co.query === undefined ? undefined : co.query.slice(0, 500),
      };
      if (poolChannels.leak.hasSubscribers) poolChannels.leak.publish(event);
      this.#events.emit('leak', event);
    }
  }

  #warn(warning: PoolWarning): void {
    if (this.#events.has('warning')) this.#events.emit('warning', warning);
    else process.emitWarning(warning.message, { code: `SLUICE_${warning.code}` });
  }
}

function beginStatement(options: TransactionOptions | undefined): string {
  let sql = 'BEGIN';
  if (options?.isolationLevel !== undefined) {
    const level = checkChoice('withTransaction', 'isolationLevel', options.isolationLevel, [
      'read committed',
      'repeatable read',
      'serializable',
    ] as const);
    sql += ` ISOLATION LEVEL ${ISOLATION[level]}`;
  }
  if (options?.readOnly === true) sql += ' READ ONLY';
  return sql;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
