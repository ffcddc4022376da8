/** A listener for one event of a typed event map. */
export type Listener<T> = (payload: T) => void;

/**
 * A minimal typed event emitter: `on()` returns the unsubscribe function, a listener that throws
 * never breaks the emitter (the error is reported through `onListenerError`).
 */
export class TypedEvents<M extends object> {
  readonly #listeners = new Map<keyof M, Set<Listener<never>>>();
  readonly #onListenerError: (error: unknown) => void;

  constructor(onListenerError: (error: unknown) => void = () => {}) {
    this.#onListenerError = onListenerError;
  }

  on<K extends keyof M>(event: K, listener: Listener<M[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    const l = listener as Listener<never>;
    set.add(l);
    return () => {
      set.delete(l);
    };
  }

  /** True when `event` has listeners: callers skip building payloads nobody reads. */
  has(event: keyof M): boolean {
    const set = this.#listeners.get(event);
    return set !== undefined && set.size > 0;
  }

  emit<K extends keyof M>(event: K, payload: M[K]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return;
    for (const l of [...set]) {
      try {
        (l as Listener<M[K]>)(payload);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
