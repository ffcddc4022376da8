import { checkFunction, checkInteger, checkNumber } from './validate.js';

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
 * @throws {TypeError|RangeError} on invalid options.
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
    this.#min = options.minLimit === undefined ? 1 : checkInteger('minLimit', options.minLimit, 1);
    this.#max = options.maxLimit === undefined ? 200 : checkInteger('maxLimit', options.maxLimit, this.#min);
    const initial =
      options.initialLimit === undefined ? 20 : checkInteger('initialLimit', options.initialLimit, 1);
    this.#estimated = Math.min(this.#max, Math.max(this.#min, initial));
    this.#smoothing =
      options.smoothing === undefined ? 0.2 : checkNumber('smoothing', options.smoothing, 0, 1, true);
    this.#tolerance =
      options.rttTolerance === undefined ? 1.5 : checkNumber('rttTolerance', options.rttTolerance, 1, 100);
    const longWindow =
      options.longWindow === undefined ? 600 : checkInteger('longWindow', options.longWindow, 1);
    this.#queueSize = checkFunction('queueSize', options.queueSize) ?? ((limit) => (limit < 4 ? 1 : 4));
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
