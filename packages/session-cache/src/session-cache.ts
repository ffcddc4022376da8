import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { Credential } from '@sluice/django';
import { TypedEvents } from '@sluice/kit';
import { Cluster, type ClusterNode, type ClusterOptions, Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { credentialKey, keyId } from './credential-key.js';
import { channels } from './diagnostics.js';
import { type CacheEntry, decodeEntry, encodeEntry } from './entry.js';
import { validatorFromEnvironment } from './environment.js';
import { ConfigurationError, type L2Error, SessionCacheClosedError, ValidatorError } from './errors.js';
import type { CredentialKind, Identity, Validator } from './identity.js';
import { InvalidationBus } from './invalidation-bus.js';
import { booleanOption, checkObject, describe, functionOption, positiveInteger } from './option-checks.js';
import { type RedisClient, RedisTier } from './redis-tier.js';
import { kCacheKey, type RequestState } from './request-state.js';
import { SingleFlight } from './single-flight.js';

/** Where an answer came from. */
export type LookupTier = 'l1' | 'l2' | 'validator';

/** The answer for one credential. */
export type LookupResult =
  | { readonly status: 'valid'; readonly identity: Identity; readonly tier: LookupTier }
  | { readonly status: 'invalid'; readonly reason: string; readonly tier: LookupTier };

/**
 * How the L2 tier is doing: `'connecting'` until Redis first answers, `'probing'` while the
 * breaker's PING runs, `'disabled'` without Redis.
 */
export type L2State = 'disabled' | 'connecting' | 'up' | 'down' | 'probing';

/** A Redis Cluster described by its seed nodes (the cache builds and owns the `Cluster`). */
export interface RedisClusterConfig {
  readonly cluster: readonly ClusterNode[];
  /** Passed to `new Cluster()`; the cache forces `enableOfflineQueue: false` and a small `maxRetriesPerRequest`. */
  readonly options?: ClusterOptions;
}

/** L1 (in-process LRU) settings. */
export interface L1Options {
  /**
   * Most entries kept.
   * @default 10000
   */
  readonly max?: number;
  /**
   * Longest an entry lives in L1, ms: bounds staleness on this instance even if an invalidation
   * message is lost.
   * @default 5000
   */
  readonly ttlMs?: number;
}

/** Cross-instance single-flight lock settings (a short Redis `SET NX PX`). */
export interface LockOptions {
  /**
   * Lock lifetime, ms (also bounds how long a crashed holder blocks others).
   * @default 2000
   */
  readonly ttlMs?: number;
  /**
   * How long an instance that did not get the lock polls L2 before validating itself, ms.
   * @default 1000
   */
  readonly waitMs?: number;
  /**
   * Interval between L2 polls while waiting, ms.
   * @default 20
   */
  readonly pollMs?: number;
}

/** L2 (Redis) settings. */
export interface L2Options {
  /**
   * A `redis://` / `rediss://` URL (the cache builds and owns the client), an ioredis `Redis` or
   * `Cluster` you own (the cache never quits it; give it `enableOfflineQueue: false`), or a cluster
   * description.
   * @default process.env.REDIS_URL
   */
  readonly redis?: string | RedisClient | RedisClusterConfig;
  /**
   * Prefix of every key and of the invalidation channel.
   * @default 'sluice:session:'
   */
  readonly prefix?: string;
  /**
   * Per-command timeout, ms.
   * @default 100
   */
  readonly timeoutMs?: number;
  /**
   * Consecutive L2 failures that open the breaker (L2 is skipped until a probe succeeds).
   * @default 3
   */
  readonly failureThreshold?: number;
  /**
   * How long the breaker stays open before a PING probe, ms.
   * @default 2000
   */
  readonly cooldownMs?: number;
  /**
   * Cross-instance single-flight: `true` for the defaults, or settings; `false` for none.
   * @default false
   */
  readonly lock?: boolean | LockOptions;
  /**
   * Invalidation bus over pub/sub (a second connection).
   * @default true
   */
  readonly invalidation?: boolean;
}

/** Options of {@link createSessionCache}. */
export interface SessionCacheOptions {
  /**
   * Decides whether a credential is valid. Default: built from the environment: `DATABASE_URL`
   * (Django database validator over a shared pool; `DJANGO_SECRET_KEY` enables signature and
   * `_auth_user_hash` checks), and/or `SLUICE_INTROSPECTION_URL` (HTTP introspection, also used for
   * Bearer and Basic credentials).
   */
  readonly validator?: Validator;
  /**
   * Server-side secret for the HMAC cache keys (>= 16 bytes). Instances sharing Redis must share it.
   * @default process.env.SLUICE_CACHE_PEPPER, else derived from DJANGO_SECRET_KEY, else random per process (only allowed without L2)
   */
  readonly pepper?: string | Uint8Array;
  /**
   * L1 settings, or `false` for no L1 (every lookup goes to L2).
   * @default { max: 10000, ttlMs: 5000 }
   */
  readonly l1?: L1Options | false;
  /**
   * L2 settings, or `false` for no Redis.
   * @default { redis: process.env.REDIS_URL } when set, else false
   */
  readonly l2?: L2Options | false;
  /**
   * Lifetime of a positive entry, ms (never beyond the session's `expire_date`).
   * @default 60000
   */
  readonly ttlMs?: number;
  /**
   * Lifetime of a negative entry (invalid credential), ms.
   * @default 5000
   */
  readonly negativeTtlMs?: number;
  /**
   * Longest a validation may take before it counts as an error (503, not cached), ms.
   * @default 5000
   */
  readonly validatorTimeoutMs?: number;
  /**
   * Most distinct credentials validated at once; beyond it lookups fail with `E_VALIDATOR_BUSY`.
   * @default 1000
   */
  readonly maxPendingValidations?: number;
  /**
   * Clock for entry expiry and the breaker, epoch ms.
   * @default Date.now
   */
  readonly now?: () => number;
  /**
   * The environment defaults are read from.
   * @default process.env
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Counters (monotonic) and gauges of a {@link SessionCache}. */
export interface SessionCacheStats {
  /** Lookups answered from L1 (positive and negative). */
  readonly l1Hits: number;
  /** Lookups answered from L2 (including after waiting for another instance's lock). */
  readonly l2Hits: number;
  /** Lookups that found nothing in L1 or L2 and needed a validation. */
  readonly misses: number;
  /** Of the hits, how many were negative (a cached "invalid"). */
  readonly negativeHits: number;
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
  /** L1 entries evicted for capacity. */
  readonly l1Evictions: number;
  /** L1 entries dropped because they expired. */
  readonly l1Expirations: number;
  /** Invalidations made on this instance. */
  readonly invalidations: number;
  /** Invalidations received from other instances. */
  readonly remoteInvalidations: number;
  /** Gauge: entries in L1. */
  readonly l1Size: number;
  /** Gauge: credentials being validated now. */
  readonly pendingValidations: number;
  /** Gauge: invalidations waiting for L2 to come back. */
  readonly pendingInvalidations: number;
  /** Gauge: the L2 state. */
  readonly l2State: L2State;
  /** Gauge: whether this instance hears other instances' invalidations. */
  readonly busState: BusState;
}

/** The invalidation subscriber: `'disabled'` without L2 or with `l2.invalidation: false`. */
export type BusState = 'disabled' | 'subscribed' | 'disconnected';

/** Events of a {@link SessionCache}; `on()` returns the unsubscribe function. */
export interface SessionCacheEvents {
  /** L2 failed `failureThreshold` times in a row (or never connected): requests use L1 + validator. */
  'l2:down': { readonly error: L2Error };
  /** L2 answered a probe again; requests use it again. */
  'l2:up': { readonly downForMs: number };
  /** One L2 command failed (also counted in `stats().l2Errors`). */
  'l2:error': { readonly error: L2Error };
  /** A validation finished. */
  validate: {
    readonly keyId: string;
    readonly kind: CredentialKind;
    readonly outcome: 'valid' | 'invalid' | 'error';
    readonly durationMs: number;
    readonly reason?: string;
    readonly error?: unknown;
  };
  /** L1 evicted an entry for capacity. */
  evict: { readonly keyId: string };
  /** A credential was invalidated here (`local`) or by another instance (`remote`). */
  invalidate: { readonly keyId: string; readonly origin: 'local' | 'remote' };
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

/** Options of a single lookup. */
export interface LookupOptions {
  /** Precomputed cache key (from `keyOf`). */
  readonly key?: string;
}

/**
 * The tiered session cache: L1 (LRU) -> L2 (Redis) -> single-flight -> validator.
 * Build it with {@link createSessionCache}; mount it with `sessionCache({ cache })`.
 */
export interface SessionCache {
  /** The validator behind the cache. */
  readonly validator: Validator;
  /** Gauge: entries in L1. */
  readonly l1Size: number;
  /** Gauge: credentials being validated now. */
  readonly pendingValidations: number;
  /** Gauge: the L2 state. */
  readonly l2State: L2State;
  /** Gauge: whether this instance hears other instances' invalidations. */
  readonly busState: BusState;
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
   * Call it after logout. When L2 is down it is replayed once L2 is back.
   */
  invalidate(credential: Credential): Promise<InvalidateResult>;
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

type Counters = {
  -readonly [K in Exclude<
    keyof SessionCacheStats,
    'validatorLatencyMs' | 'l1Size' | 'pendingValidations' | 'pendingInvalidations' | 'l2State' | 'busState'
  >]: number;
};

const MAX_PENDING_INVALIDATIONS = 10_000;
const MAX_TOMBSTONES = 10_000;
const MAX_RECENT_WRITES = 1_000;

/**
 * Builds a {@link SessionCache}. Options are validated here; the environment supplies what is
 * not given (see {@link SessionCacheOptions}).
 *
 * @throws {TypeError | RangeError} an option has the wrong type or range (the message names it)
 * @throws {ConfigurationError} no validator given and none can be built from the environment, or L2 without a pepper
 * @example
 * const cache = createSessionCache({
 *   validator: djangoDatabaseValidator({ pool, secretKey: process.env.DJANGO_SECRET_KEY }),
 *   l2: { redis: process.env.REDIS_URL },
 *   pepper: process.env.SLUICE_CACHE_PEPPER,
 * });
 * app.use(sessionCache({ cache }));
 * // after logout:
 * await cache.invalidate({ kind: 'session', sessionKey });
 */
export function createSessionCache(options: SessionCacheOptions = {}): SessionCache {
  return new TieredSessionCache(options);
}

class TieredSessionCache implements SessionCache {
  readonly validator: Validator;
  readonly #ownsValidator: boolean;
  readonly #pepper: Buffer;
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #validatorTimeoutMs: number;
  readonly #l1: LRUCache<string, CacheEntry> | undefined;
  readonly #l1TtlMs: number;
  readonly #tier: RedisTier | undefined;
  readonly #bus: InvalidationBus | undefined;
  readonly #channel: string;
  readonly #lock: Required<LockOptions> | undefined;
  readonly #flights: SingleFlight<LookupResult>;
  readonly #events = new TypedEvents<SessionCacheEvents>((error) => this.#reportError(error));
  readonly #counters: Counters = {
    l1Hits: 0,
    l2Hits: 0,
    misses: 0,
    negativeHits: 0,
    coalesced: 0,
    lockWaits: 0,
    validatorCalls: 0,
    validatorErrors: 0,
    l2Errors: 0,
    l2Timeouts: 0,
    l1Evictions: 0,
    l1Expirations: 0,
    invalidations: 0,
    remoteInvalidations: 0,
  };
  readonly #latency = { count: 0, sum: 0, max: 0 };
  /** Invalidation epochs: a lookup that started before a key's tombstone does not store its answer. */
  #epoch = 0;
  readonly #tombstones = new LRUCache<string, number>({ max: MAX_TOMBSTONES });
  /** Keys this instance wrote to L2 lately: a remote invalidation deletes them again (write/delete race). */
  readonly #recentWrites = new LRUCache<string, true>({ max: MAX_RECENT_WRITES });
  readonly #pendingInvalidations = new Set<string>();
  readonly #validations = new Set<AbortController>();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: SessionCacheOptions) {
    checkObject('options', options);
    const env = options.env ?? process.env;
    if (options.env !== undefined) checkObject('options.env', options.env);
    this.#now = functionOption('options.now', options.now, Date.now);
    this.#ttlMs = positiveInteger('options.ttlMs', options.ttlMs, 60_000);
    this.#negativeTtlMs = positiveInteger('options.negativeTtlMs', options.negativeTtlMs, 5_000);
    this.#validatorTimeoutMs = positiveInteger(
      'options.validatorTimeoutMs',
      options.validatorTimeoutMs,
      5_000,
    );
    this.#flights = new SingleFlight(
      positiveInteger('options.maxPendingValidations', options.maxPendingValidations, 1_000),
    );

    // L1
    if (options.l1 === false) {
      this.#l1 = undefined;
      this.#l1TtlMs = 0;
    } else {
      const l1 = options.l1 ?? {};
      checkObject('options.l1', l1);
      const max = positiveInteger('options.l1.max', l1.max, 10_000);
      this.#l1TtlMs = positiveInteger('options.l1.ttlMs', l1.ttlMs, 5_000);
      this.#l1 = new LRUCache<string, CacheEntry>({
        max,
        dispose: (_value, key, reason) => {
          if (reason !== 'evict') return;
          this.#counters.l1Evictions += 1;
          if (this.#events.has('evict')) this.#events.emit('evict', { keyId: keyId(key) });
        },
      });
    }

    // L2 options (validated before anything is connected)
    let l2: L2Options | undefined;
    if (options.l2 === false) l2 = undefined;
    else if (options.l2 === undefined) l2 = env.REDIS_URL ? { redis: env.REDIS_URL } : undefined;
    else {
      checkObject('options.l2', options.l2);
      l2 = options.l2;
    }
    let redisSource: string | RedisClient | RedisClusterConfig | undefined;
    let prefix = 'sluice:session:';
    let timeoutMs = 100;
    let failureThreshold = 3;
    let cooldownMs = 2_000;
    let invalidation = true;
    if (l2) {
      redisSource = l2.redis ?? env.REDIS_URL;
      if (redisSource === undefined || redisSource === '') {
        throw new TypeError(
          'options.l2.redis should be a Redis URL, client or cluster config (or set REDIS_URL), got undefined',
        );
      }
      checkRedisSource(redisSource);
      if (l2.prefix !== undefined && (typeof l2.prefix !== 'string' || l2.prefix.length > 128)) {
        throw new TypeError(
          `options.l2.prefix should be a string of at most 128 characters, got ${describe(l2.prefix)}`,
        );
      }
      prefix = l2.prefix ?? prefix;
      timeoutMs = positiveInteger('options.l2.timeoutMs', l2.timeoutMs, timeoutMs, 60_000);
      failureThreshold = positiveInteger(
        'options.l2.failureThreshold',
        l2.failureThreshold,
        failureThreshold,
      );
      cooldownMs = positiveInteger('options.l2.cooldownMs', l2.cooldownMs, cooldownMs);
      invalidation = booleanOption('options.l2.invalidation', l2.invalidation, true);
      const lock = l2.lock ?? false;
      if (lock === true || (typeof lock === 'object' && lock !== null)) {
        const o: LockOptions = lock === true ? {} : lock;
        checkObject('options.l2.lock', o);
        this.#lock = {
          ttlMs: positiveInteger('options.l2.lock.ttlMs', o.ttlMs, 2_000),
          waitMs: positiveInteger('options.l2.lock.waitMs', o.waitMs, 1_000),
          pollMs: positiveInteger('options.l2.lock.pollMs', o.pollMs, 20),
        };
      } else if (lock !== false) {
        throw new TypeError(`options.l2.lock should be a boolean or an object, got ${describe(lock)}`);
      }
    }
    this.#channel = `${prefix}invalidate`;

    // Pepper
    this.#pepper = resolvePepper(options.pepper, env, l2 !== undefined);

    // Validator
    if (options.validator !== undefined) {
      checkValidator('options.validator', options.validator);
      this.validator = options.validator;
      this.#ownsValidator = false;
    } else {
      const v = validatorFromEnvironment(env);
      if (!v) {
        throw new ConfigurationError(
          'the session cache has no validator: pass options.validator, or set DATABASE_URL (validate against ' +
            "Django's database) or SLUICE_INTROSPECTION_URL (validate through an endpoint such as /api/users/self)",
        );
      }
      this.validator = v;
      this.#ownsValidator = true;
    }

    // L2 connections (last: nothing above may throw after a socket is opened)
    if (redisSource !== undefined) {
      const { client, owned } = connect(redisSource, timeoutMs);
      if (owned) client.on('error', () => {}); // failures surface through commands, the breaker and events
      this.#tier = new RedisTier({
        client,
        ownsClient: owned,
        prefix,
        timeoutMs,
        failureThreshold,
        cooldownMs,
        now: this.#now,
        onDown: (error) => {
          this.#events.emit('l2:down', { error });
          if (channels.l2.hasSubscribers) channels.l2.publish({ state: 'down', error });
        },
        onUp: (downForMs) => {
          this.#events.emit('l2:up', { downForMs });
          if (channels.l2.hasSubscribers) channels.l2.publish({ state: 'up', downForMs });
          void this.#replayInvalidations();
        },
        onError: (error) => {
          this.#counters.l2Errors += 1;
          if (error.code === 'E_L2_TIMEOUT') this.#counters.l2Timeouts += 1;
          this.#events.emit('l2:error', { error });
        },
      });
      if (invalidation) {
        const subscriber = client.duplicate();
        subscriber.on('error', () => {});
        this.#bus = new InvalidationBus({
          subscriber,
          channel: this.#channel,
          instanceId: randomUUID(),
          timeoutMs,
          onInvalidate: (key) => this.#onRemoteInvalidate(key),
          onResubscribed: () => {
            this.#l1?.clear();
            this.#events.emit('bus:resubscribed', {});
          },
          onError: (error) => this.#reportError(error),
        });
      }
    }
  }

  get l1Size(): number {
    return this.#l1?.size ?? 0;
  }

  get pendingValidations(): number {
    return this.#flights.size;
  }

  get l2State(): L2State {
    const tier = this.#tier;
    if (!tier) return 'disabled';
    if (tier.starting) return 'connecting';
    switch (tier.breaker.name) {
      case 'closed':
        return 'up';
      case 'open':
        return 'down';
      case 'half-open':
        return 'probing';
      default:
        return 'down';
    }
  }

  get busState(): BusState {
    if (!this.#bus) return 'disabled';
    return this.#bus.subscribed ? 'subscribed' : 'disconnected';
  }

  get closed(): boolean {
    return this.#closed;
  }

  keyOf(credential: Credential): string {
    return credentialKey(this.#pepper, credential);
  }

  peek(credential: Credential, options?: LookupOptions): LookupResult | undefined {
    if (this.#closed) return undefined;
    const key = options?.key ?? this.keyOf(credential);
    const hit = this.#l1Get(key);
    if (hit === undefined) return undefined;
    const result = toResult(hit, 'l1');
    if (channels.lookup.hasSubscribers) publishLookup(key, credential.kind, result, false);
    return result;
  }

  lookup(credential: Credential, options?: LookupOptions): Promise<LookupResult> {
    if (this.#closed) return Promise.reject(new SessionCacheClosedError());
    const key = options?.key ?? this.keyOf(credential);
    const hit = this.#l1Get(key);
    if (hit !== undefined) {
      const result = toResult(hit, 'l1');
      if (channels.lookup.hasSubscribers) publishLookup(key, credential.kind, result, false);
      return Promise.resolve(result);
    }
    const inFlight = this.#flights.get(key);
    if (inFlight) {
      this.#counters.coalesced += 1;
      return inFlight;
    }
    if (!this.#flights.hasRoom) {
      return Promise.reject(
        new ValidatorError(
          'E_VALIDATOR_BUSY',
          `more than ${this.#flights.maxKeys} credentials are being validated (options.maxPendingValidations)`,
        ),
      );
    }
    return this.#flights.start(key, () => this.#fill(key, credential));
  }

  async invalidate(credential: Credential): Promise<InvalidateResult> {
    if (this.#closed) throw new SessionCacheClosedError();
    return this.#invalidateKey(this.keyOf(credential));
  }

  async invalidateRequest(req: object): Promise<InvalidateResult | undefined> {
    if (this.#closed) throw new SessionCacheClosedError();
    const key = (req as RequestState)[kCacheKey];
    if (typeof key !== 'string') return undefined;
    return this.#invalidateKey(key);
  }

  stats(): SessionCacheStats {
    return {
      ...this.#counters,
      validatorLatencyMs: { ...this.#latency },
      l1Size: this.l1Size,
      pendingValidations: this.pendingValidations,
      pendingInvalidations: this.#pendingInvalidations.size,
      l2State: this.l2State,
      busState: this.busState,
    };
  }

  on<K extends keyof SessionCacheEvents>(
    event: K,
    listener: (payload: SessionCacheEvents[K]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const c of this.#validations) c.abort(new SessionCacheClosedError());
    this.#validations.clear();
    const tasks: Promise<unknown>[] = [];
    if (this.#bus) tasks.push(this.#bus.close());
    if (this.#tier) tasks.push(this.#tier.close());
    if (this.#ownsValidator && this.validator.close) tasks.push(this.validator.close());
    const results = await Promise.allSettled(tasks);
    this.#l1?.clear();
    this.#pendingInvalidations.clear();
    for (const r of results) if (r.status === 'rejected') this.#reportError(r.reason);
    this.#events.clear();
  }

  // --- internals -------------------------------------------------------------------------------

  #l1Get(key: string): CacheEntry | undefined {
    const l1 = this.#l1;
    if (!l1) return undefined;
    const entry = l1.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#now()) {
      l1.delete(key);
      this.#counters.l1Expirations += 1;
      return undefined;
    }
    this.#counters.l1Hits += 1;
    if (!entry.valid) this.#counters.negativeHits += 1;
    return entry;
  }

  #l1Set(key: string, entry: CacheEntry): void {
    const l1 = this.#l1;
    if (!l1) return;
    const cap = this.#now() + this.#l1TtlMs;
    l1.set(key, entry.expiresAt <= cap ? entry : { ...entry, expiresAt: cap });
  }

  /** True when `key` was invalidated after a lookup that started at `epoch`. */
  #invalidatedSince(key: string, epoch: number): boolean {
    const t = this.#tombstones.get(key);
    return t !== undefined && t > epoch;
  }

  async #fill(key: string, credential: Credential): Promise<LookupResult> {
    const epoch = this.#epoch;
    const tier = this.#tier;
    const fromL2 = await this.#readL2(key, epoch);
    if (fromL2) {
      if (channels.lookup.hasSubscribers) publishLookup(key, credential.kind, fromL2, false);
      return fromL2;
    }
    this.#counters.misses += 1;

    let lockToken: string | undefined;
    if (this.#lock && tier?.available) {
      const token = randomUUID();
      const got = await tier.lock(key, token, this.#lock.ttlMs).catch(() => undefined);
      if (got === true) lockToken = token;
      else if (got === false) {
        this.#counters.lockWaits += 1;
        const waited = await this.#waitForL2(key, epoch);
        if (waited) return waited;
      }
    }
    try {
      const entry = await this.#validate(key, credential);
      if (!this.#invalidatedSince(key, epoch) && !this.#closed) {
        this.#l1Set(key, entry);
        if (tier?.available) {
          const ttl = entry.expiresAt - this.#now();
          if (ttl > 0) {
            this.#recentWrites.set(key, true);
            await tier.set(key, encodeEntry(entry), ttl).catch(() => undefined);
          }
        }
      }
      const result = toResult(entry, 'validator');
      if (channels.lookup.hasSubscribers) publishLookup(key, credential.kind, result, false);
      return result;
    } finally {
      if (lockToken !== undefined && tier) tier.unlock(key, lockToken).catch(() => undefined);
    }
  }

  async #readL2(key: string, epoch: number): Promise<LookupResult | undefined> {
    const tier = this.#tier;
    if (!tier?.available) return undefined;
    let raw: string | null;
    try {
      raw = await tier.get(key);
    } catch {
      return undefined;
    }
    if (raw === null) return undefined;
    const entry = decodeEntry(raw, this.#now());
    if (!entry) return undefined;
    this.#counters.l2Hits += 1;
    if (!entry.valid) this.#counters.negativeHits += 1;
    if (!this.#invalidatedSince(key, epoch)) this.#l1Set(key, entry);
    return toResult(entry, 'l2');
  }

  async #waitForL2(key: string, epoch: number): Promise<LookupResult | undefined> {
    const lock = this.#lock;
    if (!lock) return undefined;
    const deadline = performance.now() + lock.waitMs;
    while (performance.now() < deadline && !this.#closed) {
      await sleep(lock.pollMs);
      const r = await this.#readL2(key, epoch);
      if (r) return r;
      if (!this.#tier?.available) return undefined;
    }
    return undefined;
  }

  async #validate(key: string, credential: Credential): Promise<CacheEntry> {
    if (this.#closed) throw new SessionCacheClosedError();
    this.#counters.validatorCalls += 1;
    const controller = new AbortController();
    this.#validations.add(controller);
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new ValidatorError(
          'E_VALIDATOR_TIMEOUT',
          `the validator did not answer within ${this.#validatorTimeoutMs} ms (options.validatorTimeoutMs)`,
        );
        controller.abort(error);
        reject(error);
      }, this.#validatorTimeoutMs);
      timer.unref();
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    try {
      const validation = await Promise.race([
        this.validator.validate(credential, { signal: controller.signal }),
        timedOut,
      ]);
      const durationMs = this.#recordLatency(started);
      const now = this.#now();
      let entry: CacheEntry;
      if (validation.valid) {
        const identity: Identity =
          validation.identity.credentialKind === credential.kind
            ? validation.identity
            : { ...validation.identity, credentialKind: credential.kind };
        const sessionEnd = identity.expiresAt ?? Number.POSITIVE_INFINITY;
        if (!identity.isActive)
          entry = { valid: false, reason: 'user-inactive', expiresAt: now + this.#negativeTtlMs };
        else if (sessionEnd <= now)
          entry = { valid: false, reason: 'expired', expiresAt: now + this.#negativeTtlMs };
        else entry = { valid: true, identity, expiresAt: Math.min(now + this.#ttlMs, sessionEnd) };
      } else {
        entry = { valid: false, reason: validation.reason, expiresAt: now + this.#negativeTtlMs };
      }
      this.#publishValidate(key, credential.kind, entry.valid ? 'valid' : 'invalid', durationMs, entry);
      return entry;
    } catch (cause) {
      const durationMs = this.#recordLatency(started);
      this.#counters.validatorErrors += 1;
      const error =
        cause instanceof ValidatorError || cause instanceof SessionCacheClosedError
          ? cause
          : new ValidatorError('E_VALIDATOR_UNAVAILABLE', `the validator failed: ${messageOf(cause)}`, {
              cause,
            });
      this.#publishValidate(key, credential.kind, 'error', durationMs, undefined, error);
      throw error;
    } finally {
      clearTimeout(timer);
      this.#validations.delete(controller);
    }
  }

  #recordLatency(started: number): number {
    const ms = performance.now() - started;
    this.#latency.count += 1;
    this.#latency.sum += ms;
    if (ms > this.#latency.max) this.#latency.max = ms;
    return ms;
  }

  #publishValidate(
    key: string,
    kind: CredentialKind,
    outcome: 'valid' | 'invalid' | 'error',
    durationMs: number,
    entry: CacheEntry | undefined,
    error?: unknown,
  ): void {
    const wantEvent = this.#events.has('validate');
    if (!wantEvent && !channels.validate.hasSubscribers) return;
    const payload: SessionCacheEvents['validate'] = {
      keyId: keyId(key),
      kind,
      outcome,
      durationMs,
      ...(entry && !entry.valid ? { reason: entry.reason } : {}),
      ...(error === undefined ? {} : { error }),
    };
    if (wantEvent) this.#events.emit('validate', payload);
    if (channels.validate.hasSubscribers) channels.validate.publish(payload);
  }

  #drop(key: string): void {
    this.#epoch += 1;
    this.#tombstones.set(key, this.#epoch);
    this.#l1?.delete(key);
  }

  async #invalidateKey(key: string): Promise<InvalidateResult> {
    this.#drop(key);
    this.#counters.invalidations += 1;
    const id = keyId(key);
    this.#events.emit('invalidate', { keyId: id, origin: 'local' });
    if (channels.invalidate.hasSubscribers) channels.invalidate.publish({ keyId: id, origin: 'local' });
    const tier = this.#tier;
    if (!tier) return { keyId: id, propagated: false };
    const propagated = await this.#propagate(key);
    if (!propagated) this.#queueInvalidation(key);
    return { keyId: id, propagated };
  }

  async #propagate(key: string): Promise<boolean> {
    const tier = this.#tier;
    if (!tier?.available) return false;
    try {
      await tier.del(key);
      if (this.#bus) await tier.publish(this.#channel, this.#bus.message(key));
      return true;
    } catch {
      return false;
    }
  }

  #queueInvalidation(key: string): void {
    const pending = this.#pendingInvalidations;
    pending.delete(key);
    pending.add(key);
    if (pending.size > MAX_PENDING_INVALIDATIONS) {
      const oldest = pending.values().next().value;
      if (oldest !== undefined) pending.delete(oldest);
    }
  }

  async #replayInvalidations(): Promise<void> {
    const keys = [...this.#pendingInvalidations];
    this.#pendingInvalidations.clear();
    for (const key of keys) {
      if (this.#closed) return;
      if (!(await this.#propagate(key))) this.#queueInvalidation(key);
    }
  }

  #onRemoteInvalidate(key: string): void {
    if (this.#closed) return;
    this.#drop(key);
    this.#counters.remoteInvalidations += 1;
    const id = keyId(key);
    this.#events.emit('invalidate', { keyId: id, origin: 'remote' });
    if (channels.invalidate.hasSubscribers) channels.invalidate.publish({ keyId: id, origin: 'remote' });
    if (this.#recentWrites.has(key)) {
      // We may have written this entry after the other instance deleted it: delete it again.
      this.#recentWrites.delete(key);
      this.#tier?.del(key).catch(() => undefined);
    }
  }

  #reportError(error: unknown): void {
    if (this.#events.has('error')) {
      try {
        this.#events.emit('error', { error });
      } catch {
        // a throwing error listener has nowhere left to report to
      }
    }
  }
}

function toResult(entry: CacheEntry, tier: LookupTier): LookupResult {
  return entry.valid
    ? { status: 'valid', identity: entry.identity, tier }
    : { status: 'invalid', reason: entry.reason, tier };
}

function publishLookup(key: string, kind: CredentialKind, result: LookupResult, coalesced: boolean): void {
  channels.lookup.publish({ keyId: keyId(key), kind, tier: result.tier, status: result.status, coalesced });
}

function resolvePepper(
  pepper: string | Uint8Array | undefined,
  env: Readonly<Record<string, string | undefined>>,
  shared: boolean,
): Buffer {
  if (pepper !== undefined) {
    if (typeof pepper !== 'string' && !(pepper instanceof Uint8Array)) {
      throw new TypeError(`options.pepper should be a string or bytes, got ${describe(pepper)}`);
    }
    const bytes = Buffer.from(pepper);
    if (bytes.length < 16)
      throw new RangeError(`options.pepper should be at least 16 bytes, got ${bytes.length}`);
    return bytes;
  }
  const fromEnv = env.SLUICE_CACHE_PEPPER;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (Buffer.byteLength(fromEnv) < 16) {
      throw new ConfigurationError(
        `SLUICE_CACHE_PEPPER should be at least 16 bytes, got ${Buffer.byteLength(fromEnv)}`,
      );
    }
    return Buffer.from(fromEnv);
  }
  const secret = env.DJANGO_SECRET_KEY;
  if (secret !== undefined && secret !== '') {
    return hmacLabel(secret, 'sluice.session-cache.pepper');
  }
  if (shared) {
    throw new ConfigurationError(
      'the session cache shares Redis between instances and needs a pepper for its HMAC keys: pass options.pepper ' +
        'or set SLUICE_CACHE_PEPPER (at least 16 bytes, the same on every instance)',
    );
  }
  return randomBytes(32);
}

/** A separate derivation, so the pepper is never the Django secret itself. */
function hmacLabel(secret: string, label: string): Buffer {
  return createHmac('sha256', secret).update(label).digest();
}

function checkRedisSource(source: unknown): void {
  if (typeof source === 'string') {
    if (!/^rediss?:\/\//.test(source)) {
      throw new TypeError(`options.l2.redis should be a redis:// or rediss:// URL, got ${describe(source)}`);
    }
    return;
  }
  if (source instanceof Redis || source instanceof Cluster) return;
  if (typeof source === 'object' && source !== null && 'cluster' in source) {
    const nodes = (source as RedisClusterConfig).cluster;
    if (!Array.isArray(nodes) || nodes.length === 0) {
      throw new TypeError(
        `options.l2.redis.cluster should be a non-empty array of nodes, got ${describe(nodes)}`,
      );
    }
    return;
  }
  if (isRedisLike(source)) return;
  throw new TypeError(
    `options.l2.redis should be a Redis URL, an ioredis Redis or Cluster, or { cluster }, got ${describe(source)}`,
  );
}

function isRedisLike(v: unknown): v is RedisClient {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.get === 'function' &&
    typeof o.set === 'function' &&
    typeof o.duplicate === 'function' &&
    typeof o.status === 'string'
  );
}

function connect(
  source: string | RedisClient | RedisClusterConfig,
  timeoutMs: number,
): { client: RedisClient; owned: boolean } {
  const clientDefaults = {
    enableOfflineQueue: false,
    // Commands issued in the same tick share one write: fewer syscalls under load.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    connectTimeout: Math.max(1_000, timeoutMs * 10),
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
  };
  if (typeof source === 'string') return { client: new Redis(source, clientDefaults), owned: true };
  if (source instanceof Redis || source instanceof Cluster || isRedisLike(source)) {
    return { client: source, owned: false };
  }
  const cluster = new Cluster([...source.cluster], {
    enableAutoPipelining: true,
    ...source.options,
    enableOfflineQueue: false,
    clusterRetryStrategy: clientDefaults.retryStrategy,
    redisOptions: {
      ...source.options?.redisOptions,
      maxRetriesPerRequest: 1,
      connectTimeout: clientDefaults.connectTimeout,
    },
  });
  return { client: cluster, owned: true };
}

function checkValidator(name: string, v: unknown): void {
  if (typeof v !== 'object' || v === null || typeof (v as Validator).validate !== 'function') {
    throw new TypeError(
      `${name} should be a validator ({ kinds, validate(credential, { signal }) }), got ${describe(v)}`,
    );
  }
  if (!Array.isArray((v as Validator).kinds)) {
    throw new TypeError(
      `${name}.kinds should be an array of credential kinds, got ${describe((v as Validator).kinds)}`,
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
