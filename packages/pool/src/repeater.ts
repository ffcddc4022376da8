/**
 * Runs `task` every `intervalMs` (measured from the end of the previous run, so runs never
 * overlap) on an unref'd timer; `runNow()` shares a run already in flight; `close()` stops the
 * timer and waits for the run in flight.
 */
export class Repeater<T> {
  readonly #task: () => Promise<T>;
  readonly #intervalMs: number;
  readonly #onResult: (value: T) => void;
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<T> | undefined;
  #closed = false;

  constructor(
    task: () => Promise<T>,
    intervalMs: number,
    onResult: (value: T) => void,
    onError: (error: unknown) => void,
  ) {
    this.#task = task;
    this.#intervalMs = intervalMs;
    this.#onResult = onResult;
    this.#onError = onError;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get running(): boolean {
    return this.#inFlight !== undefined;
  }

  /** Schedules the first run after `delayMs`. */
  start(delayMs: number): void {
    this.#schedule(delayMs);
  }

  /** Runs now (or joins the run in flight) and reschedules the next one after it. */
  runNow(): Promise<T> {
    if (this.#inFlight) return this.#inFlight;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const run = (async () => this.#task())();
    this.#inFlight = run;
    run.then(
      (value) => {
        this.#inFlight = undefined;
        this.#onResult(value);
        this.#schedule(this.#intervalMs);
      },
      (error: unknown) => {
        this.#inFlight = undefined;
        this.#onError(error);
        this.#schedule(this.#intervalMs);
      },
    );
    return run;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const inFlight = this.#inFlight;
    if (inFlight)
      await inFlight.then(
        () => undefined,
        () => undefined,
      );
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.runNow().catch(() => {
        // reported through onError
      });
    }, delayMs);
    this.#timer.unref();
  }
}
