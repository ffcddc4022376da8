import { TypedEvents } from '@sluice/kit';
import { PoolError } from './errors.js';

/** What every monitor and scheduled job of the package offers besides its own members. */
export interface Scheduled<M> {
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof M>(event: E, listener: (payload: M[E]) => void): () => void;
  /** Stops the timer and waits for a run in flight. Idempotent. Never closes the pool. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of a {@link Repeater} whose runs resolve `M[K]`. */
export interface RepeaterOptions<M, K extends keyof M> {
  /** One run; `signal` aborts when the repeater closes. */
  readonly task: (signal: AbortSignal) => Promise<M[K]>;
  /** The event every result is emitted as (`'sample'`, `'reap'`, `'purge'`). */
  readonly event: K;
  /** Time between the end of one run and the start of the next, ms. */
  readonly intervalMs: number;
  /** Delay before the first run, ms. */
  readonly firstRunMs: number;
  /** What it is, for messages (`'the connection monitor'`). */
  readonly name: string;
  /** `process.emitWarning` code when a run fails and nobody listens for `error`. */
  readonly warningCode: string;
}

/**
 * The timer behind every scheduled job of the package (monitors, reaper, purge): runs `task`
 * every `intervalMs` on an unref'd timer, measured from the end of the previous run so runs never
 * overlap; `runNow()` shares a run already in flight; every result and failure goes to `events`
 * (a failure nobody listens for becomes one process warning per failing streak); `close()` stops
 * the timer, aborts the run's signal and waits for it.
 */
export class Repeater<M extends { error: unknown }, K extends keyof M> {
  readonly events = new TypedEvents<M>();
  readonly #o: RepeaterOptions<M, K>;
  readonly #stop = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<M[K]> | undefined;
  #closing: Promise<void> | undefined;
  #last: M[K] | undefined;
  #failing = false;

  constructor(options: RepeaterOptions<M, K>) {
    this.#o = options;
    this.#schedule(options.firstRunMs);
  }

  /** The most recent result. */
  get last(): M[K] | undefined {
    return this.#last;
  }

  /** Records a result that came with a failure (e.g. the partial result of a denied reap). */
  report(result: M[K]): void {
    this.#last = result;
    this.events.emit(this.#o.event, result);
  }

  /** Runs now (or joins the run in flight) and reschedules the next one after it. */
  runNow(): Promise<M[K]> {
    if (this.#closing) return Promise.reject(new PoolError('E_POOL_CLOSED', `${this.#o.name} is closed`));
    if (this.#inFlight) return this.#inFlight;
    clearTimeout(this.#timer);
    const run = (async () => this.#o.task(this.#stop.signal))();
    this.#inFlight = run;
    run.then(
      (value) => {
        this.#inFlight = undefined;
        this.#failing = false;
        this.report(value);
        this.#schedule(this.#o.intervalMs);
      },
      (error: unknown) => {
        this.#inFlight = undefined;
        if (this.events.has('error')) this.events.emit('error', error as M['error']);
        else if (!this.#failing) {
          const reason = error instanceof Error ? error.message : String(error);
          process.emitWarning(`${this.#o.name}: ${reason}`, { code: this.#o.warningCode });
        }
        this.#failing = true;
        this.#schedule(this.#o.intervalMs);
      },
    );
    return run;
  }

  /** Stops the timer, aborts the run in flight's signal and waits for it. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearTimeout(this.#timer);
      this.#stop.abort();
      await this.#inFlight?.catch(() => undefined);
    })();
    return this.#closing;
  }

  #schedule(delayMs: number): void {
    if (this.#closing) return;
    this.#timer = setTimeout(() => {
      this.runNow().catch(() => undefined); // reported through events
    }, delayMs);
    this.#timer.unref();
  }
}
