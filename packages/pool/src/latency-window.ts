/** Summary of recent acquire waits, milliseconds. */
export interface LatencySummary {
  /** Median of the window. */
  readonly p50: number;
  /** 99th percentile of the window. */
  readonly p99: number;
  /** Largest value in the window. */
  readonly max: number;
  /** How many values the window holds now (at most its size). */
  readonly samples: number;
}

/**
 * A bounded reservoir of the most recent `size` values (a ring buffer): constant memory, O(1)
 * per value, percentiles computed only when asked.
 */
export class LatencyWindow {
  readonly #values: Float64Array;
  #next = 0;
  #count = 0;

  constructor(size: number) {
    this.#values = new Float64Array(size);
  }

  add(value: number): void {
    this.#values[this.#next] = value;
    this.#next = (this.#next + 1) % this.#values.length;
    if (this.#count < this.#values.length) this.#count += 1;
  }

  summary(): LatencySummary {
    if (this.#count === 0) return { p50: 0, p99: 0, max: 0, samples: 0 };
    const sorted = this.#values.slice(0, this.#count).sort();
    const nearestRank = (q: number): number => sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1] ?? 0;
    return { p50: nearestRank(0.5), p99: nearestRank(0.99), max: nearestRank(1), samples: this.#count };
  }
}
