/** A listener for one event of a map of event names to payloads. */
export type Listener<T> = (payload: T) => void;

/**
 * A small typed event hub: `on` returns the unsubscribe function. A listener that throws never
 * breaks the emitter's caller; the error is reported with `process.emitWarning`.
 */
export class TypedEvents<M extends object> {
  readonly #listeners = new Map<keyof M, Set<Listener<never>>>();

  on<E extends keyof M>(event: E, listener: Listener<M[E]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => {
      set.delete(listener as Listener<never>);
    };
  }

  has(event: keyof M): boolean {
    const set = this.#listeners.get(event);
    return set !== undefined && set.size > 0;
  }

  emit<E extends keyof M>(event: E, payload: M[E]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<M[E]>)(payload);
      } catch (error) {
        process.emitWarning(
          `a listener for the '${String(event)}' event threw: ${error instanceof Error ? error.message : String(error)}`,
          { code: 'SLUICE_LISTENER_THREW' },
        );
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
