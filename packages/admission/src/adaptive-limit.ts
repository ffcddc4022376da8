import { Gradient2, type Gradient2Options } from './gradient2.js';
import { isLimitSource, type LatencySample, type LimitSource } from './limit-source.js';
import { checkFunction, checkInteger, show } from './validate.js';

/** Options of {@link adaptiveLimit}. */
export interface AdaptiveLimitOptions extends Gradient2Options {
  /**
   * The cap: a number or a source such as {@link databaseBudget}. The adaptive limit never
   * exceeds it, and shrinks at once when it shrinks.
   */
  max: number | LimitSource;
  /** Shortest sampling window, in ms. @default 1000 */
  windowMs?: number;
  /** Fewest samples before a window closes. @default 10 */
  minSamples?: number;
  /** Monotonic clock in ms. @default performance.now */
  now?: () => number;
}

/** A {@link LimitSource} that adapts to latency; `close()` stops following the cap. */
export interface AdaptiveLimit extends LimitSource {
  /** Feeds one released permit (gates call this). */
  record(sample: LatencySample): void;
  /** The algorithm's state, for dashboards. */
  readonly algorithm: Gradient2;
  /** The current cap. */
  readonly cap: number;
  /** Stops following the cap. Idempotent. */
  close(): void;
}

/**
 * A latency-driven limit (Gradient2) that finds the upstream's best concurrency without ever
 * exceeding `max` (the database budget). Samples are grouped in windows of at least `windowMs`
 * and `minSamples`; each window feeds its average RTT (dropped work excluded) and its highest
 * in-flight count to the algorithm. Pure apart from the injected clock: no timers.
 *
 * @throws {TypeError|RangeError} on invalid options.
 * @example
 * ```ts
 * const limit = adaptiveLimit({ max: databaseBudget({ monitor }), initialLimit: 10, minLimit: 2 });
 * app.use(admission({ limit }));
 * ```
 */
export function adaptiveLimit(options: AdaptiveLimitOptions): AdaptiveLimit {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`options should be an object, got ${show(options)}`);
  }
  const capSource = isLimitSource(options.max) ? options.max : undefined;
  let cap = capSource ? capSource.current : checkInteger('max', options.max, 1);
  const windowMs = options.windowMs === undefined ? 1000 : checkInteger('windowMs', options.windowMs, 1);
  const minSamples =
    options.minSamples === undefined ? 10 : checkInteger('minSamples', options.minSamples, 1);
  const now = checkFunction('now', options.now) ?? ((): number => performance.now());
  const algorithm = new Gradient2({
    ...options,
    initialLimit: options.initialLimit ?? Math.min(20, Math.max(1, cap)),
  });
  const listeners = new Set<(limit: number) => void>();
  const effective = (): number => Math.max(0, Math.min(algorithm.limit, cap));
  let current = effective();

  let windowStart = now();
  let samples = 0;
  let rttSum = 0;
  let rttCount = 0;
  let maxInflight = 0;

  const publish = (): void => {
    const next = effective();
    if (next === current) return;
    current = next;
    for (const l of [...listeners]) l(next);
  };

  let unsubscribe: (() => void) | undefined = capSource?.onChange((value) => {
    cap = value;
    publish();
  });

  return {
    get current() {
      return current;
    },
    get cap() {
      return cap;
    },
    algorithm,
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    record(sample) {
      samples += 1;
      if (!sample.dropped) {
        rttSum += sample.rttMs;
        rttCount += 1;
      }
      if (sample.inflight > maxInflight) maxInflight = sample.inflight;
      const t = now();
      if (t - windowStart < windowMs || samples < minSamples) return;
      if (rttCount > 0) algorithm.update({ rttMs: rttSum / rttCount, inflight: maxInflight }, cap);
      windowStart = t;
      samples = 0;
      rttSum = 0;
      rttCount = 0;
      maxInflight = 0;
      publish();
    },
    close() {
      unsubscribe?.();
      unsubscribe = undefined;
      listeners.clear();
    },
  };
}
