/**
 * Coalesces concurrent work per key: while a call for `key` is in flight, later callers get the
 * same promise instead of starting another. Bounded: at most `maxKeys` distinct keys in flight.
 */
export class SingleFlight<T> {
  readonly #inFlight = new Map<string, Promise<T>>();
  readonly maxKeys: number;

  constructor(maxKeys: number) {
    this.maxKeys = maxKeys;
  }

  /** Distinct keys in flight now (a gauge). */
  get size(): number {
    return this.#inFlight.size;
  }

  /** The in-flight promise for `key`, if any (the caller joins it). */
  get(key: string): Promise<T> | undefined {
    return this.#inFlight.get(key);
  }

  /** True when a new key can start now. */
  get hasRoom(): boolean {
    return this.#inFlight.size < this.maxKeys;
  }

  /** Starts `work` for `key` (the caller checked there is none in flight and there is room). */
  start(key: string, work: () => Promise<T>): Promise<T> {
    const p = (async () => {
      try {
        return await work();
      } finally {
        this.#inFlight.delete(key);
      }
    })();
    this.#inFlight.set(key, p);
    return p;
  }
}
