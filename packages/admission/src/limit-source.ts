import { checkInteger, checkNumber, checkObject } from './validate.js';

/** One finished piece of work, for adaptive limits. */
export interface LatencySample {
  /** How long the permit was held, in milliseconds. */
  rttMs: number;
  /** Permits in flight when it was acquired (itself included). */
  inflight: number;
  /** True when the work failed or timed out. */
  dropped: boolean;
}

/**
 * Where a gate's limit comes from. A gate reads `current` at construction, follows `onChange`
 * and feeds `record` (when present) with a sample for every released permit.
 */
export interface LimitSource {
  /** The limit now (an integer >= 0). */
  readonly current: number;
  /** Calls `listener` with every new limit; returns the unsubscribe function. */
  onChange(listener: (limit: number) => void): () => void;
  /** Takes a latency sample (adaptive sources only). */
  record?(sample: LatencySample): void;
}

/** True when `value` looks like a {@link LimitSource}. */
export function isLimitSource(value: unknown): value is LimitSource {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as LimitSource).current === 'number' &&
    typeof (value as LimitSource).onChange === 'function'
  );
}

/**
 * A limit that never changes (a gate's `setLimit` still overrides it).
 *
 * @throws {RangeError} when `limit` is not an integer >= 0.
 * @example
 * ```ts
 * new Semaphore({ limit: fixedLimit(20) });
 * ```
 */
export function fixedLimit(limit: number): LimitSource {
  const value = checkInteger('limit', limit, 0);
  return { current: value, onChange: () => () => {} };
}

/**
 * The limit is the size of a connection pool (anything with a `max`, such as a `SluicePool` or a
 * `pg.Pool`'s options), optionally a share of it, at least 1.
 *
 * @param options.share Fraction of the pool to admit. @default 1
 * @throws {TypeError|RangeError} when `pool.max` is not a positive integer or `share` is not in (0, 1].
 * @example
 * ```ts
 * const pool = createPool({ connectionString, max: 20 });
 * admission({ limit: poolSizeLimit(pool) });
 * ```
 */
export function poolSizeLimit(pool: { readonly max: number }, options: { share?: number } = {}): LimitSource {
  checkObject('pool', pool);
  const max = checkInteger('pool.max', pool.max, 1);
  const share = options.share === undefined ? 1 : checkNumber('share', options.share, 0, 1, true);
  const value = Math.max(1, Math.floor(max * share));
  return { current: value, onChange: () => () => {} };
}
