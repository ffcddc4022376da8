import { checkInteger, checkNumber, checkObject, optional } from '@sluice/kit';

/** One finished piece of work, for adaptive limits. */
export interface LatencySample {
  /** How long the permit was held, in milliseconds. */
  rttMs: number;
  /** Permits in flight when it was acquired (itself included). */
  inflight: number;
  /** True when the work failed or timed out. */
  dropped: boolean;
}

/** What a gate shows a limit source that follows its demand (a gate's own gauges). */
export interface GateDemand {
  /** Waiters queued in the gate now. */
  readonly queued: number;
  /** Permits held now. */
  readonly inFlight: number;
}

/**
 * Where a gate's limit comes from. A gate reads `current` at construction, follows `onChange`,
 * hands its gauges to `attach` (when present) and feeds `record` (when present) with a sample for
 * every released permit.
 */
export interface LimitSource {
  /** The limit now (an integer >= 0). */
  readonly current: number;
  /** Calls `listener` with every new limit; returns the unsubscribe function. */
  onChange(listener: (limit: number) => void): () => void;
  /** Takes a latency sample (closed-loop sources only). */
  record?(sample: LatencySample): void;
  /** Called once by the gate that follows it, with a reader of its gauges (closed-loop sources only). */
  attach?(demand: () => GateDemand): void;
}

/** @internal True when `value` looks like a {@link LimitSource}. */
export function isLimitSource(value: unknown): value is LimitSource {
  const source = value as Partial<LimitSource> | null | undefined;
  return typeof source?.current === 'number' && typeof source.onChange === 'function';
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
export function poolSizeLimit(
  pool: { readonly max: number },
  options: { share?: number | undefined } = {},
): LimitSource {
  checkObject('pool', pool);
  const max = checkInteger('pool.max', pool.max, 1);
  const share = optional(options.share, 1, (v) => checkNumber('share', v, 0, 1, true));
  const value = Math.max(1, Math.floor(max * share));
  return { current: value, onChange: () => () => {} };
}
