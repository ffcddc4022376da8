import { FairQueue, type FairQueueEntry, type Lane } from './fair-queue.js';
import type { Permit, Priority } from './types.js';

/** A queued acquire. */
export interface Waiter extends FairQueueEntry {
  readonly key: string;
  readonly priority: Priority;
  readonly enqueuedAt: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (permit: Permit) => void;
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  onAbort: (() => void) | undefined;
}

/** Why a waiter left the queue on its own. */
export type ExpiryReason = 'E_QUEUE_TIMEOUT' | 'E_ABORTED';

/**
 * The bounded wait queue both gates share: one {@link FairQueue} per priority class, a timer per
 * waiter and an abort listener per waiter. A waiter that times out or aborts removes exactly
 * itself, clears its timer and its listener, and is handed to `onExpire` to be rejected.
 */
export class WaitQueue {
  readonly interactive = new FairQueue<Waiter>();
  readonly bulk = new FairQueue<Waiter>();
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #onExpire: (waiter: Waiter, reason: ExpiryReason) => void;

  constructor(o: {
    timeoutMs: number;
    now: () => number;
    onExpire: (waiter: Waiter, reason: ExpiryReason) => void;
  }) {
    this.#timeoutMs = o.timeoutMs;
    this.#now = o.now;
    this.#onExpire = o.onExpire;
  }

  get size(): number {
    return this.interactive.size + this.bulk.size;
  }

  lane(priority: Priority): FairQueue<Waiter> {
    return priority === 'interactive' ? this.interactive : this.bulk;
  }

  /** Queues a waiter; the caller checked the bound and the signal. */
  add(
    key: string,
    priority: Priority,
    signal: AbortSignal | undefined,
    resolve: (permit: Permit) => void,
    reject: (error: unknown) => void,
    fresh: boolean,
  ): Waiter {
    const waiter: Waiter = {
      key,
      priority,
      enqueuedAt: this.#now(),
      signal,
      resolve,
      reject,
      timer: undefined,
      onAbort: undefined,
      lane: undefined as Lane | undefined,
      prevInLane: undefined,
      nextInLane: undefined,
    };
    this.lane(priority).push(waiter, fresh);
    const timer = setTimeout(() => this.#expire(waiter, 'E_QUEUE_TIMEOUT'), this.#timeoutMs);
    timer.unref();
    waiter.timer = timer;
    if (signal) {
      const onAbort = (): void => this.#expire(waiter, 'E_ABORTED');
      waiter.onAbort = onAbort;
      signal.addEventListener('abort', onAbort, { once: true });
    }
    return waiter;
  }

  /** Takes a waiter out to grant it (counts a turn for its key). False if it already left. */
  take(waiter: Waiter): boolean {
    if (!this.lane(waiter.priority).take(waiter)) return false;
    this.#cleanup(waiter);
    return true;
  }

  /** Empties the queue (on close) and returns the waiters, their timers and listeners cleared. */
  drain(): Waiter[] {
    const all = [...this.interactive.drain(), ...this.bulk.drain()];
    for (const w of all) this.#cleanup(w);
    return all;
  }

  #expire(waiter: Waiter, reason: ExpiryReason): void {
    if (!this.lane(waiter.priority).remove(waiter)) return;
    this.#cleanup(waiter);
    this.#onExpire(waiter, reason);
  }

  #cleanup(waiter: Waiter): void {
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    waiter.timer = undefined;
    if (waiter.onAbort && waiter.signal) waiter.signal.removeEventListener('abort', waiter.onAbort);
    waiter.onAbort = undefined;
  }
}
