/** A node of a {@link LinkedList}: the handle `push()` returns, used to remove exactly that entry. */
export interface ListNode<T> {
  readonly value: T;
  /** @internal */ prev: ListNode<T> | undefined;
  /** @internal */ next: ListNode<T> | undefined;
  /** @internal the list it is in, or undefined once removed */ list: LinkedList<T> | undefined;
}

/**
 * A doubly linked FIFO: O(1) push, shift and removal of any entry by its node. The wait queues of
 * the pool and the admission gates are built on it, so a waiter that times out or aborts removes
 * exactly itself.
 *
 * @example
 * ```ts
 * const waiting = new LinkedList<Waiter>();
 * const node = waiting.push(waiter);
 * waiting.remove(node); // on timeout
 * ```
 */
export class LinkedList<T> {
  #head: ListNode<T> | undefined;
  #tail: ListNode<T> | undefined;
  #size = 0;

  /** Entries in the list. */
  get size(): number {
    return this.#size;
  }

  /** The first node, left in the list. */
  get head(): ListNode<T> | undefined {
    return this.#head;
  }

  /** Appends `value`; returns its node. */
  push(value: T): ListNode<T> {
    return this.#append({ value, prev: undefined, next: undefined, list: undefined });
  }

  /** Takes the first entry out. */
  shift(): T | undefined {
    const node = this.#head;
    if (!node) return undefined;
    this.remove(node);
    return node.value;
  }

  /** Removes `node`; false when it is not in this list (removed already). */
  remove(node: ListNode<T>): boolean {
    if (node.list !== this) return false;
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.#tail = node.prev;
    node.prev = undefined;
    node.next = undefined;
    node.list = undefined;
    this.#size -= 1;
    return true;
  }

  /** Moves `node` (in this list) to the back. */
  moveToBack(node: ListNode<T>): void {
    if (node.list !== this || node === this.#tail) return;
    this.remove(node);
    this.#append(node);
  }

  /** Empties the list and returns its entries in order. */
  clear(): T[] {
    const out: T[] = [];
    for (let node = this.#head; node; node = this.#head) {
      this.remove(node);
      out.push(node.value);
    }
    return out;
  }

  #append(node: ListNode<T>): ListNode<T> {
    node.prev = this.#tail;
    node.list = this;
    if (this.#tail) this.#tail.next = node;
    else this.#head = node;
    this.#tail = node;
    this.#size += 1;
    return node;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let node = this.#head; node; node = node.next) yield node.value;
  }
}
