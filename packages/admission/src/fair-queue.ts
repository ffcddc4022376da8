import { LinkedList, type ListNode } from '@sluice/kit';

// A FIFO per key and a ring of keys, for round-robin dequeue across clients: the key served
// longest ago goes first, and a fresh key (one that holds nothing yet) goes ahead of every key
// already served (behind other fresh keys), so one client with 1000 queued requests delays
// another client's request by at most one turn. The ring is two lists, fresh keys then served
// keys; every operation is O(1) except the eligibility scan, which walks keys in ring order.

/** @internal Something a {@link FairQueue} holds. The link fields belong to the queue. */
export interface FairQueueEntry {
  readonly key: string;
  /** @internal */ lane: Lane | undefined;
  /** @internal */ node: ListNode<FairQueueEntry> | undefined;
}

/** @internal One key's FIFO, in the fresh or the served list. */
export interface Lane {
  readonly key: string;
  readonly entries: LinkedList<FairQueueEntry>;
  node: ListNode<Lane>;
}

/** @internal Round-robin queue across keys, FIFO within a key. */
export class FairQueue<T extends FairQueueEntry> {
  readonly #lanes = new Map<string, Lane>();
  readonly #fresh = new LinkedList<Lane>();
  readonly #served = new LinkedList<Lane>();
  #size = 0;

  /** Entries queued. */
  get size(): number {
    return this.#size;
  }

  /** Distinct keys queued. */
  get keys(): number {
    return this.#lanes.size;
  }

  /**
   * Queues `entry` behind its key's other entries. A key not queued yet enters the ring ahead
   * of the keys already served when `fresh` (it holds nothing now), else at the back.
   */
  push(entry: T, fresh = true): void {
    let lane = this.#lanes.get(entry.key);
    if (!lane) {
      const created = { key: entry.key, entries: new LinkedList<FairQueueEntry>() } as Lane;
      created.node = (fresh ? this.#fresh : this.#served).push(created);
      this.#lanes.set(entry.key, created);
      lane = created;
    }
    entry.lane = lane;
    entry.node = lane.entries.push(entry);
    this.#size += 1;
  }

  /** The next entry in round-robin order whose key passes `eligible`, left in the queue. */
  peek(eligible?: (key: string) => boolean): T | undefined {
    return this.#scan(this.#fresh, eligible) ?? this.#scan(this.#served, eligible);
  }

  /**
   * Up to `max` entries in service order, left in the queue: the heads of the keys in ring
   * order, then their second entries, and so on, at most `room(key)` per key.
   */
  collect(max: number, room: (key: string) => number, out: T[] = []): T[] {
    const cursors: { node: ListNode<FairQueueEntry> | undefined; left: number }[] = [];
    for (const lanes of [this.#fresh, this.#served]) {
      for (let n = lanes.head; n && cursors.length < max; n = n.next) {
        const left = room(n.value.key);
        if (left > 0) cursors.push({ node: n.value.entries.head, left });
      }
    }
    const limit = out.length + max;
    let progress = true;
    while (progress && out.length < limit) {
      progress = false;
      for (const c of cursors) {
        if (out.length >= limit) break;
        if (c.node && c.left > 0) {
          out.push(c.node.value as T);
          c.node = c.node.next;
          c.left -= 1;
          progress = true;
        }
      }
    }
    return out;
  }

  /** Takes `entry` out and counts a turn for its key (its key moves to the back of the ring). False if not queued. */
  take(entry: T): boolean {
    const lane = entry.lane;
    if (!lane) return false;
    this.remove(entry);
    if (lane.entries.size > 0) {
      if (this.#fresh.remove(lane.node)) lane.node = this.#served.push(lane);
      else this.#served.moveToBack(lane.node);
    }
    return true;
  }

  /** Takes `entry` out without counting a turn (a waiter that timed out or aborted). False if not queued. */
  remove(entry: T): boolean {
    const lane = entry.lane;
    if (!lane || !entry.node) return false;
    lane.entries.remove(entry.node);
    entry.lane = undefined;
    entry.node = undefined;
    this.#size -= 1;
    if (lane.entries.size === 0) {
      if (!this.#fresh.remove(lane.node)) this.#served.remove(lane.node);
      this.#lanes.delete(lane.key);
    }
    return true;
  }

  /** Empties the queue and returns what it held, in ring order. */
  drain(): T[] {
    const out: T[] = [];
    for (const lane of [...this.#fresh.clear(), ...this.#served.clear()]) {
      for (const e of lane.entries.clear()) {
        e.lane = undefined;
        e.node = undefined;
        out.push(e as T);
      }
    }
    this.#lanes.clear();
    this.#size = 0;
    return out;
  }

  #scan(lanes: LinkedList<Lane>, eligible: ((key: string) => boolean) | undefined): T | undefined {
    for (let n = lanes.head; n; n = n.next) {
      if (eligible === undefined || eligible(n.value.key)) return n.value.entries.head?.value as T;
    }
    return undefined;
  }
}
