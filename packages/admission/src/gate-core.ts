import {
  checkChoice,
  checkFunction,
  checkInteger,
  checkNumber,
  checkObject,
  checkString,
  optional,
  TypedEvents,
  withTimeout,
} from '@sluice/kit';
import { admissionChannels } from './channels.js';
import { AdmissionError, type AdmissionErrorCode } from './errors.js';
import { type GateDemand, isLimitSource, type LimitSource } from './limit-source.js';
import type { AcquireOptions, AdmissionGate, GateEvents, Permit, Priority, ReleaseOutcome } from './types.js';
import { type Waiter, WaitQueue } from './wait-queue.js';

/** A value for each priority class, or one number for both. */
export type PerPriority =
  | number
  | { readonly interactive?: number | undefined; readonly bulk?: number | undefined };

/** Options every gate takes. */
export interface GateOptions {
  /** The concurrency limit: a number, or a {@link LimitSource} (pool size, database budget, load-following). */
  limit: number | LimitSource;
  /**
   * Most waiters queued per priority class; beyond it acquire fails with `E_QUEUE_FULL`. 0 = never
   * queue. Bulk waiters never take the interactive class's places. @default 1000 per class
   */
  maxQueue?: PerPriority | undefined;
  /**
   * Longest wait in the queue before `E_QUEUE_TIMEOUT`, per priority class: bulk work (exports,
   * scripts that do not retry) waits minutes rather than fail. @default { interactive: 10000, bulk: 300000 }
   */
  queueTimeoutMs?: PerPriority | undefined;
  /** Most permits one key may hold at once (its other requests wait their turn). @default unlimited */
  perKeyLimit?: number | undefined;
  /**
   * Share of the limit reserved for `interactive` work, in [0, 1): `bulk` may hold at most
   * `limit - ceil(limit * interactiveReserve)` permits. With a limit of 1 and a reserve, bulk waits.
   * @default 0.2
   */
  interactiveReserve?: number | undefined;
  /**
   * Share of the limit `bulk` work always gets when it waits, in [0, 1 - interactiveReserve]:
   * below `floor(limit * bulkShare)` bulk permits, a waiting `bulk` request goes before
   * `interactive` ones, so interactive traffic that fills the limit (an export script's polling)
   * cannot starve the exports it polls for. 0: `interactive` always first. @default 0.25
   */
  bulkShare?: number | undefined;
  /** How long `close()` waits for permits to come back. @default 10000 */
  drainTimeoutMs?: number | undefined;
  /** Upper bound of the `retryAfterSeconds` estimate on rejections. @default 30 */
  maxRetryAfterSeconds?: number | undefined;
  /** Name in events and diagnostics messages. @default 'default' */
  name?: string | undefined;
  /** Monotonic clock in milliseconds. @default performance.now */
  now?: (() => number) | undefined;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const priorities: readonly Priority[] = ['interactive', 'bulk'];

/** @internal Reads a {@link PerPriority} option, checking each value with `check`. */
export function perPriority(
  name: string,
  value: unknown,
  defaults: Readonly<Record<Priority, number>>,
  check: (name: string, value: unknown) => number,
): Readonly<Record<Priority, number>> {
  if (value === undefined) return defaults;
  if (typeof value === 'number') {
    const both = check(name, value);
    return { interactive: both, bulk: both };
  }
  checkObject(name, value);
  const o = value as { interactive?: unknown; bulk?: unknown };
  return {
    interactive: optional(o.interactive, defaults.interactive, (v) => check(`${name}.interactive`, v)),
    bulk: optional(o.bulk, defaults.bulk, (v) => check(`${name}.bulk`, v)),
  };
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
export abstract class GateCore<M extends GateEvents = GateEvents>
  implements Omit<AdmissionGate, 'acquire' | 'tryAcquire'>
{
  protected readonly queue: WaitQueue;
  protected readonly events = new TypedEvents<M>();
  protected readonly gateName: string;
  protected readonly maxQueue: Readonly<Record<Priority, number>>;
  protected readonly perKeyLimit: number;
  protected readonly interactiveReserve: number;
  protected readonly bulkShare: number;
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
  #dispatching = false;
  readonly #hasRoom = (key: string): boolean => this.keyHasRoom(key);
  #closing: Promise<void> | undefined;
  #onDrained: (() => void) | undefined;
  readonly #releaseBound = (permit: GatePermit, outcome: ReleaseOutcome): void =>
    this.#release(permit, outcome);

  constructor(options: GateOptions) {
    checkObject('options', options);
    const o = options;
    this.#source = isLimitSource(o.limit) ? o.limit : undefined;
    this.#limit = this.#source
      ? checkInteger('limit.current', this.#source.current, 0)
      : checkInteger('limit', o.limit, 0);
    const int = (name: keyof GateOptions, fallback: number, min: number, max?: number): number =>
      optional(o[name], fallback, (v) => checkInteger(name, v, min, max));
    this.maxQueue = perPriority('maxQueue', o.maxQueue, { interactive: 1000, bulk: 1000 }, (n, v) =>
      checkInteger(n, v, 0),
    );
    const timeouts = perPriority(
      'queueTimeoutMs',
      o.queueTimeoutMs,
      { interactive: 10_000, bulk: 300_000 },
      (n, v) => checkInteger(n, v, 1, MAX_TIMER_MS),
    );
    this.perKeyLimit = int('perKeyLimit', Number.POSITIVE_INFINITY, 1);
    this.interactiveReserve = optional(o.interactiveReserve, 0.2, (v) =>
      checkNumber('interactiveReserve', v, 0, 0.99),
    );
    // Rounded, so that a share written as 1 - reserve (0.1 with a reserve of 0.9) is accepted.
    const maxBulkShare = Math.round((1 - this.interactiveReserve) * 1e9) / 1e9;
    this.bulkShare = optional(o.bulkShare, Math.min(0.25, maxBulkShare), (v) =>
      checkNumber('bulkShare', v, 0, maxBulkShare),
    );
    this.#drainTimeoutMs = int('drainTimeoutMs', 10_000, 0, MAX_TIMER_MS);
    this.#maxRetryAfterSeconds = int('maxRetryAfterSeconds', 30, 1);
    this.gateName = optional(o.name, 'default', (v) => checkString('name', v));
    this.now = optional(o.now, defaultNow, (v) => checkFunction<() => number>('now', v));
    this.queue = new WaitQueue(timeouts, this.now, (w, reason) =>
      w.reject(
        this.rejection(reason, w.key, w.priority, reason === 'E_ABORTED' ? w.signal?.reason : undefined),
      ),
    );
  }

  /** Starts following the limit source (subclasses call it once they are ready). */
  protected followSource(): void {
    if (this.#source && !this.#unsubscribeSource) {
      this.#source.attach?.(() => this.demand());
      this.#unsubscribeSource = this.#source.onChange((limit) => {
        if (!this.#closed) this.applyLimit(limit);
      });
    }
  }

  /** What a closed-loop limit source reads: the waiters queued here and the permits in flight. */
  protected demand(): GateDemand {
    return { queued: this.queue.size, inFlight: this.#inFlight };
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Permits held now for `bulk` work. */
  get bulkInFlight(): number {
    return this.#bulkInFlight;
  }

  get queued(): number {
    return this.queue.size;
  }

  get limit(): number {
    return this.#limit;
  }

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

  setLimit(limit: number): void {
    this.applyLimit(checkInteger('limit', limit, 0));
  }

  on<E extends keyof M>(event: E, listener: (payload: M[E]) => void): () => void {
    return this.events.on(event, listener);
  }

  protected applyLimit(limit: number): void {
    const previous = this.#limit;
    if (previous === limit) return;
    this.#limit = limit;
    this.#emit('limit', { limit, previous });
    this.onCapacity();
  }

  /** Most `bulk` permits allowed under `limit`. */
  protected bulkCap(limit: number): number {
    return this.interactiveReserve > 0 ? limit - Math.ceil(limit * this.interactiveReserve) : limit;
  }

  /**
   * How many more waiting `bulk` requests go before interactive ones: bulk's share of `limit`
   * minus the bulk permits held (this process's by default).
   */
  protected bulkFirstRoom(limit: number, bulkInFlight = this.#bulkInFlight): number {
    return Math.floor(limit * this.bulkShare) - bulkInFlight;
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
    if (this.events.has('acquire') || admissionChannels.acquire.hasSubscribers)
      this.#emit('acquire', { key, priority, waitedMs, inFlight: this.#inFlight });
    return permit;
  }

  /**
   * Grants queued waiters while local accounting allows under `limit()` (0 stops it), one at a
   * time in fair order: `interactive` first, or `bulk` first below its share.
   */
  protected dispatch(limit: () => number, granted?: (permit: GatePermit) => void): void {
    if (this.#dispatching || this.#closed) return;
    this.#dispatching = true;
    try {
      const { interactive, bulk } = this.queue;
      while (this.queue.size > 0) {
        const max = limit();
        if (this.#inFlight >= max) break;
        const nextBulk = (): Waiter | undefined =>
          this.#bulkInFlight < this.bulkCap(max) ? bulk.peek(this.#hasRoom) : undefined;
        const waiter =
          this.bulkFirstRoom(max) > 0
            ? (nextBulk() ?? interactive.peek(this.#hasRoom))
            : (interactive.peek(this.#hasRoom) ?? nextBulk());
        if (!waiter) break;
        const permit = this.grantWaiter(waiter);
        if (permit) granted?.(permit);
      }
    } finally {
      this.#dispatching = false;
    }
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
    const priority = optional(options?.priority, 'interactive', (v) =>
      checkChoice('priority', v, priorities),
    );
    if (this.#closed) throw this.rejection('E_CLOSED', key, priority);
    if (options?.signal?.aborted) throw this.rejection('E_ABORTED', key, priority, options.signal.reason);
    return { key, priority };
  }

  /** Queues a waiter, or rejects with `E_QUEUE_FULL` (or `E_CLOSED`/`E_ABORTED` when that happened meanwhile). */
  protected enqueue(key: string, priority: Priority, signal: AbortSignal | undefined): Promise<Permit> {
    if (this.#closed) return Promise.reject(this.rejection('E_CLOSED', key, priority));
    if (signal?.aborted) return Promise.reject(this.rejection('E_ABORTED', key, priority, signal.reason));
    if (this.queue.lane(priority).size >= this.maxQueue[priority])
      return Promise.reject(this.rejection('E_QUEUE_FULL', key, priority));
    return this.queue.add(key, priority, signal, !this.#byKey.has(key));
  }

  /** Builds (and reports) a rejection. */
  protected rejection(
    code: AdmissionErrorCode,
    key: string,
    priority: Priority,
    cause?: unknown,
  ): AdmissionError {
    const retryAfterSeconds = this.retryAfterSeconds(priority);
    const error = new AdmissionError(code, messages[code](this.gateName), { cause, retryAfterSeconds });
    this.#emit('reject', { code, key, priority, retryAfterSeconds: error.retryAfterSeconds });
    return error;
  }

  /**
   * Seconds until a shed request of `priority` is likely to get in: the waiters ahead of it
   * (interactive ones are ahead of every bulk one) divided by the slots its class may use, times
   * the average time a permit is held; between 1 and `maxRetryAfterSeconds`.
   */
  retryAfterSeconds(priority: Priority = 'interactive'): number {
    const holdMs = this.#holdEwmaMs > 0 ? this.#holdEwmaMs : 1000;
    const bulk = priority === 'bulk';
    const ahead = this.queue.interactive.size + (bulk ? this.queue.bulk.size : 0);
    const slots = bulk ? this.bulkCap(this.#limit) : this.#limit;
    const turns = (ahead + 1) / Math.max(1, slots);
    return Math.min(this.#maxRetryAfterSeconds, Math.max(1, Math.ceil((turns * holdMs) / 1000)));
  }

  /** Emits `event` and publishes it, with the gate's name, on its diagnostics channel. */
  #emit<E extends keyof GateEvents>(event: E, payload: GateEvents[E]): void {
    this.events.emit(event, payload as M[E]);
    const channel = admissionChannels[event];
    if (channel.hasSubscribers) channel.publish({ gate: this.gateName, ...payload });
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
    if (this.events.has('release') || admissionChannels.release.hasSubscribers)
      this.#emit('release', { key: permit.key, priority: permit.priority, heldMs, outcome });
    this.onReleased(permit);
    if (this.#inFlight === 0 && this.#onDrained) this.#onDrained();
  }

  /** A permit came back (accounting already done). */
  protected abstract onReleased(permit: GatePermit): void;
  /** The limit changed: admit whoever now fits. */
  protected abstract onCapacity(): void;
  /** Releases resources after the drain (timers, subscriptions, clients). */
  protected async onClosed(): Promise<void> {}

  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#unsubscribeSource?.();
    for (const w of this.queue.drain()) w.reject(this.rejection('E_CLOSED', w.key, w.priority));
    this.#closing = (async () => {
      if (this.#inFlight > 0 && this.#drainTimeoutMs > 0) {
        const drained = new Promise<void>((resolve) => {
          this.#onDrained = resolve;
        });
        await withTimeout(() => drained, this.#drainTimeoutMs).catch(() => undefined);
      }
      this.#onDrained = undefined;
      await this.onClosed();
    })();
    return this.#closing;
  }

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
