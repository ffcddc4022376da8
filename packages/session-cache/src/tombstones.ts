import { LRUCache } from 'lru-cache';
import type { CacheEntry } from './entry.js';

const MAX_TOMBSTONES = 10_000;

/**
 * Invalidation epochs. Every invalidation (of a key, or of every key of a user) takes the next
 * epoch; a lookup notes the epoch it started at, and an answer it got is not stored when its key
 * or its user was invalidated since: a validation in flight during a logout cannot put the
 * logged-out credential back. Bounded: the latest 10,000 keys and 10,000 users.
 */
export class Tombstones {
  #epoch = 0;
  readonly #keys = new LRUCache<string, number>({ max: MAX_TOMBSTONES });
  readonly #users = new LRUCache<number, number>({ max: MAX_TOMBSTONES });

  /** The epoch now: a lookup starting now notes it. */
  get epoch(): number {
    return this.#epoch;
  }

  markKey(key: string): void {
    this.#epoch += 1;
    this.#keys.set(key, this.#epoch);
  }

  markUser(userId: number): void {
    this.#epoch += 1;
    this.#users.set(userId, this.#epoch);
  }

  /** True when `entry`, got for `key` by a lookup that started at `since`, was invalidated meanwhile. */
  buried(key: string, entry: CacheEntry, since: number): boolean {
    if ((this.#keys.get(key) ?? 0) > since) return true;
    return entry.valid && (this.#users.get(entry.identity.userId) ?? 0) > since;
  }
}
