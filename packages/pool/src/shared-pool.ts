import type pg from 'pg';
import { PoolError } from './errors.js';
import { type PoolOptions, type ResolvedPoolOptions, resolvePoolOptions } from './options.js';
import { createPool } from './pool.js';
import type {
  AcquireOptions,
  PoolEvents,
  PoolStats,
  SluicePool,
  TransactionOptions,
  VerifyOptions,
  VerifyResult,
} from './types.js';

interface Entry {
  readonly pool: SluicePool;
  readonly options: ResolvedPoolOptions;
  refs: number;
}

const shared = new Map<string, Entry>();

/** Options that must agree between callers sharing one pool. */
const SIZING = [
  'max',
  'maxWaiting',
  'acquireTimeoutMs',
  'idleTimeoutMs',
  'maxLifetimeSeconds',
  'leakDetectionMs',
  'connectTimeoutMs',
  'closeTimeoutMs',
] as const;

/**
 * Returns this process's pool for the given connection settings (`connectionString`,
 * `applicationName` and the timeouts of every statement), creating it on first
 * use. Every call returns its own handle with its own idempotent `close()`; the underlying pool
 * ends when the last handle closes. A later call with the same connection settings but a
 * different size (`max`, `maxWaiting`, timeouts) throws rather than silently ignoring it.
 *
 * @throws {TypeError | RangeError} on an invalid option, or sizing that conflicts with the existing shared pool
 * @example
 * ```ts
 * const pool = sharedPool({ connectionString: process.env.DATABASE_URL!, max: 10 });
 * // elsewhere in the process: same settings -> same connections
 * const again = sharedPool({ connectionString: process.env.DATABASE_URL!, max: 10 });
 * await again.close(); // the pool stays open for `pool`
 * ```
 */
export function sharedPool(options: PoolOptions): SluicePool {
  const resolved = resolvePoolOptions(options);
  const key = JSON.stringify([
    resolved.connectionString,
    resolved.applicationName,
    resolved.statementTimeoutMs ?? null,
    resolved.idleInTransactionTimeoutMs ?? null,
    resolved.serverTimeouts,
    resolved.queryTimeoutMs,
  ]);
  let entry = shared.get(key);
  if (entry) {
    for (const name of SIZING) {
      if (entry.options[name] !== resolved[name]) {
        throw new TypeError(
          `${name} is ${resolved[name]} but the shared pool '${resolved.applicationName}' for this ` +
            `connection was created with ${name} ${entry.options[name]}; pass the same sizing everywhere`,
        );
      }
    }
  } else {
    entry = { pool: createPool(options), options: resolved, refs: 0 };
    shared.set(key, entry);
  }
  entry.refs += 1;
  const owner = entry;
  return new SharedPoolHandle(owner.pool, () => {
    owner.refs -= 1;
    if (owner.refs > 0) return Promise.resolve();
    if (shared.get(key) === owner) shared.delete(key);
    return owner.pool.close();
  });
}

/** One holder's view of a shared pool: delegates everything, closes only itself. */
class SharedPoolHandle implements SluicePool {
  readonly #pool: SluicePool;
  readonly #unref: () => Promise<void>;
  readonly #unsubscribes = new Set<() => void>();
  #closing: Promise<void> | undefined;

  constructor(pool: SluicePool, unref: () => Promise<void>) {
    this.#pool = pool;
    this.#unref = unref;
  }

  get max(): number {
    return this.#pool.max;
  }
  get totalCount(): number {
    return this.#pool.totalCount;
  }
  get idleCount(): number {
    return this.#pool.idleCount;
  }
  get activeCount(): number {
    return this.#pool.activeCount;
  }
  get waitingCount(): number {
    return this.#pool.waitingCount;
  }
  get applicationName(): string {
    return this.#pool.applicationName;
  }
  get closed(): boolean {
    return this.#closing !== undefined || this.#pool.closed;
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
    options?: AcquireOptions,
  ): Promise<pg.QueryResult<R>> {
    return this.#open().query<R>(text, values, options);
  }
  async connect(options?: AcquireOptions): Promise<pg.PoolClient> {
    return this.#open().connect(options);
  }
  async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>, options?: AcquireOptions): Promise<T> {
    return this.#open().withClient(fn, options);
  }
  async withTransaction<T>(
    fn: (client: pg.PoolClient) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T> {
    return this.#open().withTransaction(fn, options);
  }
  stats(): PoolStats {
    return this.#pool.stats();
  }
  async verify(options?: VerifyOptions): Promise<VerifyResult> {
    return this.#open().verify(options);
  }
  backendPids(): number[] {
    return this.#pool.backendPids();
  }
  on<E extends keyof PoolEvents>(event: E, listener: (payload: PoolEvents[E]) => void): () => void {
    const off = this.#pool.on(event, listener);
    const unsubscribe = (): void => {
      this.#unsubscribes.delete(unsubscribe);
      off();
    };
    this.#unsubscribes.add(unsubscribe);
    return unsubscribe;
  }
  close(): Promise<void> {
    if (!this.#closing) {
      for (const off of [...this.#unsubscribes]) off();
      this.#closing = this.#unref();
    }
    return this.#closing;
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #open(): SluicePool {
    if (this.#closing) {
      throw new PoolError(
        'E_POOL_CLOSED',
        `${this.#pool.applicationName}: this shared pool handle is closed`,
      );
    }
    return this.#pool;
  }
}
