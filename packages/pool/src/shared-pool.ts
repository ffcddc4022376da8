import { PoolError } from './errors.js';
import { type PoolOptions, type ResolvedPoolOptions, resolvePoolOptions } from './options.js';
import { createPool } from './pool.js';
import type { SluicePool } from './types.js';

interface Entry {
  readonly pool: SluicePool;
  readonly options: ResolvedPoolOptions;
  refs: number;
}

const shared = new Map<string, Entry>();

/** What names a shared pool: the connection, and what every statement on it gets. */
const KEY = [
  'connectionString',
  'applicationName',
  'statementTimeoutMs',
  'idleInTransactionTimeoutMs',
  'serverTimeouts',
  'queryTimeoutMs',
] as const;

/** What a closed handle refuses; the rest (gauges, `stats()`, `backendPids()`) keeps answering. */
const WORK = new Set<PropertyKey>(['query', 'connect', 'withClient', 'withTransaction', 'verify']);

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
  const key = JSON.stringify(KEY.map((name) => resolved[name] ?? null));
  let entry = shared.get(key);
  if (entry) {
    // The rest is sizing, which every caller must pass alike (the clock aside).
    for (const [name, value] of Object.entries(resolved)) {
      const existing = entry.options[name as keyof ResolvedPoolOptions];
      if (typeof value === 'function' || value === existing) continue;
      throw new TypeError(
        `${name} is ${value} but the shared pool '${resolved.applicationName}' for this ` +
          `connection was created with ${name} ${existing}; pass the same sizing everywhere`,
      );
    }
  } else {
    entry = { pool: createPool(options), options: resolved, refs: 0 };
    shared.set(key, entry);
  }
  entry.refs += 1;
  const owner = entry;
  return handle(owner.pool, () => {
    owner.refs -= 1;
    if (owner.refs > 0) return Promise.resolve();
    if (shared.get(key) === owner) shared.delete(key);
    return owner.pool.close();
  });
}

/** One holder's view of a shared pool: delegates everything, closes only itself and its listeners. */
function handle(pool: SluicePool, unref: () => Promise<void>): SluicePool {
  const unsubscribes = new Set<() => void>();
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (!closing) {
      for (const off of [...unsubscribes]) off();
      closing = unref();
    }
    return closing;
  };
  const own: Pick<SluicePool, 'on' | 'close' | typeof Symbol.asyncDispose> = {
    on(event, listener) {
      const off = pool.on(event, listener);
      const unsubscribe = (): void => {
        unsubscribes.delete(unsubscribe);
        off();
      };
      unsubscribes.add(unsubscribe);
      return unsubscribe;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
  const closed = (): Promise<never> =>
    Promise.reject(
      new PoolError('E_POOL_CLOSED', `${pool.applicationName}: this shared pool handle is closed`),
    );
  return new Proxy(pool, {
    get(target, key) {
      if (key === 'closed') return closing !== undefined || target.closed;
      if (Object.hasOwn(own, key)) return own[key as keyof typeof own];
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      return closing && WORK.has(key) ? closed : value.bind(target);
    },
  });
}
