import {
  checkFunction,
  checkInteger,
  checkNumber,
  checkObject,
  checkString,
  Evented,
  optional,
  TimeoutError,
  withTimeout,
} from '@sluice/kit';
import { admissionChannels } from './channels.js';
import { AdmissionError } from './errors.js';

/** A circuit's state. */
export type CircuitState = 'closed' | 'open' | 'half-open';

/** Options of {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Name in events, errors and diagnostics messages. @default 'upstream' */
  name?: string | undefined;
  /** Failure percentage over the rolling window above which the circuit opens. @default 50 */
  errorThresholdPercentage?: number | undefined;
  /** Fewest settled calls in the rolling window before the circuit may open. @default 10 */
  volumeThreshold?: number | undefined;
  /** Length of the rolling window, in ms. @default 10000 */
  rollingWindowMs?: number | undefined;
  /** Buckets the rolling window is divided into. @default 10 */
  rollingBuckets?: number | undefined;
  /** Time the circuit stays open before letting one trial call through (half-open), in ms. @default 10000 */
  resetTimeoutMs?: number | undefined;
  /**
   * A call without a verdict after this many ms fails (a hang; for HTTP, no response head yet).
   * Set it from the upstream's headers timeout. `false` = never. @default false
   */
  timeoutMs?: number | false | undefined;
  /** For {@link CircuitBreaker.run}: which thrown errors count as failures. @default every error */
  isFailure?: ((error: unknown) => boolean) | undefined;
  /** Monotonic clock in ms (rolling window, `retryAfterSeconds`). @default performance.now */
  now?: (() => number) | undefined;
}

/** Events of {@link CircuitBreaker}. */
export interface CircuitBreakerEvents {
  /** The circuit changed state. */
  state: { from: CircuitState; to: CircuitState };
  /** A call was refused because the circuit is open (or half-open with its trial call running). */
  reject: { state: CircuitState; retryAfterSeconds: number };
  /** A call counted as a failure (`timedOut` when it hung past `timeoutMs`). */
  failure: { error: unknown; timedOut: boolean };
}

/**
 * One call through the circuit whose verdict is reported by hand (an HTTP request: at its
 * response head). The first report wins; later ones do nothing.
 */
export interface CircuitCall {
  /** The upstream did its job (2xx-4xx). */
  success(): void;
  /** The upstream failed (5xx, connection error). */
  failure(error?: unknown): void;
  /**
   * No verdict: the client went away before the upstream answered. Counts nothing; a half-open
   * trial is void and the circuit opens again (it never closes on an abandoned trial).
   */
  abandon(): void;
  /** True once settled (reported, or failed by `timeoutMs`). */
  readonly settled: boolean;
}

/** Counts over the rolling window. */
export interface CircuitStats {
  successes: number;
  /** Failures, timeouts included. */
  failures: number;
  timeouts: number;
  /** Calls refused while open (never counted as calls). */
  rejects: number;
}

type Verdict = 'success' | 'failure' | 'timeout' | 'abandon';

/** The state, switched on exhaustively. A half-open circuit has at most one trial call. */
type Inner =
  | { readonly kind: 'closed' }
  | { readonly kind: 'open'; readonly until: number; readonly timer: ReturnType<typeof setTimeout> }
  | { readonly kind: 'half-open'; trial: Call | undefined };

/** The counters of one slice of the rolling window, and the slice's index (`now / bucketMs`). */
type Bucket = ReturnType<typeof emptyBucket>;

class Call implements CircuitCall {
  settled = false;
  timer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    readonly trial: boolean,
    private readonly settle: (call: Call, verdict: Verdict, error?: unknown) => void,
  ) {}
  success(): void {
    this.settle(this, 'success');
  }
  failure(error?: unknown): void {
    this.settle(this, 'failure', error);
  }
  abandon(): void {
    this.settle(this, 'abandon');
  }
}

/**
 * A circuit breaker around the upstream. It opens when more than `errorThresholdPercentage` of
 * the settled calls in the rolling window failed (with at least `volumeThreshold` of them),
 * refuses calls at once while open (`E_CIRCUIT_OPEN`, with `retryAfterSeconds` until half-open),
 * lets one trial call through when half-open, closes when the trial succeeds, opens again when it
 * fails, hangs past `timeoutMs` or is abandoned. Only reported failures and hangs count: shed
 * requests, 4xx answers and abandoned calls never do.
 *
 * Written here rather than on opossum: opossum counts every call when it starts and settles each
 * as a success or a failure, so an abandoned call could not count nothing, and an abandoned
 * half-open trial would close the circuit. It has no capacity of its own: put it behind a gate.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const breaker = new CircuitBreaker({ resetTimeoutMs: 5000, timeoutMs: 30_000 });
 * const call = breaker.begin(); // throws E_CIRCUIT_OPEN while open
 * upstream.once('response', (r) => (r.statusCode >= 500 ? call.failure() : call.success()));
 * client.once('close', () => call.abandon()); // does nothing once settled
 * breaker.on('state', ({ to }) => log.warn({ to }, 'upstream circuit'));
 * ```
 */
export class CircuitBreaker extends Evented<CircuitBreakerEvents> {
  readonly #name: string;
  readonly #threshold: number;
  readonly #volume: number;
  readonly #bucketMs: number;
  readonly #buckets: Bucket[];
  readonly #resetTimeoutMs: number;
  readonly #timeoutMs: number | false;
  readonly #isFailure: (error: unknown) => boolean;
  readonly #now: () => number;
  readonly #settleBound = (call: Call, verdict: Verdict, error?: unknown): void =>
    this.#settle(call, verdict, error);
  #state: Inner = { kind: 'closed' };
  #closed = false;

  constructor(options: CircuitBreakerOptions = {}) {
    super();
    checkObject('options', options);
    const o = options;
    this.#name = optional(o.name, 'upstream', (v) => checkString('name', v));
    this.#threshold = optional(o.errorThresholdPercentage, 50, (v) =>
      checkNumber('errorThresholdPercentage', v, 0, 100, true),
    );
    const int = (name: keyof CircuitBreakerOptions, fallback: number, min: number, max?: number): number =>
      optional(o[name], fallback, (v) => checkInteger(name, v, min, max));
    this.#volume = int('volumeThreshold', 10, 0);
    const windowMs = int('rollingWindowMs', 10_000, 10);
    const buckets = int('rollingBuckets', 10, 1, Math.floor(windowMs / 10));
    this.#bucketMs = windowMs / buckets;
    this.#buckets = Array.from({ length: buckets }, () => emptyBucket());
    this.#resetTimeoutMs = int('resetTimeoutMs', 10_000, 1, 2 ** 31 - 1);
    this.#timeoutMs =
      o.timeoutMs === false
        ? false
        : optional(o.timeoutMs, false, (v) => checkInteger('timeoutMs', v, 1, 2 ** 31 - 1));
    this.#isFailure = optional(o.isFailure, always, (v) =>
      checkFunction<(e: unknown) => boolean>('isFailure', v),
    );
    this.#now = optional(o.now, monotonic, (v) => checkFunction<() => number>('now', v));
  }

  /** The circuit's name. */
  get name(): string {
    return this.#name;
  }

  /** `'closed'`, `'open'` or `'half-open'`. */
  get state(): CircuitState {
    return this.#state.kind;
  }

  /** Whether a call would be let through now. */
  get allows(): boolean {
    const s = this.#state;
    return !this.#closed && (s.kind === 'closed' || (s.kind === 'half-open' && s.trial === undefined));
  }

  /** Seconds until the circuit lets a trial call through (0 when closed). */
  get retryAfterSeconds(): number {
    const s = this.#state;
    switch (s.kind) {
      case 'closed':
        return 0;
      case 'half-open':
        return 1;
      case 'open':
        return Math.max(1, Math.ceil((s.until - this.#now()) / 1000));
      default: {
        const unreachable: never = s;
        return unreachable;
      }
    }
  }

  /** Counts over the rolling window. */
  stats(): CircuitStats {
    const oldest = this.#bucketIndex() - this.#buckets.length;
    const sum: CircuitStats = { successes: 0, failures: 0, timeouts: 0, rejects: 0 };
    for (const b of this.#buckets) {
      if (b.at > oldest) for (const k of counters) sum[k] += b[k];
    }
    return sum;
  }

  /**
   * Starts a call whose verdict you report with `success()`, `failure()` or `abandon()`; it fails
   * by itself when `timeoutMs` passes first.
   *
   * @throws {AdmissionError} `E_CIRCUIT_OPEN` while open (or half-open with its trial running), `E_CLOSED` after `close()`.
   */
  begin(): CircuitCall {
    if (this.#closed) throw new AdmissionError('E_CLOSED', `circuit '${this.#name}' is closed`);
    const s = this.#state;
    let call: Call;
    if (s.kind === 'closed') call = new Call(false, this.#settleBound);
    else if (s.kind === 'half-open' && s.trial === undefined) {
      call = new Call(true, this.#settleBound);
      s.trial = call;
    } else throw this.#refuse();
    if (this.#timeoutMs !== false) {
      const ms = this.#timeoutMs;
      call.timer = setTimeout(() => {
        this.#settle(call, 'timeout', new TimeoutError(`no verdict within ${ms} ms`, ms));
      }, ms);
      call.timer.unref?.();
    }
    return call;
  }

  /**
   * Runs `fn` through the circuit: its rejection counts as a failure when `isFailure` says so.
   * With `timeoutMs`, `fn`'s signal aborts and the call fails with a `TimeoutError` when it passes.
   *
   * @throws {AdmissionError} `E_CIRCUIT_OPEN` while open, `E_CLOSED` after `close()`; else whatever `fn` throws.
   * @example
   * ```ts
   * const body = await breaker.run((signal) => fetch(url, { signal }).then((r) => r.text()));
   * ```
   */
  async run<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const call = this.begin();
    try {
      const value = await (this.#timeoutMs === false
        ? fn(new AbortController().signal)
        : withTimeout(fn, this.#timeoutMs));
      call.success();
      return value;
    } catch (error) {
      if (this.#isFailure(error)) call.failure(error);
      else call.success();
      throw error;
    }
  }

  /** Stops its timer; later calls fail with `E_CLOSED`. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#state.kind === 'open') clearTimeout(this.#state.timer);
  }

  #settle(call: Call, verdict: Verdict, error?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    if (call.timer !== undefined) clearTimeout(call.timer);
    const s = this.#state;
    if (this.#closed) return;
    if (call.trial) {
      // Only the running trial decides a half-open circuit; a void trial opens it again.
      if (s.kind !== 'half-open' || s.trial !== call) return;
      if (verdict === 'success') {
        for (const b of this.#buckets) Object.assign(b, emptyBucket());
        this.#to({ kind: 'closed' });
      } else {
        if (verdict !== 'abandon') this.#failed(error, verdict === 'timeout');
        this.#open();
      }
      return;
    }
    // A call begun before the circuit opened says nothing about it now; abandoned calls never count.
    if (s.kind !== 'closed' || verdict === 'abandon') return;
    const bucket = this.#bucket();
    if (verdict === 'success') {
      bucket.successes += 1;
      return;
    }
    bucket.failures += 1;
    if (verdict === 'timeout') bucket.timeouts += 1;
    this.#failed(error, verdict === 'timeout');
    const { successes, failures } = this.stats();
    const total = successes + failures;
    if (total >= this.#volume && failures * 100 > this.#threshold * total) this.#open();
  }

  #failed(error: unknown, timedOut: boolean): void {
    if (this.events.has('failure')) this.events.emit('failure', { error, timedOut });
  }

  #open(): void {
    const timer = setTimeout(() => this.#to({ kind: 'half-open', trial: undefined }), this.#resetTimeoutMs);
    timer.unref?.();
    this.#to({ kind: 'open', until: this.#now() + this.#resetTimeoutMs, timer });
  }

  #to(next: Inner): void {
    const from = this.#state.kind;
    this.#state = next;
    if (from === next.kind) return;
    this.events.emit('state', { from, to: next.kind });
    if (admissionChannels.breaker.hasSubscribers)
      admissionChannels.breaker.publish({ breaker: this.#name, from, to: next.kind });
  }

  #refuse(): AdmissionError {
    this.#bucket().rejects += 1;
    const retryAfterSeconds = this.retryAfterSeconds;
    const payload = { state: this.#state.kind, retryAfterSeconds };
    this.events.emit('reject', payload);
    if (admissionChannels.reject.hasSubscribers) {
      admissionChannels.reject.publish({ breaker: this.#name, code: 'E_CIRCUIT_OPEN', ...payload });
    }
    return new AdmissionError('E_CIRCUIT_OPEN', `circuit '${this.#name}' is ${this.#state.kind}`, {
      retryAfterSeconds,
    });
  }

  #bucketIndex(): number {
    return Math.floor(this.#now() / this.#bucketMs);
  }

  /** The current bucket, emptied first when it last served a window ago or more. */
  #bucket(): Bucket {
    const at = this.#bucketIndex();
    const n = this.#buckets.length;
    const bucket = this.#buckets[((at % n) + n) % n] as Bucket;
    if (bucket.at !== at) Object.assign(bucket, emptyBucket(), { at });
    return bucket;
  }
}

const counters = ['successes', 'failures', 'timeouts', 'rejects'] as const;
const always = (): boolean => true;
const monotonic = (): number => performance.now();

function emptyBucket() {
  return { at: Number.NEGATIVE_INFINITY, successes: 0, failures: 0, timeouts: 0, rejects: 0 };
}
