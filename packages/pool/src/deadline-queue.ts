/** An entry of a {@link DeadlineQueue}: linked intrusively, expired by the queue's one timer. */
export interface Expiring {
  /** `performance.now()` time at which it expires. */
  readonly deadline: number;
  dlPrev: Expiring | undefined;
  dlNext: Expiring | undefined;
  inDeadlines: boolean;
  /** Called once when its deadline passes while it is still in the queue. */
  expire(): void;
}

/**
 * Entries whose deadlines arrive in the order they are added (every acquire with the pool's
 * default timeout), served by ONE unref'd timer armed for the head, instead of a timer per
 * waiter. Removing an entry is O(1); the timer re-arms lazily when it fires.
 */
export class DeadlineQueue {
  #head: Expiring | undefined;
  #tail: Expiring | undefined;
  #timer: NodeJS.Timeout | undefined;

  /** Adds an entry; its deadline must not be earlier than the tail's. */
  add(entry: Expiring): void {
    entry.inDeadlines = true;
    entry.dlPrev = this.#tail;
    entry.dlNext = undefined;
    if (this.#tail) this.#tail.dlNext = entry;
    else this.#head = entry;
    this.#tail = entry;
    if (!this.#timer) this.#arm(entry.deadline - performance.now());
  }

  remove(entry: Expiring): void {
    if (!entry.inDeadlines) return;
    entry.inDeadlines = false;
    if (entry.dlPrev) entry.dlPrev.dlNext = entry.dlNext;
    else this.#head = entry.dlNext;
    if (entry.dlNext) entry.dlNext.dlPrev = entry.dlPrev;
    else this.#tail = entry.dlPrev;
    entry.dlPrev = undefined;
    entry.dlNext = undefined;
    if (!this.#head && this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #arm(delayMs: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(delayMs)));
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (let head = this.#head; head && head.deadline <= now; head = this.#head) {
      this.remove(head);
      head.expire();
    }
    if (this.#head && !this.#timer) this.#arm(this.#head.deadline - now);
  }
}
