// A FIFO per key and a ring of keys, for round-robin dequeue across clients: the key served
// longest ago goes first, and a fresh key (one that holds nothing yet) goes ahead of every key
// already served (behind other fresh keys), so one client with 1000 queued requests delays
// another client's request by at most one turn. Every operation is O(1) except the eligibility scan,
// which walks keys in ring order until one is eligible.

/** Something a {@link FairQueue} holds. The link fields belong to the queue. */
export interface FairQueueEntry {
  readonly key: string;
  /** @internal */ lane: Lane | undefined;
  /** @internal */ prevInLane: FairQueueEntry | undefined;
  /** @internal */ nextInLane: FairQueueEntry | undefined;
}

/** @internal One key's FIFO, linked into the ring. */
export interface Lane {
  readonly key: string;
  head: FairQueueEntry | undefined;
  tail: FairQueueEntry | undefined;
  size: number;
  prev: Lane | undefined;
  next: Lane | undefined;
  /** Not served since it entered the ring: such lanes form a prefix of the ring. */
  fresh: boolean;
}

/** Round-robin queue across keys, FIFO within a key. */
export class FairQueue<T extends FairQueueEntry> {
  readonly #lanes = new Map<string, Lane>();
  #first: Lane | undefined;
  #last: Lane | undefined;
  #lastFresh: Lane | undefined;
  #size = 0;

  /** Entries queued. */
  get size(): number {
    return this.#size;
  }

  /** Distinct keys queued. */
  get keys(): number {
    return this.#lanes.size;
  }

  /** Entries queued for one key. */
  sizeOf(key: string): number {
    return this.#lanes.get(key)?.size ?? 0;
  }

  /**
   * Queues `entry` behind its key's other entries. A key not queued yet enters the ring ahead
   * of the keys already served when `fresh` (it holds nothing now), else at the back.
   */
  push(entry: T, fresh = true): void {
    let lane = this.#lanes.get(entry.key);
    if (!lane) {
      lane = {
        key: entry.key,
        head: undefined,
        tail: undefined,
        size: 0,
        prev: undefined,
        next: undefined,
        fresh,
      };
      this.#lanes.set(entry.key, lane);
      if (fresh) {
        this.#insertAfter(lane, this.#lastFresh);
        this.#lastFresh = lane;
      } else {
        this.#insertAfter(lane, this.#last);
      }
    }
    entry.lane = lane;
    entry.nextInLane = undefined;
    entry.prevInLane = lane.tail;
    if (lane.tail) lane.tail.nextInLane = entry;
    else lane.head = entry;
    lane.tail = entry;
    lane.size += 1;
    this.#size += 1;
  }

  /** The next entry in round-robin order whose key passes `eligible`, left in the queue. */
  peek(eligible?: (key: string) => boolean): T | undefined {
    for (let lane = this.#first; lane; lane = lane.next) {
      if (eligible === undefined || eligible(lane.key)) return lane.head as T;
    }
    return undefined;
  }

  /**
   * Up to `max` entries in service order, left in the queue: the heads of the keys in ring
   * order, then their second entries, and so on, at most `room(key)` per key.
   */
  collect(max: number, room: (key: string) => number, out: T[] = []): T[] {
    const cursors: { entry: FairQueueEntry | undefined; left: number }[] = [];
    for (let lane = this.#first; lane && cursors.length < max; lane = lane.next) {
      const left = room(lane.key);
      if (left > 0) cursors.push({ entry: lane.head, left });
    }
    const limit = out.length + max;
    let progress = true;
    while (progress && out.length < limit) {
      progress = false;
      for (const c of cursors) {
        if (out.length >= limit) break;
        if (c.entry && c.left > 0) {
          out.push(c.entry as T);
          c.entry = c.entry.nextInLane;
          c.left -= 1;
          progress = true;
        }
      }
    }
    return out;
  }

  /** Takes the next eligible entry out and counts a turn for its key. */
  shift(eligible?: (key: string) => boolean): T | undefined {
    const entry = this.peek(eligible);
    if (entry) this.take(entry);
    return entry;
  }

  /** Takes `entry` out and counts a turn for its key (its key moves to the back of the ring). False if not queued. */
  take(entry: T): boolean {
    const lane = entry.lane;
    if (!lane) return false;
    this.#unlinkEntry(entry, lane);
    if (lane.size > 0) {
      this.#unlinkLane(lane);
      lane.fresh = false;
      this.#insertAfter(lane, this.#last);
    }
    return true;
  }

  /** Takes `entry` out without counting a turn (a waiter that timed out or aborted). False if not queued. */
  remove(entry: T): boolean {
    const lane = entry.lane;
    if (!lane) return false;
    this.#unlinkEntry(entry, lane);
    return true;
  }

  /** Empties the queue and returns what it held, in ring order. */
  drain(): T[] {
    const out: T[] = [];
    for (let lane = this.#first; lane; lane = lane.next) {
      for (let e = lane.head; e; e = e.nextInLane) out.push(e as T);
    }
    for (const e of out) {
      e.lane = undefined;
      e.prevInLane = undefined;
      e.nextInLane = undefined;
    }
    this.#lanes.clear();
    this.#first = this.#last = this.#lastFresh = undefined;
    this.#size = 0;
    return out;
  }

  #unlinkEntry(entry: FairQueueEntry, lane: Lane): void {
    if (entry.prevInLane) entry.prevInLane.nextInLane = entry.nextInLane;
    else lane.head = entry.nextInLane;
    if (entry.nextInLane) entry.nextInLane.prevInLane = entry.prevInLane;
    else lane.tail = entry.prevInLane;
    entry.lane = undefined;
    entry.prevInLane = undefined;
    entry.nextInLane = undefined;
    lane.size -= 1;
    this.#size -= 1;
    if (lane.size === 0) {
      this.#unlinkLane(lane);
      this.#lanes.delete(lane.key);
    }
  }

  #insertAfter(lane: Lane, after: Lane | undefined): void {
    lane.prev = after;
    lane.next = after ? after.next : this.#first;
    if (lane.next) lane.next.prev = lane;
    else this.#last = lane;
    if (after) after.next = lane;
    else this.#first = lane;
  }

  #unlinkLane(lane: Lane): void {
    if (lane === this.#lastFresh) this.#lastFresh = lane.prev;
    if (lane.prev) lane.prev.next = lane.next;
    else this.#first = lane.next;
    if (lane.next) lane.next.prev = lane.prev;
    else this.#last = lane.prev;
    lane.prev = undefined;
    lane.next = undefined;
  }
}
