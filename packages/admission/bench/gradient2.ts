// The Gradient2 limit (Netflix concurrency-limits) that @sluice/admission shipped before
// loadLimit replaced it, kept here as the simulation's latency-only baseline. Pure arithmetic.

/** Options of {@link Gradient2}. */
export interface Gradient2Options {
  /** Limit to start from. @default 20 */
  initialLimit?: number;
  /** Lowest limit. @default 1 */
  minLimit?: number;
  /** Highest limit (the adaptive source also caps it by the database budget). @default 200 */
  maxLimit?: number;
  /** Weight of a new estimate, in (0, 1]. @default 0.2 */
  smoothing?: number;
  /** How much the short RTT may exceed the long RTT before the limit shrinks, >= 1. @default 1.5 */
  rttTolerance?: number;
  /** Samples in the long-term RTT average. @default 600 */
  longWindow?: number;
  /** Headroom added on top of `limit * gradient`, as a function of the limit. @default 4 (1 below a limit of 4) */
  queueSize?: (limit: number) => number;
}

/** An exponential moving average that starts as a plain average over its first samples. */
class ExpAvg {
  #value = 0;
  #count = 0;
  #sum = 0;
  readonly #factor: number;
  constructor(
    window: number,
    readonly warmup: number,
  ) {
    this.#factor = 2 / (window + 1);
  }
  get value(): number {
    return this.#value;
  }
  add(sample: number): number {
    if (this.#count < this.warmup) {
      this.#count += 1;
      this.#sum += sample;
      this.#value = this.#sum / this.#count;
    } else {
      this.#value = this.#value * (1 - this.#factor) + sample * this.#factor;
    }
    return this.#value;
  }
  scale(f: number): void {
    this.#value *= f;
  }
}

/**
 * The Gradient2 concurrency limit of Netflix's concurrency-limits, as pure arithmetic (no clock,
 * no timers): it compares the short-term RTT with a long-term average and shrinks the limit
 * when latency grows (a queue is forming upstream), grows it by `queueSize` while latency holds.
 *
 * `newLimit = limit * clamp(tolerance * longRtt / shortRtt, 0.5, 1) + queueSize(limit)`, smoothed,
 * clamped to `[minLimit, maxLimit]`; not grown while less than half the limit is in use.
 *
 * @example
 * ```ts
 * const g = new Gradient2({ initialLimit: 10, maxLimit: 50 });
 * g.update({ rttMs: 12, inflight: 9 }); // -> the new limit
 * ```
 */
export class Gradient2 {
  #estimated: number;
  readonly #min: number;
  readonly #max: number;
  readonly #smoothing: number;
  readonly #tolerance: number;
  readonly #queueSize: (limit: number) => number;
  readonly #longRtt: ExpAvg;
  #lastRtt = 0;

  constructor(options: Gradient2Options = {}) {
    this.#min = options.minLimit ?? 1;
    this.#max = options.maxLimit ?? 200;
    this.#estimated = Math.min(this.#max, Math.max(this.#min, options.initialLimit ?? 20));
    this.#smoothing = options.smoothing ?? 0.2;
    this.#tolerance = options.rttTolerance ?? 1.5;
    const longWindow = options.longWindow ?? 600;
    this.#queueSize = options.queueSize ?? ((limit) => (limit < 4 ? 1 : 4));
    this.#longRtt = new ExpAvg(longWindow, 10);
  }

  /** The current limit (an integer). */
  get limit(): number {
    return Math.floor(this.#estimated);
  }

  /** The long-term RTT average, in ms. */
  get longRttMs(): number {
    return this.#longRtt.value;
  }

  /** The last short-term RTT seen, in ms. */
  get lastRttMs(): number {
    return this.#lastRtt;
  }

  /**
   * Takes one (windowed) sample and returns the new limit, at most `cap` when given.
   *
   * @param sample.rttMs Short-term RTT (average over the window), > 0.
   * @param sample.inflight Most permits in flight during the window.
   */
  update(sample: { rttMs: number; inflight: number }, cap = Number.POSITIVE_INFINITY): number {
    const max = Math.max(this.#min, Math.min(this.#max, cap));
    const shortRtt = Math.max(sample.rttMs, 1e-3);
    this.#lastRtt = shortRtt;
    const longRtt = this.#longRtt.add(shortRtt);
    // Latency back to normal after a long overload: pull the long average down faster.
    if (longRtt / shortRtt > 2) this.#longRtt.scale(0.95);
    if (sample.inflight < this.#estimated / 2) {
      this.#estimated = Math.min(this.#estimated, max);
      return this.limit;
    }
    const gradient = Math.max(0.5, Math.min(1, (this.#tolerance * longRtt) / shortRtt));
    let next = this.#estimated * gradient + this.#queueSize(this.#estimated);
    next = this.#estimated * (1 - this.#smoothing) + next * this.#smoothing;
    this.#estimated = Math.max(this.#min, Math.min(max, next));
    return this.limit;
  }
}

/**
 * Gradient2 fed the way the former `adaptiveLimit` fed it: samples grouped in windows of at least
 * `windowMs` and `minSamples`, each window's mean RTT (dropped work excluded) and highest
 * in-flight count make one update, capped by `max`.
 */
export function gradient2Limit(options: Gradient2Options & { max: number; now: () => number }) {
  const { max, now } = options;
  const algorithm = new Gradient2({ ...options, initialLimit: options.initialLimit ?? Math.min(20, max) });
  const listeners = new Set<(limit: number) => void>();
  let current = Math.min(algorithm.limit, max);
  let windowStart = now();
  let samples = 0;
  let rttSum = 0;
  let rttCount = 0;
  let maxInflight = 0;
  return {
    get current() {
      return current;
    },
    onChange(listener: (limit: number) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    record(sample: { rttMs: number; inflight: number; dropped: boolean }) {
      samples += 1;
      if (!sample.dropped) {
        rttSum += sample.rttMs;
        rttCount += 1;
      }
      maxInflight = Math.max(maxInflight, sample.inflight);
      const t = now();
      if (t - windowStart < 1000 || samples < 10) return;
      if (rttCount > 0) algorithm.update({ rttMs: rttSum / rttCount, inflight: maxInflight }, max);
      windowStart = t;
      samples = rttSum = rttCount = maxInflight = 0;
      const next = Math.min(algorithm.limit, max);
      if (next === current) return;
      current = next;
      for (const l of listeners) l(next);
    },
  };
}
