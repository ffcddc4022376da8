import { armWait } from '@sluice/kit';
import { FairQueue, type FairQueueEntry } from './fair-queue.js';
import type { Permit, Priority } from './types.js';

/** @internal A queued acquire. */
export interface Waiter extends FairQueueEntry {
  readonly key: string;
  readonly priority: Priority;
  readonly enqueuedAt: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (permit: Permit) => void;
  readonly reject: (error: unknown) => void;
  disarm: () => void;
}

/**
 * @internal The bounded wait queue both gates share: one {@link FairQueue} per priority class,
 * each with its own timeout. A waiter that times out or aborts removes exactly itself (kit's
 * `armWait` clears its timer and listener) and is handed to `onExpire` to be rejected.
 */
export class WaitQueue {
  readonly interactive = new FairQueue<Waiter>();
  readonly bulk = new FairQueue<Waiter>();

  constructor(
    private readonly timeoutMs: Readonly<Record<Priority, number>>,
    private readonly now: () => number,
    private readonly onExpire: (waiter: Waiter, reason: 'E_QUEUE_TIMEOUT' | 'E_ABORTED') => void,
  ) {}

  get size(): number {
    return this.interactive.size + this.bulk.size;
  }

  lane(priority: Priority): FairQueue<Waiter> {
    return priority === 'interactive' ? this.interactive : this.bulk;
  }

  /** Queues a waiter and returns its promise; the caller checked the bound and the signal. */
  add(key: string, priority: Priority, signal: AbortSignal | undefined, fresh: boolean): Promise<Permit> {
    return new Promise<Permit>((resolve, reject) => {
      const lane = this.lane(priority);
      const waiter: Waiter = {
        key,
        priority,
        enqueuedAt: this.now(),
        signal,
        resolve,
        reject,
        disarm: noop,
        lane: undefined,
        node: undefined,
      };
      lane.push(waiter, fresh);
      waiter.disarm = armWait(this.timeoutMs[priority], signal, (why) => {
        if (lane.remove(waiter)) this.onExpire(waiter, why === 'timeout' ? 'E_QUEUE_TIMEOUT' : 'E_ABORTED');
      });
    });
  }

  /** Takes a waiter out to grant it (counts a turn for its key). False if it already left. */
  take(waiter: Waiter): boolean {
    if (!this.lane(waiter.priority).take(waiter)) return false;
    waiter.disarm();
    return true;
  }

  /** Empties the queue (on close) and returns the waiters, their timers and listeners cleared. */
  drain(): Waiter[] {
    const all = [...this.interactive.drain(), ...this.bulk.drain()];
    for (const w of all) w.disarm();
    return all;
  }
}

const noop = (): void => {};
