/** A listener for one event of an event map (event name -> payload type). */
export type Listener<T> = (payload: T) => void;

/** What happens to an error a listener throws. */
export type ListenerErrorHandler = (error: unknown, event: PropertyKey) => void;

/** The default {@link ListenerErrorHandler}: a process warning with code `SLUICE_LISTENER_THREW`. */
export function warnListenerError(error: unknown, event: PropertyKey): void {
  process.emitWarning(
    `a listener for the '${String(event)}' event threw: ${error instanceof Error ? error.message : String(error)}`,
    { code: 'SLUICE_LISTENER_THREW' },
  );
}

/**
 * A small typed event hub: `on()` returns the unsubscribe function, and a listener that throws
 * never breaks the code that emitted (the error goes to `onListenerError`).
 *
 * @example
 * ```ts
 * const events = new TypedEvents<{ leak: { heldMs: number } }>();
 * const off = events.on('leak', ({ heldMs }) => console.warn(heldMs));
 * events.emit('leak', { heldMs: 61_000 });
 * off();
 * ```
 */
export class TypedEvents<M extends object> {
  readonly #listeners = new Map<keyof M, Set<Listener<never>>>();
  readonly #onListenerError: ListenerErrorHandler;

  /** @param onListenerError receives what a listener throws. @default {@link warnListenerError} */
  constructor(onListenerError: ListenerErrorHandler = warnListenerError) {
    this.#onListenerError = onListenerError;
  }

  /** Adds `listener` for `event`; returns the function that removes it (idempotent). */
  on<E extends keyof M>(event: E, listener: Listener<M[E]>): () => void {
    const set = this.#listeners.get(event) ?? new Set();
    this.#listeners.set(event, set);
    const entry = listener as Listener<never>;
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /** True when `event` has listeners, so callers can skip building payloads nobody reads. */
  has(event: keyof M): boolean {
    const set = this.#listeners.get(event);
    return set !== undefined && set.size > 0;
  }

  /** Calls every listener of `event` with `payload`, in the order they were added. */
  emit<E extends keyof M>(event: E, payload: M[E]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<M[E]>)(payload);
      } catch (error) {
        this.#onListenerError(error, event);
      }
    }
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}

/** A value that tells its `onChange` listeners when `set()` changes it (a limit source); `clear()` drops them. */
export function settableValue<T>(initial: T) {
  const events = new TypedEvents<{ change: T }>();
  let current = initial;
  return {
    get current() {
      return current;
    },
    onChange: (listener: Listener<T>) => events.on('change', listener),
    set(value: T): void {
      if (value === current) return;
      current = value;
      events.emit('change', value);
    },
    clear: () => events.clear(),
  };
}

/**
 * Base of a long-lived object with typed events and a `close()`: `on()` for its users, the
 * protected `events` to emit on, and `Symbol.asyncDispose` for `await using`. A listener that
 * throws goes to `listenerError` (a subclass may override it).
 */
export abstract class Evented<M extends object> {
  protected readonly events = new TypedEvents<M>((error, event) => this.listenerError(error, event));

  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof M>(event: E, listener: Listener<M[E]>): () => void {
    return this.events.on(event, listener);
  }

  /** Releases what the object holds. Idempotent. */
  abstract close(): Promise<void>;

  /** Same as `close()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Receives what a listener throws. @default {@link warnListenerError} */
  protected listenerError(error: unknown, event: PropertyKey): void {
    warnListenerError(error, event);
  }
}
