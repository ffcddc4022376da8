/**
 * Something that waits in a {@link SlotGate} queue. The gate links entries intrusively (no
 * allocation per enqueue) and calls `grant()` when it hands the entry a slot.
 */
export abstract class GateEntry {
  /** @internal */
  gatePrev: GateEntry | undefined = undefined;
  /** @internal */
  gateNext: GateEntry | undefined = undefined;
  /** @internal true while in the queue */
  queued = false;

  /** Called when a slot is handed to this entry (it now holds one). */
  abstract grant(): void;
  /** Called when the queue is emptied without a slot for it (close()). */
  abstract cancel(): void;
}

/**
 * Counts slots (at most `limit` in use) and keeps a bounded FIFO of entries waiting for one. A
 * released slot goes straight to the head entry, so nobody barges in front of the queue; an
 * entry that gives up removes exactly itself (O(1), doubly linked).
 */
export class SlotGate {
  readonly limit: number;
  readonly maxWaiting: number;
  #inUse = 0;
  #waiting = 0;
  #head: GateEntry | undefined;
  #tail: GateEntry | undefined;

  constructor(limit: number, maxWaiting: number) {
    this.limit = limit;
    this.maxWaiting = maxWaiting;
  }

  /** Slots held now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Entries queued now. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Takes a slot when one is free and nobody is queued. */
  tryTake(): boolean {
    if (this.#inUse < this.limit && this.#waiting === 0) {
      this.#inUse += 1;
      return true;
    }
    return false;
  }

  /** Queues an entry; false when the queue is full (the caller fails fast). */
  enqueue(entry: GateEntry): boolean {
    if (this.#waiting >= this.maxWaiting || entry.queued) return false;
    entry.queued = true;
    entry.gatePrev = this.#tail;
    entry.gateNext = undefined;
    if (this.#tail) this.#tail.gateNext = entry;
    else this.#head = entry;
    this.#tail = entry;
    this.#waiting += 1;
    return true;
  }

  /** Removes an entry from the queue (its timeout or abort); false if it was not queued. */
  remove(entry: GateEntry): boolean {
    if (!entry.queued) return false;
    entry.queued = false;
    if (entry.gatePrev) entry.gatePrev.gateNext = entry.gateNext;
    else this.#head = entry.gateNext;
    if (entry.gateNext) entry.gateNext.gatePrev = entry.gatePrev;
    else this.#tail = entry.gatePrev;
    entry.gatePrev = undefined;
    entry.gateNext = undefined;
    this.#waiting -= 1;
    return true;
  }

  /** Gives a slot back: to the head entry if there is one, else to the free count. */
  release(): void {
    const head = this.#head;
    if (head) {
      this.remove(head);
      head.grant();
      return;
    }
    if (this.#inUse > 0) this.#inUse -= 1;
  }

  /** Empties the queue and cancels every entry in it, in order. */
  cancelAll(): void {
    for (let entry = this.#head; entry; entry = this.#head) {
      this.remove(entry);
      entry.cancel();
    }
  }
}
