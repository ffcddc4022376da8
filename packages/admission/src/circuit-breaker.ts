import { TypedEvents } from '@sluice/kit';
import Opossum from 'opossum';
import { admissionChannels } from './channels.js';
import { AdmissionError } from './errors.js';
import { checkFunction, checkInteger, checkNumber, checkObject, show } from './validate.js';

/** A circuit's state. */
export type CircuitState = 'closed' | 'open' | 'half-open';

/** Options of {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Name in events, errors and diagnostics messages. @default 'upstream' */
  name?: string;
  /** Failure percentage over the rolling window above which the circuit opens. @default 50 */
  errorThresholdPercentage?: number;
  /** Fewest calls in the rolling window before the circuit may open. @default 10 */
  volumeThreshold?: number;
  /** Length of the rolling window, in ms. @default 10000 */
  rollingWindowMs?: number;
  /** Buckets the rolling window is divided into. @default 10 */
  rollingBuckets?: number;
  /** Time the circuit stays open before letting one trial call through (half-open), in ms. @default 10000 */
  resetTimeoutMs?: number;
  /** A call not settled after this many ms counts as a failure (a timeout); `false` = never. @default false */
  timeoutMs?: number | false;
  /** For {@link CircuitBreaker.run}: which thrown errors count as failures. @default every error */
  isFailure?: (error: unknown) => boolean;
  /** Wall clock in ms, for `retryAfterSeconds`. @default Date.now */
  now?: () => number;
}

/** Events of {@link CircuitBreaker}. */
export interface CircuitBreakerEvents {
  /** The circuit changed state. */
  state: { from: CircuitState; to: CircuitState };
  /** A call was refused because the circuit is open (or half-open with its trial call running). */
  reject: { state: CircuitState; retryAfterSeconds: number };
  /** A call counted as a failure (`timedOut` when it was a timeout). */
  failure: { error: unknown; timedOut: boolean };
}

/** One call through the circuit whose outcome is reported by hand (an HTTP request, a stream). */
export interface CircuitCall {
  /** The upstream did its job (2xx-4xx). */
  success(): void;
  /** The upstream failed (5xx, timeout, connection error). */
  failure(error?: unknown): void;
  /** No verdict (the client went away): counts as a success, never as a failure. */
  neutral(): void;
  /** True once one of the above was called; later calls do nothing. */
  readonly settled: boolean;
}

/** Counts over the rolling window. */
export interface CircuitStats {
  fires: number;
  successes: number;
  failures: number;
  timeouts: number;
  /** Calls refused while open (never counted as fires or failures). */
  rejects: number;
}

/** The rejection a failed `CircuitCall` settles with inside opossum (always counted). */
class CallFailure extends Error {
  override readonly name = 'CallFailure';
}

type Work = () => Promise<unknown>;

/**
 * A circuit breaker (opossum) around the upstream: it opens when more than
 * `errorThresholdPercentage` of the calls in the rolling window failed (with at least
 * `volumeThreshold` calls), refuses calls at once while open (`E_CIRCUIT_OPEN`, with
 * `retryAfterSeconds` until half-open), lets one trial call through when half-open, and closes
 * when that call succeeds. Only what you report as a failure counts: requests shed before the
 * call and 4xx answers never do. It has no capacity of its own: put it behind a gate.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const breaker = new CircuitBreaker({ resetTimeoutMs: 5000 });
 * const call = breaker.begin(); // throws E_CIRCUIT_OPEN while open
 * res.on('finish', () => (res.statusCode >= 500 ? call.failure() : call.success()));
 * ```
 */
export class CircuitBreaker {
  readonly #opossum: Opossum<[Work], unknown>;
  readonly #events = new TypedEvents<CircuitBreakerEvents>();
  readonly #name: string;
  readonly #resetTimeoutMs: number;
  readonly #now: () => number;
  readonly #isFailure: (error: unknown) => boolean;
  #state: CircuitState = 'closed';
  #openedAt = 0;
  #rejects = 0;
  #closed = false;

  constructor(options: CircuitBreakerOptions = {}) {
    checkObject('options', options);
    const o = options;
    if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0)) {
      throw new TypeError(`name should be a non-empty string, got ${show(o.name)}`);
    }
    this.#name = o.name ?? 'upstream';
    const threshold =
      o.errorThresholdPercentage === undefined
        ? 50
        : checkNumber('errorThresholdPercentage', o.errorThresholdPercentage, 0, 100, true);
    const volume =
      o.volumeThreshold === undefined ? 10 : checkInteger('volumeThreshold', o.volumeThreshold, 0);
    const windowMs =
      o.rollingWindowMs === undefined
        ? 10_000
        : checkInteger('rollingWindowMs', o.rollingWindowMs, 10, 2 ** 31 - 1);
    const buckets =
      o.rollingBuckets === undefined
        ? 10
        : checkInteger('rollingBuckets', o.rollingBuckets, 1, Math.floor(windowMs / 10));
    this.#resetTimeoutMs =
      o.resetTimeoutMs === undefined
        ? 10_000
        : checkInteger('resetTimeoutMs', o.resetTimeoutMs, 1, 2 ** 31 - 1);
    let timeout: number | false = false;
    if (o.timeoutMs !== undefined && o.timeoutMs !== false) {
      timeout = checkInteger('timeoutMs', o.timeoutMs, 1, 2 ** 31 - 1);
    }
    this.#now = checkFunction('now', o.now) ?? Date.now;
    this.#isFailure = checkFunction('isFailure', o.isFailure) ?? (() => true);

    this.#opossum = new Opossum<[Work], unknown>((work: Work) => work(), {
      name: this.#name,
      timeout,
      resetTimeout: this.#resetTimeoutMs,
      errorThresholdPercentage: threshold,
      volumeThreshold: volume,
      rollingCountTimeout: windowMs,
      rollingCountBuckets: buckets,
      // opossum counts an error the filter accepts as a success; only real failures count.
      errorFilter: (error: unknown) => !(error instanceof CallFailure) && !this.#isFailure(error),
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
    });
    this.#opossum.on('open', () => {
      this.#openedAt = this.#now();
      this.#transition('open');
    });
    this.#opossum.on('halfOpen', () => this.#transition('half-open'));
    this.#opossum.on('close', () => this.#transition('closed'));
    this.#opossum.on('failure', (error: Error) => {
      if (this.#events.has('failure')) {
        const cause = error instanceof CallFailure ? error.cause : error;
        this.#events.emit('failure', {
          error: cause,
          timedOut: (error as { code?: string }).code === 'ETIMEDOUT',
        });
      }
    });
  }

  /** The circuit's name. */
  get name(): string {
    return this.#name;
  }

  /** `'closed'`, `'open'` or `'half-open'`. */
  get state(): CircuitState {
    return this.#state;
  }

  /** Whether a call would be let through now. */
  get allows(): boolean {
    return !this.#closed && (this.#opossum.closed || this.#opossum.pendingClose);
  }

  /** Seconds until the circuit lets a trial call through (0 when closed). */
  get retryAfterSeconds(): number {
    const state = this.#state;
    switch (state) {
      case 'closed':
        return 0;
      case 'half-open':
        return 1;
      case 'open':
        return Math.max(1, Math.ceil((this.#openedAt + this.#resetTimeoutMs - this.#now()) / 1000));
      default: {
        const unreachable: never = state;
        return unreachable;
      }
    }
  }

  /** Counts over the rolling window. */
  stats(): CircuitStats {
    const s = this.#opossum.stats;
    return {
      fires: s.fires,
      successes: s.successes,
      failures: s.failures,
      timeouts: s.timeouts,
      rejects: this.#rejects,
    };
  }

  /**
   * Starts a call whose outcome you report with `success()`, `failure()` or `neutral()`.
   *
   * @throws {AdmissionError} `E_CIRCUIT_OPEN` while open (or half-open with its trial running), `E_CLOSED` after `close()`.
   */
  begin(): CircuitCall {
    this.#precheck();
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const outcome = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#opossum.fire(() => outcome).catch(() => {});
    let settled = false;
    return {
      get settled() {
        return settled;
      },
      success() {
        if (settled) return;
        settled = true;
        resolve();
      },
      neutral() {
        if (settled) return;
        settled = true;
        resolve();
      },
      failure(error?: unknown) {
        if (settled) return;
        settled = true;
        reject(new CallFailure('upstream failure', { cause: error }));
      },
    };
  }

  /**
   * Runs `fn` through the circuit: its rejection counts as a failure when `isFailure` says so.
   *
   * @throws {AdmissionError} `E_CIRCUIT_OPEN` while open, `E_CLOSED` after `close()`; else whatever `fn` throws
   * (or opossum's `ETIMEDOUT` error when `timeoutMs` passes).
   * @example
   * ```ts
   * const body = await breaker.run(() => fetch(url).then((r) => r.text()));
   * ```
   */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    this.#precheck();
    return (await this.#opossum.fire(fn)) as T;
  }

  /**
   * Subscribes to an event; returns the unsubscribe function.
   *
   * @example
   * ```ts
   * breaker.on('state', ({ to }) => log.warn({ to }, 'upstream circuit'));
   * ```
   */
  on<E extends keyof CircuitBreakerEvents>(
    event: E,
    listener: (payload: CircuitBreakerEvents[E]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  /** Stops opossum's timers; later calls fail with `E_CLOSED`. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#opossum.shutdown();
    }
    return Promise.resolve();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #precheck(): void {
    if (this.#closed) throw new AdmissionError('E_CLOSED', `circuit '${this.#name}' is closed`);
    if (this.#opossum.closed || this.#opossum.pendingClose) return;
    this.#rejects += 1;
    const retryAfterSeconds = this.retryAfterSeconds;
    const payload = { state: this.#state, retryAfterSeconds };
    this.#events.emit('reject', payload);
    if (admissionChannels.reject.hasSubscribers) {
      admissionChannels.reject.publish({ breaker: this.#name, code: 'E_CIRCUIT_OPEN', ...payload });
    }
    throw new AdmissionError('E_CIRCUIT_OPEN', `circuit '${this.#name}' is ${this.#state}`, {
      retryAfterSeconds,
    });
  }

  #transition(to: CircuitState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    this.#events.emit('state', { from, to });
    if (admissionChannels.breaker.hasSubscribers)
      admissionChannels.breaker.publish({ breaker: this.#name, from, to });
  }
}
