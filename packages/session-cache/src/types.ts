import type { Credential } from '@sluice/django';
import type { L2Error } from './errors.js';
import type { CredentialKind, Identity, Validator } from './identity.js';

// The public shape of the session cache: what a lookup answers, what it counts, what it tells.

/** Where an answer came from. */
export type LookupTier = 'l1' | 'l2' | 'validator';

/** The answer for one credential. */
export type LookupResult =
  | { readonly status: 'valid'; readonly identity: Identity; readonly tier: LookupTier }
  | { readonly status: 'invalid'; readonly reason: string; readonly tier: LookupTier };

/**
 * How the L2 tier is doing: `'connecting'` until Redis first answers, `'probing'` while a PING
 * probe of a down Redis runs, `'disabled'` without Redis.
 */
export type L2State = 'disabled' | 'connecting' | 'up' | 'down' | 'probing';

/** The invalidation subscriber: `'disabled'` without L2 or with `l2.invalidation: false`. */
export type BusState = 'disabled' | 'subscribed' | 'disconnected';

/** Counters (monotonic) and gauges of a {@link SessionCache}. */
export interface SessionCacheStats {
  /** Lookups answered from L1 (valid and refused entries). */
  readonly l1Hits: number;
  /** Lookups answered from L2 (including after waiting for another instance's lock). */
  readonly l2Hits: number;
  /** Lookups that found nothing in L1 or L2 and needed a validation. */
  readonly misses: number;
  /** Of the hits, how many were negative (a cached refusal): `l1NegativeHits + l2NegativeHits`. */
  readonly negativeHits: number;
  /** Of the L1 hits, how many were negative. */
  readonly l1NegativeHits: number;
  /** Of the L2 hits, how many were negative. */
  readonly l2NegativeHits: number;
  /** Lookups that joined another in-flight lookup of the same credential in this process. */
  readonly coalesced: number;
  /** Times the cross-instance lock was held by another instance and this one waited for L2. */
  readonly lockWaits: number;
  /** Validator calls. */
  readonly validatorCalls: number;
  /** Validator calls that failed or timed out (not cached). */
  readonly validatorErrors: number;
  /** Validator latency: count, sum and max, ms. */
  readonly validatorLatencyMs: { readonly count: number; readonly sum: number; readonly max: number };
  /** Failed L2 commands (errors, timeouts, refused while disconnected). */
  readonly l2Errors: number;
  /** Of those, timeouts. */
  readonly l2Timeouts: number;
  /** Valid L1 entries pushed out for capacity. */
  readonly l1Evictions: number;
  /** Refused L1 entries pushed out by other refused ones (`negative.max`). */
  readonly negativeEvictions: number;
  /** L1 entries (valid or refused) dropped because they expired. */
  readonly l1Expirations: number;
  /** Credentials invalidated on this instance (`invalidate`, `invalidateRequest`). */
  readonly invalidations: number;
  /** `invalidateUser` calls on this instance. */
  readonly userInvalidations: number;
  /** Invalidations (of a credential or a user) received from other instances. */
  readonly remoteInvalidations: number;
  /** Gauge: valid entries in L1. */
  readonly l1Size: number;
  /** Gauge: refused entries in L1. */
  readonly negativeSize: number;
  /** Gauge: users with at least one valid entry in L1 (the user index). */
  readonly indexedUsers: number;
  /** Gauge: credentials being validated now. */
  readonly pendingValidations: number;
  /** Gauge: invalidations waiting for L2 to come back. */
  readonly pendingInvalidations: number;
  /** Gauge: the L2 state. */
  readonly l2State: L2State;
  /** Gauge: whether this instance hears other instances' invalidations. */
  readonly busState: BusState;
}

/** Events of a {@link SessionCache}; `on()` returns the unsubscribe function. */
export interface SessionCacheEvents {
  /** L2 failed `failureThreshold` times in a row, lost its connection, or never connected: requests use L1 + validator. */
  'l2:down': { readonly error: L2Error };
  /** L2 answered again after being down; requests use it again. */
  'l2:up': { readonly downForMs: number };
  /** One L2 command failed (also counted in `stats().l2Errors`). */
  'l2:error': { readonly error: L2Error };
  /** A validation finished. */
  validate: {
    readonly keyId: string;
    readonly kind: CredentialKind;
    readonly outcome: 'valid' | 'invalid' | 'error';
    readonly durationMs: number;
    readonly reason?: string | undefined;
    readonly error?: unknown;
  };
  /** L1 pushed out a valid entry for capacity. */
  evict: { readonly keyId: string };
  /** A credential was invalidated here (`local`) or by another instance (`remote`). */
  invalidate: { readonly keyId: string; readonly origin: 'local' | 'remote' };
  /** Every credential of a user was invalidated here or by another instance; `evicted` counts what this instance knew. */
  'invalidate:user': {
    readonly userId: number;
    readonly evicted: number;
    readonly origin: 'local' | 'remote';
  };
  /** The invalidation subscriber reconnected; L1 was cleared since messages may have been lost. */
  'bus:resubscribed': Record<string, never>;
  /** A listener, the bus or a background task failed (the cache carries on). */
  error: { readonly error: unknown };
}

/** What `invalidate()` did. */
export interface InvalidateResult {
  /** The HMAC id of the key (safe to log). */
  readonly keyId: string;
  /** True when the L2 entry was deleted and the other instances were told. */
  readonly propagated: boolean;
}

/** Options of `invalidateUser()`. */
export interface InvalidateUserOptions {
  /** A credential of the user to keep (e.g. the session of the request that changed the password). */
  readonly except?: Credential | undefined;
}

/** What `invalidateUser()` did. */
export interface InvalidateUserResult {
  readonly userId: number;
  /** Distinct credentials of the user this instance's L1 and L2 held and dropped. */
  readonly evicted: number;
  /** True when L2 was cleaned and the other instances were told (they drop what their L1 holds). */
  readonly propagated: boolean;
}

/** Options of a single lookup. */
export interface LookupOptions {
  /** Precomputed cache key (from `keyOf`). */
  readonly key?: string | undefined;
}

/**
 * The tiered session cache: L1 (LRU) -> L2 (Redis) -> single-flight -> validator.
 * Build it with {@link createSessionCache}; mount it with `sessionCache({ cache })`.
 */
export interface SessionCache
  extends Pick<SessionCacheStats, 'l1Size' | 'pendingValidations' | 'l2State' | 'busState'> {
  /** The validator behind the cache. */
  readonly validator: Validator;
  /** True after `close()`. */
  readonly closed: boolean;
  /** The HMAC cache key of a credential (43 characters base64url; safe to log a prefix of). */
  keyOf(credential: Credential): string;
  /**
   * Looks a credential up through L1, L2 and the validator.
   * @throws {ValidatorError} `E_VALIDATOR_*` when the validator fails (nothing is cached)
   * @throws {SessionCacheClosedError} after `close()`
   */
  lookup(credential: Credential, options?: LookupOptions): Promise<LookupResult>;
  /** The L1 answer for a credential, synchronously, or `undefined` (counts as an L1 hit when found). */
  peek(credential: Credential, options?: LookupOptions): LookupResult | undefined;
  /**
   * Forgets a credential everywhere: this L1, L2, and (over pub/sub) every other instance's L1.
   * When L2 is down it is replayed once L2 is back.
   * @throws {SessionCacheClosedError} after `close()`
   */
  invalidate(credential: Credential): Promise<InvalidateResult>;
  /**
   * Forgets every credential of a user that this cache, L2 and (over pub/sub) every cache sharing
   * the Redis know, but `except`: call it after a logout (CVAT deletes the user's token too) or a
   * password change (the user's other sessions die). When L2 is down it is replayed once L2 is back.
   * @throws {RangeError} when `userId` is not a positive integer
   * @throws {SessionCacheClosedError} after `close()`
   */
  invalidateUser(userId: number, options?: InvalidateUserOptions): Promise<InvalidateUserResult>;
  /**
   * Forgets the credential a request carried (as seen by the middleware), e.g. when the upstream
   * answered 401 for it. Resolves `undefined` when the request carried none.
   */
  invalidateRequest(req: object): Promise<InvalidateResult | undefined>;
  /** A snapshot of the counters and gauges. */
  stats(): SessionCacheStats;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof SessionCacheEvents>(
    event: K,
    listener: (payload: SessionCacheEvents[K]) => void,
  ): () => void;
  /** Stops timers, aborts validations, quits the Redis connections it opened, closes a validator it built. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
