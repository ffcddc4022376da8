import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Credential } from '@sluice/django';
import { checkInteger, Evented, warnListenerError } from '@sluice/kit';
import { LRUCache } from 'lru-cache';
import { type ResolvedOptions, resolveOptions, type SessionCacheOptions } from './cache-options.js';
import { credentialKey, keyId } from './credential-key.js';
import { channels } from './diagnostics.js';
import { type CacheEntry, decodeEntry, encodeEntry } from './entry.js';
import { SessionCacheClosedError, ValidatorError } from './errors.js';
import type { CredentialKind, Validator } from './identity.js';
import { InvalidationBus } from './invalidation-bus.js';
import { L1Tier } from './l1-tier.js';
import { connectRedis } from './redis-client.js';
import { RedisTier, toL2Error } from './redis-tier.js';
import { kCacheKey, type RequestState } from './request-state.js';
import { Tombstones } from './tombstones.js';
import type {
  BusState,
  InvalidateResult,
  InvalidateUserOptions,
  InvalidateUserResult,
  L2State,
  LookupOptions,
  LookupResult,
  LookupTier,
  SessionCache,
  SessionCacheEvents,
  SessionCacheStats,
} from './types.js';
import { validateEntry } from './validation.js';

const MAX_PENDING_INVALIDATIONS = 10_000;
const MAX_RECENT_WRITES = 1_000;
/** An invalidation message body naming a user: `u:<userId>` or `u:<userId>:<key to keep>`. */
const USER_BODY = /^u:([1-9][0-9]{0,15})(?::(.+))?$/;

/**
 * Builds a {@link SessionCache}. Options are validated here; the environment supplies what is
 * not given (see `SessionCacheOptions`).
 *
 * @throws {TypeError | RangeError} an option has the wrong type or range
 * @throws {ConfigurationError} no validator source, or L2 without a pepper
 * @example
 * const cache = createSessionCache({ validator: djangoDatabaseValidator({ pool }), l2: { redis: process.env.REDIS_URL } });
 * const result = await cache.lookup({ kind: 'session', sessionKey });
 */
export function createSessionCache(options: SessionCacheOptions = {}): SessionCache {
  return new TieredSessionCache(options);
}

class TieredSessionCache extends Evented<SessionCacheEvents> implements SessionCache {
  readonly validator: Validator;
  readonly #o: ResolvedOptions;
  readonly #l1: L1Tier | undefined;
  readonly #l2: RedisTier | undefined;
  readonly #bus: InvalidationBus | undefined;
  readonly #channel: string;
  /** Lookups in flight by key (single-flight), at most `maxPendingValidations`. */
  readonly #flights = new Map<string, Promise<LookupResult>>();
  readonly #tombstones = new Tombstones();
  /** Keys this instance wrote to L2 lately, with their user: a remote invalidation deletes them again (write/delete race). */
  readonly #recentWrites = new LRUCache<string, number>({ max: MAX_RECENT_WRITES });
  /** Invalidation bodies L2 could not take yet, oldest first. */
  readonly #pending = new Set<string>();
  /** Aborts every validation in flight when the cache closes. */
  readonly #closer = new AbortController();
  readonly #counters = {
    l1Hits: 0,
    l2Hits: 0,
    misses: 0,
    l1NegativeHits: 0,
    l2NegativeHits: 0,
    coalesced: 0,
    lockWaits: 0,
    validatorCalls: 0,
    validatorErrors: 0,
    l2Errors: 0,
    l2Timeouts: 0,
    invalidations: 0,
    userInvalidations: 0,
    remoteInvalidations: 0,
  };
  readonly #latency = { count: 0, sum: 0, max: 0 };
  #closing: Promise<void> | undefined;

  constructor(options: SessionCacheOptions) {
    super();
    const o = resolveOptions(options);
    this.#o = o;
    this.validator = o.validator;
    setMaxListeners(0, this.#closer.signal); // one abort listener per validation in flight, bounded by maxPendingValidations
    if (o.l1) {
      this.#l1 = new L1Tier({
        ...o.l1,
        negativeTtlMs: o.negativeTtlMs,
        now: o.now,
        onEvict: (key) => this.events.emit('evict', { keyId: keyId(key) }),
      });
    }
    this.#channel = `${o.l2?.prefix ?? ''}invalidate`;
    if (!o.l2) return;

    // Redis last: nothing above may throw once a socket is open.
    const { client, owned } = connectRedis(o.l2.source, o.l2.timeoutMs);
    const l2 = new RedisTier({
      ...o.l2,
      client,
      ownsClient: owned,
      now: o.now,
      onError: (error) => {
        this.#counters.l2Errors += 1;
        if (error.code === 'E_L2_TIMEOUT') this.#counters.l2Timeouts += 1;
        this.events.emit('l2:error', { error });
      },
    });
    this.#l2 = l2;
    l2.health.on('down', ({ error }) => {
      const l2Error = toL2Error(error);
      this.events.emit('l2:down', { error: l2Error });
      if (channels.l2.hasSubscribers) channels.l2.publish({ state: 'down', error: l2Error });
    });
    l2.health.on('up', ({ downForMs }) => {
      if (downForMs !== undefined) {
        this.events.emit('l2:up', { downForMs });
        if (channels.l2.hasSubscribers) channels.l2.publish({ state: 'up', downForMs });
      }
      void this.#replay();
    });
    if (o.l2.invalidation) {
      const subscriber = client.duplicate();
      subscriber.on('error', () => {}); // the bus reports what matters
      this.#bus = new InvalidationBus({
        subscriber,
        channel: this.#channel,
        instanceId: randomUUID(),
        timeoutMs: o.l2.timeoutMs,
        onMessage: (body) => this.#onRemote(body),
        onResubscribed: () => {
          this.#l1?.clear();
          this.events.emit('bus:resubscribed', {});
        },
        onError: (error) => this.#reportError(error),
      });
    }
  }

  get l1Size(): number {
    return this.#l1?.size ?? 0;
  }

  get pendingValidations(): number {
    return this.#flights.size;
  }

  get l2State(): L2State {
    const health = this.#l2?.health;
    if (!health) return 'disabled';
    return health.state === 'down' && health.probing ? 'probing' : health.state;
  }

  get busState(): BusState {
    if (!this.#bus) return 'disabled';
    return this.#bus.subscribed ? 'subscribed' : 'disconnected';
  }

  get closed(): boolean {
    return this.#closer.signal.aborted;
  }

  keyOf(credential: Credential): string {
    return credentialKey(this.#o.pepper, credential);
  }

  peek(credential: Credential, options?: LookupOptions): LookupResult | undefined {
    if (this.closed) return undefined;
    const key = options?.key ?? this.keyOf(credential);
    const hit = this.#fromL1(key);
    return hit && this.#published(key, credential.kind, hit);
  }

  lookup(credential: Credential, options?: LookupOptions): Promise<LookupResult> {
    if (this.closed) return Promise.reject(new SessionCacheClosedError());
    const key = options?.key ?? this.keyOf(credential);
    const hit = this.#fromL1(key);
    if (hit) return Promise.resolve(this.#published(key, credential.kind, hit));
    const inFlight = this.#flights.get(key);
    if (inFlight) {
      this.#counters.coalesced += 1;
      return inFlight;
    }
    if (this.#flights.size >= this.#o.maxPendingValidations) {
      return Promise.reject(
        new ValidatorError(
          'E_VALIDATOR_BUSY',
          `more than ${this.#o.maxPendingValidations} credentials are being validated (options.maxPendingValidations)`,
        ),
      );
    }
    const flight = this.#fill(key, credential).finally(() => this.#flights.delete(key));
    this.#flights.set(key, flight);
    return flight;
  }

  async invalidate(credential: Credential): Promise<InvalidateResult> {
    if (this.closed) throw new SessionCacheClosedError();
    return this.#invalidateKey(this.keyOf(credential));
  }

  async invalidateRequest(req: object): Promise<InvalidateResult | undefined> {
    if (this.closed) throw new SessionCacheClosedError();
    const key = (req as RequestState)[kCacheKey];
    return typeof key === 'string' ? this.#invalidateKey(key) : undefined;
  }

  async invalidateUser(userId: number, options?: InvalidateUserOptions): Promise<InvalidateUserResult> {
    if (this.closed) throw new SessionCacheClosedError();
    checkInteger('userId', userId, 1);
    const except = options?.except === undefined ? undefined : this.keyOf(options.except);
    const local = this.#dropUser(userId, except);
    this.#counters.userInvalidations += 1;
    const inL2 = await this.#propagateOrQueue(except === undefined ? `u:${userId}` : `u:${userId}:${except}`);
    const evicted = new Set([...local, ...(inL2 ?? [])]).size;
    this.events.emit('invalidate:user', { userId, evicted, origin: 'local' });
    return { userId, evicted, propagated: this.#l2 !== undefined && inL2 !== undefined };
  }

  stats(): SessionCacheStats {
    const c = this.#counters;
    return {
      ...c,
      negativeHits: c.l1NegativeHits + c.l2NegativeHits,
      validatorLatencyMs: { ...this.#latency },
      l1Size: this.l1Size,
      negativeSize: this.#l1?.negativeSize ?? 0,
      indexedUsers: this.#l1?.users ?? 0,
      l1Evictions: this.#l1?.evictions ?? 0,
      negativeEvictions: this.#l1?.negativeEvictions ?? 0,
      l1Expirations: this.#l1?.expirations ?? 0,
      pendingValidations: this.pendingValidations,
      pendingInvalidations: this.#pending.size,
      l2State: this.l2State,
      busState: this.busState,
    };
  }

  /** A throwing listener is reported as an `error` event; a throwing `error` listener as a process warning. */
  protected override listenerError(error: unknown, event: PropertyKey): void {
    if (event === 'error') warnListenerError(error, event);
    else this.#reportError(error);
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closer.abort(new SessionCacheClosedError());
    const results = await Promise.allSettled([
      this.#bus?.close(),
      this.#l2?.close(),
      this.#o.ownsValidator ? this.validator.close?.() : undefined,
    ]);
    this.#l1?.clear();
    this.#pending.clear();
    for (const r of results) if (r.status === 'rejected') this.#reportError(r.reason);
    this.events.clear();
  }

  // --- lookups ---------------------------------------------------------------------------------

  #fromL1(key: string): LookupResult | undefined {
    const entry = this.#l1?.get(key);
    if (entry === undefined) return undefined;
    this.#counters.l1Hits += 1;
    if (!entry.valid) this.#counters.l1NegativeHits += 1;
    return toResult(entry, 'l1');
  }

  async #fill(key: string, credential: Credential): Promise<LookupResult> {
    const epoch = this.#tombstones.epoch;
    const fromL2 = await this.#fromL2(key, epoch);
    if (fromL2) return this.#published(key, credential.kind, fromL2);
    this.#counters.misses += 1;
    const l2 = this.#l2;
    const lock = this.#o.l2?.lock;
    let token: string | undefined;
    if (lock && l2?.available) {
      const mine = randomUUID();
      const got = await l2.lock(key, mine, lock.ttlMs).catch(() => undefined);
      if (got === true) token = mine;
      else if (got === false) {
        this.#counters.lockWaits += 1;
        const waited = await this.#waitForL2(key, epoch, lock.waitMs, lock.pollMs);
        if (waited) return waited;
      }
    }
    try {
      const entry = await this.#validate(key, credential);
      if (!this.closed && !this.#tombstones.buried(key, entry, epoch)) {
        this.#l1?.set(key, entry);
        await this.#writeL2(key, entry);
      }
      return this.#published(key, credential.kind, toResult(entry, 'validator'));
    } finally {
      if (token !== undefined) l2?.unlock(key, token).catch(() => undefined);
    }
  }

  async #fromL2(key: string, epoch: number): Promise<LookupResult | undefined> {
    if (!this.#l2?.available) return undefined;
    const raw = await this.#l2.get(key).catch(() => null);
    const entry = raw === null ? undefined : decodeEntry(raw, this.#o.now());
    if (!entry) return undefined;
    this.#counters.l2Hits += 1;
    if (!entry.valid) this.#counters.l2NegativeHits += 1;
    if (!this.#tombstones.buried(key, entry, epoch)) this.#l1?.set(key, entry);
    return toResult(entry, 'l2');
  }

  async #writeL2(key: string, entry: CacheEntry): Promise<void> {
    const ttl = entry.expiresAt - this.#o.now();
    if (!this.#l2?.available || ttl <= 0) return;
    const userId = entry.valid ? entry.identity.userId : undefined;
    this.#recentWrites.set(key, userId ?? 0);
    await this.#l2.set(key, encodeEntry(entry), ttl, userId).catch(() => undefined);
  }

  async #waitForL2(
    key: string,
    epoch: number,
    waitMs: number,
    pollMs: number,
  ): Promise<LookupResult | undefined> {
    const deadline = performance.now() + waitMs;
    while (performance.now() < deadline && this.#l2?.available) {
      try {
        await sleep(pollMs, undefined, { signal: this.#closer.signal, ref: false });
      } catch {
        return undefined; // closed
      }
      const found = await this.#fromL2(key, epoch);
      if (found) return found;
    }
    return undefined;
  }

  async #validate(key: string, credential: Credential): Promise<CacheEntry> {
    if (this.closed) throw new SessionCacheClosedError();
    this.#counters.validatorCalls += 1;
    const started = performance.now();
    try {
      const entry = await validateEntry(this.#o, credential, this.#closer.signal);
      this.#publishValidate(key, credential.kind, started, entry);
      return entry;
    } catch (error) {
      this.#counters.validatorErrors += 1;
      this.#publishValidate(key, credential.kind, started, undefined, error);
      throw error;
    }
  }

  #published(key: string, kind: CredentialKind, result: LookupResult): LookupResult {
    if (channels.lookup.hasSubscribers) {
      const { tier, status } = result;
      channels.lookup.publish({ keyId: keyId(key), kind, tier, status, coalesced: false });
    }
    return result;
  }

  /** Times a validation and tells about it: `entry` once it answered, else the `error`. */
  #publishValidate(
    key: string,
    kind: CredentialKind,
    started: number,
    entry?: CacheEntry,
    error?: unknown,
  ): void {
    const durationMs = performance.now() - started;
    this.#latency.count += 1;
    this.#latency.sum += durationMs;
    this.#latency.max = Math.max(this.#latency.max, durationMs);
    const wantEvent = this.events.has('validate');
    if (!wantEvent && !channels.validate.hasSubscribers) return;
    const payload: SessionCacheEvents['validate'] = {
      keyId: keyId(key),
      kind,
      outcome: entry === undefined ? 'error' : entry.valid ? 'valid' : 'invalid',
      durationMs,
      ...(entry && !entry.valid ? { reason: entry.reason } : {}),
      ...(error === undefined ? {} : { error }),
    };
    if (wantEvent) this.events.emit('validate', payload);
    if (channels.validate.hasSubscribers) channels.validate.publish(payload);
  }

  // --- invalidation ----------------------------------------------------------------------------

  #dropKey(key: string): void {
    this.#tombstones.markKey(key);
    this.#l1?.delete(key);
  }

  /** Drops `userId`'s L1 entries but `except`; returns their keys. */
  #dropUser(userId: number, except: string | undefined): string[] {
    this.#tombstones.markUser(userId);
    const keys = (this.#l1?.keysOf(userId) ?? []).filter((k) => k !== except);
    for (const key of keys) this.#l1?.delete(key);
    return keys;
  }

  async #invalidateKey(key: string): Promise<InvalidateResult> {
    this.#dropKey(key);
    this.#counters.invalidations += 1;
    this.#emitInvalidate(key, 'local');
    const done = await this.#propagateOrQueue(key);
    return { keyId: keyId(key), propagated: this.#l2 !== undefined && done !== undefined };
  }

  /**
   * Deletes in L2 what `body` names (a key, or a user's keys), then tells the other instances;
   * resolves the keys whose L2 entry existed, or `undefined` when L2 could not take it.
   */
  async #propagate(body: string): Promise<string[] | undefined> {
    const l2 = this.#l2;
    if (!l2) return [];
    if (!l2.available) return undefined;
    try {
      const user = USER_BODY.exec(body);
      let evicted = [body];
      if (user) evicted = await l2.evictUser(Number(user[1]), user[2]);
      else await l2.del(body);
      if (this.#bus) await l2.publish(this.#channel, this.#bus.message(body));
      return evicted;
    } catch {
      return undefined;
    }
  }

  /** {@link #propagate}, or, when L2 cannot take it now, queued (bounded) for when L2 is up again. */
  async #propagateOrQueue(body: string): Promise<string[] | undefined> {
    const done = await this.#propagate(body);
    if (done !== undefined) return done;
    this.#pending.delete(body);
    this.#pending.add(body);
    const oldest = this.#pending.size > MAX_PENDING_INVALIDATIONS ? this.#pending.values().next() : undefined;
    if (oldest && !oldest.done) this.#pending.delete(oldest.value);
    return undefined;
  }

  /** Sends the queued invalidations, oldest first; each leaves the queue once L2 took it. */
  async #replay(): Promise<void> {
    for (const body of [...this.#pending]) {
      if (this.closed || (await this.#propagate(body)) === undefined) return; // the rest waits for the next 'up'
      this.#pending.delete(body);
    }
  }

  #onRemote(body: string): void {
    if (this.closed) return;
    this.#counters.remoteInvalidations += 1;
    const user = USER_BODY.exec(body);
    let keys = [body];
    if (user) {
      const userId = Number(user[1]);
      keys = this.#dropUser(userId, user[2]);
      this.events.emit('invalidate:user', { userId, evicted: keys.length, origin: 'remote' });
      for (const [key, writer] of this.#recentWrites.entries())
        if (writer === userId && key !== user[2]) keys.push(key);
    } else {
      this.#dropKey(body);
      this.#emitInvalidate(body, 'remote');
    }
    for (const key of keys) {
      // This instance may have written the entry after the other one deleted it: delete it again.
      if (this.#recentWrites.delete(key)) this.#l2?.del(key).catch(() => undefined);
    }
  }

  #emitInvalidate(key: string, origin: 'local' | 'remote'): void {
    const payload = { keyId: keyId(key), origin };
    this.events.emit('invalidate', payload);
    if (channels.invalidate.hasSubscribers) channels.invalidate.publish(payload);
  }

  #reportError(error: unknown): void {
    this.events.emit('error', { error });
  }
}

function toResult(entry: CacheEntry, tier: LookupTier): LookupResult {
  return entry.valid
    ? { status: 'valid', identity: entry.identity, tier }
    : { status: 'invalid', reason: entry.reason, tier };
}
