import { Evented } from './events.js';
import { checkChoice, checkFunction, checkInteger, checkObject, checkString, optional } from './options.js';
import { withTimeout } from './timeouts.js';

/**
 * A dependency's health: `connecting` (not answered yet since start), `up`, or `down` (failed;
 * probed every `probeIntervalMs` until it answers).
 */
export type HealthState = 'connecting' | 'up' | 'down';

/** Options of {@link Health}. */
export interface HealthOptions {
  /** Name in messages (`'database'`, `'redis'`). */
  name: string;
  /**
   * One bounded round trip (`SELECT 1`, `PING`); rejects when the dependency is unreachable.
   * Without it, only `success()` brings a `down` dependency back (e.g. a client's 'ready' event).
   */
  probe?: ((signal: AbortSignal) => Promise<unknown>) | undefined;
  /** While down, time between probes; also the least time between two probes on suspicion. */
  probeIntervalMs: number;
  /** A probe that takes longer fails. @default probeIntervalMs */
  probeTimeoutMs?: number | undefined;
  /** Consecutive `failure()` reports that mark it down (a failed probe always does). @default 1 */
  failureThreshold?: number | undefined;
  /** The state at start. @default 'up' */
  initial?: 'connecting' | 'up' | undefined;
  /** With `initial: 'connecting'`: still no success after this long marks it down. @default never */
  connectTimeoutMs?: number | undefined;
  /** Wall clock, epoch ms (for `downSince` and `downForMs`). @default Date.now */
  now?: (() => number) | undefined;
}

/** Events of a {@link Health}. */
export interface HealthEvents {
  /** It became unreachable (from `connecting` or `up`). */
  down: { readonly error: unknown; readonly from: 'connecting' | 'up' };
  /** It answered: first time (`downForMs` undefined) or after an outage. */
  up: { readonly downForMs: number | undefined };
}

/**
 * The one "down -> probe -> up" state machine of Sluice: the gateway's database guard, the
 * session cache's Redis tier and the distributed semaphore's Redis all use it. Failures reported
 * with `failure()` (after `failureThreshold` in a row) or a failed probe mark it down; then it
 * is probed every `probeIntervalMs` (each bounded by `probeTimeoutMs`) until one answers, or until
 * someone reports `success()`. At most one probe runs at a time.
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * const db = new Health({ name: 'database', probe: (signal) => pool.query('SELECT 1', [], { signal }), probeIntervalMs: 500 });
 * pool.on('error', ({ error }) => db.suspect(error));
 * db.on('down', ({ error }) => log.error({ err: error }, 'database down'));
 * ```
 */
export class Health extends Evented<HealthEvents> {
  readonly name: string;
  readonly #probe: ((signal: AbortSignal) => Promise<unknown>) | undefined;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #threshold: number;
  readonly #now: () => number;
  #state: HealthState;
  #failures = 0;
  #downSince: number | undefined;
  #lastError: unknown;
  #outages = 0;
  #closed = false;
  #probing: Promise<void> | undefined;
  #lastProbeAt = Number.NEGATIVE_INFINITY;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: HealthOptions) {
    super();
    checkObject('options', options);
    this.name = checkString('name', options.name);
    this.#probe = optional(options.probe, undefined, (v) =>
      checkFunction<(signal: AbortSignal) => Promise<unknown>>('probe', v),
    );
    this.#intervalMs = checkInteger('probeIntervalMs', options.probeIntervalMs, 1, 2 ** 31 - 1);
    this.#timeoutMs = optional(options.probeTimeoutMs, this.#intervalMs, (v) =>
      checkInteger('probeTimeoutMs', v, 1, 2 ** 31 - 1),
    );
    this.#threshold = optional(options.failureThreshold, 1, (v) => checkInteger('failureThreshold', v, 1));
    this.#now = optional(options.now, Date.now, (v) => checkFunction<() => number>('now', v));
    this.#state = optional(options.initial, 'up', (v) => checkChoice('initial', v, ['connecting', 'up']));
    if (this.#state === 'connecting' && options.connectTimeoutMs !== undefined) {
      const ms = checkInteger('connectTimeoutMs', options.connectTimeoutMs, 1, 2 ** 31 - 1);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#state === 'connecting') {
          this.#markDown(new Error(`${this.name} did not answer within ${ms} ms of start`));
        }
      }, ms);
      this.#timer.unref?.();
    }
  }

  /** `connecting`, `up` or `down`. */
  get state(): HealthState {
    return this.#state;
  }

  /** When the current outage began (epoch ms), while down. */
  get downSince(): number | undefined {
    return this.#downSince;
  }

  /** The error that marked it down (or the latest one since), while down. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Outages since start. */
  get outages(): number {
    return this.#outages;
  }

  /** True while a probe runs. */
  get probing(): boolean {
    return this.#probing !== undefined;
  }

  /** Something answered: it is up (from `connecting` or `down`), and the failure count resets. */
  success(): void {
    this.#failures = 0;
    if (this.#closed || this.#state === 'up') return;
    const downForMs = this.#downSince === undefined ? undefined : this.#now() - this.#downSince;
    this.#state = 'up';
    this.#downSince = undefined;
    this.#lastError = undefined;
    this.#clearTimer();
    this.events.emit('up', { downForMs });
  }

  /** Something failed: after `failureThreshold` in a row it is down. */
  failure(error: unknown): void {
    if (this.#closed) return;
    if (this.#state === 'down') {
      this.#lastError = error;
      return;
    }
    this.#failures += 1;
    if (this.#failures >= this.#threshold) this.#markDown(error);
  }

  /**
   * Something failed in a way that may mean it is gone: probe now (at most once per interval).
   * Without a probe it counts as a `failure()`.
   */
  suspect(error: unknown): void {
    if (this.#closed || this.#probing) return;
    if (this.#state === 'down' || !this.#probe) {
      this.failure(error);
      return;
    }
    if (performance.now() - this.#lastProbeAt < this.#intervalMs) return;
    void this.#runProbe();
  }

  /**
   * Like `suspect()`, but waits for the verdict and ignores the interval while up: probes now (or
   * joins the running probe) and resolves with the state it left, within `probeTimeoutMs`.
   * While down it joins a running probe or answers `down` at once.
   */
  async check(error: unknown): Promise<HealthState> {
    if (this.#closed) return this.#state;
    if (this.#state === 'down') {
      this.#lastError = error;
      if (this.#probing) await this.#probing;
      return this.#state;
    }
    if (this.#probe) await this.#runProbe();
    else this.failure(error);
    return this.#state;
  }

  /** Stops probing; waits for a running probe. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clearTimer();
    await this.#probing;
  }

  #markDown(error: unknown): void {
    this.#lastError = error;
    if (this.#state === 'down') return;
    const from = this.#state;
    this.#state = 'down';
    this.#downSince = this.#now();
    this.#outages += 1;
    this.#clearTimer();
    this.events.emit('down', { error, from });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed || this.#state !== 'down' || this.#timer || !this.#probe) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#runProbe();
    }, this.#intervalMs);
    this.#timer.unref?.();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #runProbe(): Promise<void> {
    const probe = this.#probe;
    if (this.#closed || !probe) return Promise.resolve();
    this.#probing ??= (async () => {
      this.#lastProbeAt = performance.now();
      try {
        await withTimeout(probe, this.#timeoutMs, {
          message: `${this.name} did not answer within ${this.#timeoutMs} ms`,
        });
        this.success();
      } catch (error) {
        if (!this.#closed) this.#markDown(error);
      } finally {
        this.#probing = undefined;
        this.#schedule();
      }
    })();
    return this.#probing;
  }
}
