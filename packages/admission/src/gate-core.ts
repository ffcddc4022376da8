import { TypedEvents } from '@sluice/kit';
import { admissionChannels } from './channels.js';
import { AdmissionError, type AdmissionErrorCode } from './errors.js';
import { isLimitSource, type LimitSource } from './limit-source.js';
import type { AcquireOptions, GateEvents, Permit, Priority, ReleaseOutcome } from './types.js';
import { checkFunction, checkInteger, checkNumber, checkObject, show } from './validate.js';
import { type ExpiryReason, type Waiter, WaitQueue } from './wait-queue.js';

/** Options every gate takes. */
export interface GateOptions {
  /** The concurrency limit: a number, or a {@link LimitSource} (pool size, database budget, adaptive). */
  limit: number | LimitSource;
  /** Most waiters queued at once; beyond it acquire fails with `E_QUEUE_FULL`. 0 = never queue. @default 1000 */
  maxQueue?: number;
  /** Longest wait in the queue before `E_QUEUE_TIMEOUT`. @default 10000 */
  queueTimeoutMs?: number;
  /** Most permits one key may hold at once (its other requests wait their turn). @default unlimited */
  perKeyLimit?: number;
  /**
   * Share of the limit reserved for `interactive` work, in [0, 1): `bulk` may hold at most
   * `limit - ceil(limit * interactiveReserve)` permits. With a limit of 1 and a reserve, bulk waits.
   * @default 0.2
   */
  interactiveReserve?: number;
  /** How long `close()` waits for permits to come back. @default 10000 */
  drainTimeoutMs?: number;
  /** Upper bound of the `retryAfterSeconds` estimate on rejections. @default 30 */
  maxRetryAfterSeconds?: number;
  /** Name in events and diagnostics messages. @default 'default' */
  name?: string;
  /** Monotonic clock in milliseconds. @default performance.now */
  now?: () => number;
}

/** A permit of a gate. */
export class GatePermit implements Permit {
  released = false;
  /** Lease id in Redis (distributed gates only). */
  leaseId: string | undefined;
  constructor(
    readonly key: string,
    readonly priority: Priority,
    readonly waitedMs: number,
    readonly acquiredAt: number,
    readonly inflightAtAcquire: number,
    private readonly onRelease: (permit: GatePermit, outcome: ReleaseOutcome) => void,
  ) {}

  release(outcome: ReleaseOutcome = 'ok'): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this, outcome);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

const defaultNow = (): number => performance.now();

/**
 * What the local and the distributed gate share: options, the wait queue, local accounting,
 * permits, events, Retry-After estimates and closing. Subclasses decide when a waiter is granted.
 */
export abstract class GateCore<M extends GateEvents = GateEvents> {
  protected readonly queue: WaitQueue;
  protected readonly events = new TypedEvents<M>();
  protected readonly gateName: string;
  protected readonly maxQueue: number;
  protected readonly queueTimeoutMs: number;
  protected readonly perKeyLimit: number;
  protected readonly interactiveReserve: number;
  protected readonly now: () => number;
  readonly #drainTimeoutMs: number;
  readonly #maxRetryAfterSeconds: number;
  #limit: number;
  readonly #source: LimitSource | undefined;
  #unsubscribeSource: (() => void) | undefined;
  #inFlight = 0;
  #bulkInFlight = 0;
  readonly #byKey = new Map<string, number>();
  #holdEwmaMs = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #onDrained: (() => void) | undefined;
  readonly #releaseBound = (permit: GatePermit, outcome: ReleaseOutcome): void =>
    this.#release(permit, outcome);

  constructor(options: GateOptions) {
    checkObject('options', options);
    const o = options;
    if (isLimitSource(o.limit)) {
      this.#source = o.limit;
      this.#limit = checkInteger('limit.current', o.limit.current, 0);
    } else {
      this.#source = undefined;
      this.#limit = checkInteger('limit', o.limit, 0);
    }
    this.maxQueue = o.maxQueue === undefined ? 1000 : checkInteger('maxQueue', o.maxQueue, 0);
    this.queueTimeoutMs =
      o.queueTimeoutMs === undefined
        ? 10_000
        : checkInteger('queueTimeoutMs', o.queueTimeoutMs, 1, 2 ** 31 - 1);
    this.perKeyLimit =
      o.perKeyLimit === undefined ? Number.POSITIVE_INFINITY : checkInteger('perKeyLimit', o.perKeyLimit, 1);
    this.interactiveReserve =
      o.interactiveReserve === undefined
        ? 0.2
        : checkNumber('interactiveReserve', o.interactiveReserve, 0, 0.99);
    this.#drainTimeoutMs =
      o.drainTimeoutMs === undefined
        ? 10_000
        : checkInteger('drainTimeoutMs', o.drainTimeoutMs, 0, 2 ** 31 - 1);
    this.#maxRetryAfterSeconds =
      o.maxRetryAfterSeconds === undefined
        ? 30
        : checkInteger('maxRetryAfterSeconds', o.maxRetryAfterSeconds, 1);
    if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0)) {
      throw new TypeError(`name should be a non-empty string, got ${show(o.name)}`);
    }
    this.gateName = o.name ?? 'default';
    this.now = checkFunction('now', o.now) ?? defaultNow;
    this.queue = new WaitQueue({
      timeoutMs: this.queueTimeoutMs,
      now: this.now,
      onExpire: (w, reason) => this.#expired(w, reason),
    });
  }

  /** Starts following the limit source (subclasses call it once they are ready). */
  protected followSource(): void {
    if (this.#source && !this.#unsubscribeSource) {
      this.#unsubscribeSource = this.#source.onChange((limit) => {
        if (!this.#closed) this.applyLimit(limit);
      });
    }
  }

  /** Permits held now (by this process). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Permits held now for `bulk` work. */
  get bulkInFlight(): number {
    return this.#bulkInFlight;
  }

  /** Waiters queued now (in this process). */
  get queued(): number {
    return this.queue.size;
  }

  /** The current limit. */
  get limit(): number {
    return this.#limit;
  }

  /** Slots free now: `limit - inFlight`, never below 0. */
  get available(): number {
    return Math.max(0, this.#limit - this.#inFlight);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Permits held by one key. */
  inFlightFor(key: string): number {
    return this.#byKey.get(key) ?? 0;
  }

  /**
   * Changes the limit at runtime. Growing admits waiters at once; shrinking takes effect as
   * permits return (nobody is interrupted).
   *
   * @throws {RangeError} when `limit` is not an integer >= 0.
   */
  setLimit(limit: number): void {
    this.applyLimit(checkInteger('limit', limit, 0));
  }

  /**
   * Subscribes to an event; returns the unsubscribe function.
   *
   * @example
   * ```ts
   * const off = gate.on('reject', (e) => metrics.rejections.inc({ code: e.code }));
   * ```
   */
  on<E extends keyof M>(event: E, listener: (payload: M[E]) => void): () => void {
    return this.events.on(event, listener);
  }

  protected applyLimit(limit: number): void {
    const previous = this.#limit;
    if (previous === limit) return;
    this.#limit = limit;
    const payload = { limit, previous };
    this.events.emit('limit', payload as M['limit']);
    if (admissionChannels.limit.hasSubscribers)
      admissionChannels.limit.publish({ gate: this.gateName, ...payload });
    this.onCapacity();
  }

  /** Most `bulk` permits allowed under `limit`. */
  protected bulkCap(limit: number): number {
    return this.interactiveReserve > 0 ? limit - Math.ceil(limit * this.interactiveReserve) : limit;
  }

  /** Whether local accounting allows one more permit for `key`/`priority` under `limit`. */
  protected canGrantLocal(key: string, priority: Priority, limit: number): boolean {
    if (this.#inFlight >= limit) return false;
    if (priority === 'bulk' && this.#bulkInFlight >= this.bulkCap(limit)) return false;
    return this.keyHasRoom(key);
  }

  /** Whether `key` holds fewer than `perKeyLimit` permits. */
  protected keyHasRoom(key: string): boolean {
    return this.perKeyLimit === Number.POSITIVE_INFINITY || (this.#byKey.get(key) ?? 0) < this.perKeyLimit;
  }

  /** Accounts and returns a new permit. */
  protected grant(key: string, priority: Priority, waitedMs: number): GatePermit {
    this.#inFlight += 1;
    if (priority === 'bulk') this.#bulkInFlight += 1;
    this.#byKey.set(key, (this.#byKey.get(key) ?? 0) + 1);
    const permit = new GatePermit(key, priority, waitedMs, this.now(), this.#inFlight, this.#releaseBound);
    if (this.events.has('acquire') || admissionChannels.acquire.hasSubscribers) {
      const payload = { key, priority, waitedMs, inFlight: this.#inFlight };
      this.events.emit('acquire', payload as M['acquire']);
      if (admissionChannels.acquire.hasSubscribers) {
        admissionChannels.acquire.publish({ gate: this.gateName, ...payload });
      }
    }
    return permit;
  }

  /**
   * Takes a queued waiter out and grants it. Checks its signal once more (dequeue time).
   * Returns the permit, or undefined when the waiter had already left or was aborted.
   */
  protected grantWaiter(waiter: Waiter): GatePermit | undefined {
    if (!this.queue.take(waiter)) return undefined;
    if (waiter.signal?.aborted) {
      waiter.reject(this.rejection('E_ABORTED', waiter.key, waiter.priority, waiter.signal.reason));
      return undefined;
    }
    const permit = this.grant(waiter.key, waiter.priority, Math.max(0, this.now() - waiter.enqueuedAt));
    waiter.resolve(permit);
    return permit;
  }

  /** Checks `closed` and the signal before any waiting. */
  protected precheck(options: AcquireOptions | undefined): { key: string; priority: Priority } {
    const key = options?.key ?? '';
    const priority = options?.priority ?? 'interactive';
    if (priority !== 'interactive' && priority !== 'bulk') {
      throw new TypeError(`priority should be 'interactive' or 'bulk', got ${show(priority)}`);
    }
    if (this.#closed) throw this.rejection('E_CLOSED', key, priority);
    if (options?.signal?.aborted) throw this.rejection('E_ABORTED', key, priority, options.signal.reason);
    return { key, priority };
  }

  /** Queues a waiter, or rejects with `E_QUEUE_FULL` (or `E_CLOSED`/`E_ABORTED` when that happened meanwhile). */
  protected enqueue(key: string, priority: Priority, signal: AbortSignal | undefined): Promise<Permit> {
    if (this.#closed) return Promise.reject(this.rejection('E_CLOSED', key, priority));
    if (signal?.aborted) return Promise.reject(this.rejection('E_ABORTED', key, priority, signal.reason));
    if (this.queue.size >= this.maxQueue)
      return Promise.reject(this.rejection('E_QUEUE_FULL', key, priority));
    return new Promise<Permit>((resolve, reject) => {
      this.queue.add(key, priority, signal, resolve, reject, !this.#byKey.has(key));
    });
  }

  /** Builds (and reports) a rejection. */
  protected rejection(
    code: AdmissionErrorCode,
    key: string,
    priority: Priority,
    cause?: unknown,
  ): AdmissionError {
    const retryAfterSeconds = this.retryAfterSeconds();
    const error = new AdmissionError(code, messages[code](this.gateName), {
      cause,
      retryAfterSeconds,
    });
    const payload = { code, key, priority, retryAfterSeconds: error.retryAfterSeconds };
    this.events.emit('reject', payload as M['reject']);
    if (admissionChannels.reject.hasSubscribers)
      admissionChannels.reject.publish({ gate: this.gateName, ...payload });
    return error;
  }

  /**
   * Seconds until a shed request is likely to get in: the queue ahead of it divided by the limit,
   * times the average time a permit is held; between 1 and `maxRetryAfterSeconds`.
   */
  retryAfterSeconds(): number {
    const holdMs = this.#holdEwmaMs > 0 ? this.#holdEwmaMs : 1000;
    const turns = (this.queue.size + 1) / Math.max(1, this.#limit);
    return Math.min(this.#maxRetryAfterSeconds, Math.max(1, Math.ceil((turns * holdMs) / 1000)));
  }

  #expired(waiter: Waiter, reason: ExpiryReason): void {
    waiter.reject(
      this.rejection(
        reason,
        waiter.key,
        waiter.priority,
        reason === 'E_ABORTED' ? waiter.signal?.reason : undefined,
      ),
    );
  }

  #release(permit: GatePermit, outcome: ReleaseOutcome): void {
    this.#inFlight -= 1;
    if (permit.priority === 'bulk') this.#bulkInFlight -= 1;
    const n = (this.#byKey.get(permit.key) ?? 1) - 1;
    if (n > 0) this.#byKey.set(permit.key, n);
    else this.#byKey.delete(permit.key);
    const heldMs = Math.max(0, this.now() - permit.acquiredAt);
    this.#holdEwmaMs = this.#holdEwmaMs === 0 ? heldMs : this.#holdEwmaMs * 0.9 + heldMs * 0.1;
    if (outcome !== 'ignore' && this.#source?.record) {
      this.#source.record({
        rttMs: heldMs,
        inflight: permit.inflightAtAcquire,
        dropped: outcome === 'dropped',
      });
    }
    if (this.events.has('release') || admissionChannels.release.hasSubscribers) {
      const payload = { key: permit.key, priority: permit.priority, heldMs, outcome };
      this.events.emit('release', payload as M['release']);
      if (admissionChannels.release.hasSubscribers) {
        admissionChannels.release.publish({ gate: this.gateName, ...payload });
      }
    }
    this.onReleased(permit);
    if (this.#inFlight === 0 && this.#onDrained) this.#onDrained();
  }

  /** A permit came back (accounting already done). */
  protected abstract onReleased(permit: GatePermit): void;
  /** The limit changed: admit whoever now fits. */
  protected abstract onCapacity(): void;
  /** Releases resources after the drain (timers, subscriptions, clients). */
  protected async onClosed(): Promise<void> {}

  /**
   * Refuses new work (`E_CLOSED`), rejects every queued waiter with `E_CLOSED`, then waits up to
   * `drainTimeoutMs` for held permits to be released. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#unsubscribeSource?.();
    for (const w of this.queue.drain()) w.reject(this.rejection('E_CLOSED', w.key, w.priority));
    this.#closing = (async () => {
      if (this.#inFlight > 0 && this.#drainTimeoutMs > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.#drainTimeoutMs);
          timer.unref();
          this.#onDrained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.#onDrained = undefined;
      await this.onClosed();
    })();
    return this.#closing;
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

const messages: Record<AdmissionErrorCode, (gate: string) => string> = {
  E_QUEUE_FULL: (g) => `admission queue of gate '${g}' is full`,
  E_QUEUE_TIMEOUT: (g) => `timed out waiting in the admission queue of gate '${g}'`,
  E_ABORTED: (g) => `the wait for gate '${g}' was aborted`,
  E_CLOSED: (g) => `gate '${g}' is closed`,
  E_CIRCUIT_OPEN: (g) => `circuit '${g}' is open`,
};
