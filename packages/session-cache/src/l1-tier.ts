import { LRUCache } from 'lru-cache';
import type { ResolvedOptions } from './cache-options.js';
import type { CacheEntry } from './entry.js';

type Positive = Extract<CacheEntry, { readonly valid: true }>;
type Negative = Extract<CacheEntry, { readonly valid: false }>;

/** Options of {@link L1Tier}: `max` valid entries, each kept at most `ttlMs`; the same for refused ones. */
export type L1TierOptions = NonNullable<ResolvedOptions['l1']> & {
  readonly negativeTtlMs: number;
  /** The cache's clock, epoch ms (lru-cache's `perf`). */
  readonly now: () => number;
  /** A valid entry was pushed out for capacity. */
  readonly onEvict: (key: string) => void;
};

/**
 * The in-process tier: valid and refused credentials in two lru-caches with their own bounds, so a
 * flood of refused (garbage) credentials can push out only other refused ones, never a known valid
 * one; and an index of the valid entries by user id, for `invalidateUser`. The index holds exactly
 * the keys of the valid cache, so it is bounded by `max`. Expiry is lru-cache's `ttl` on the
 * cache's clock: an entry ends at its own `expiresAt` or after `ttlMs`, whichever comes first.
 */
export class L1Tier {
  readonly #positive: LRUCache<string, Positive>;
  readonly #negative: LRUCache<string, Negative>;
  readonly #byUser = new Map<number, Set<string>>();
  readonly #o: L1TierOptions;
  /** Valid entries pushed out for capacity. */
  evictions = 0;
  /** Refused entries pushed out for capacity (by other refused ones). */
  negativeEvictions = 0;
  /** Entries dropped because they expired. */
  expirations = 0;

  constructor(options: L1TierOptions) {
    this.#o = options;
    const perf = { now: options.now };
    // ttlResolution 0: ask the clock on every read (no cached time, no timer), so an injected or
    // faked clock is followed exactly.
    this.#positive = new LRUCache<string, Positive>({
      max: options.max,
      ttl: options.ttlMs,
      ttlResolution: 0,
      perf,
      dispose: (entry, key, reason) => {
        const keys = this.#byUser.get(entry.identity.userId);
        keys?.delete(key);
        if (keys?.size === 0) this.#byUser.delete(entry.identity.userId);
        if (reason === 'expire') this.expirations += 1;
        else if (reason === 'evict') {
          this.evictions += 1;
          options.onEvict(key);
        }
      },
    });
    this.#negative = new LRUCache<string, Negative>({
      max: options.negativeMax,
      ttl: options.negativeTtlMs,
      ttlResolution: 0,
      perf,
      dispose: (_entry, _key, reason) => {
        if (reason === 'expire') this.expirations += 1;
        else if (reason === 'evict') this.negativeEvictions += 1;
      },
    });
  }

  /** Valid entries now. */
  get size(): number {
    return this.#positive.size;
  }

  /** Refused entries now. */
  get negativeSize(): number {
    return this.#negative.size;
  }

  /** Users with at least one valid entry now. */
  get users(): number {
    return this.#byUser.size;
  }

  get(key: string): CacheEntry | undefined {
    return this.#positive.get(key) ?? this.#negative.get(key);
  }

  /** Stores `entry` (a key is valid or refused, never both); an entry already expired is not stored. */
  set(key: string, entry: CacheEntry): void {
    this.delete(key);
    const cap = entry.valid ? this.#o.ttlMs : this.#o.negativeTtlMs;
    // lru-cache keeps an entry while its age is <= ttl; ours ends at expiresAt: one ms less.
    const ttl = Math.min(entry.expiresAt - this.#o.now(), cap) - 1;
    if (ttl < 1) return;
    if (!entry.valid) {
      this.#negative.set(key, entry, { ttl });
      return;
    }
    this.#positive.set(key, entry, { ttl });
    const keys = this.#byUser.get(entry.identity.userId) ?? new Set<string>();
    keys.add(key);
    this.#byUser.set(entry.identity.userId, keys);
  }

  delete(key: string): void {
    if (!this.#positive.delete(key)) this.#negative.delete(key);
  }

  /** The keys of `userId`'s valid entries. */
  keysOf(userId: number): string[] {
    return [...(this.#byUser.get(userId) ?? [])];
  }

  clear(): void {
    this.#positive.clear();
    this.#negative.clear();
  }
}
