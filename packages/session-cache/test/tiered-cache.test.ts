import diagnosticsChannel from 'node:diagnostics_channel';
import { deleteKeys, sharedRedisUrl, uniquePrefix, waitFor } from '@sluice/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  createSessionCache,
  isSessionCacheError,
  type SessionCache,
  type SessionCacheOptions,
} from '../src/index.ts';
import { deferred, drfToken, identityFor, sessionKey, TableValidator } from './helpers.ts';

const pepper = 'tiered-cache test pepper, 32 bytes';
const prefix = uniquePrefix('session-cache-tiered');
const caches: SessionCache[] = [];

function make(options: SessionCacheOptions): SessionCache {
  const cache = createSessionCache({ pepper, env: {}, ...options });
  caches.push(cache);
  return cache;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(caches.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await deleteKeys(sharedRedisUrl, prefix);
});

const s = (n: number) => ({ kind: 'session' as const, sessionKey: sessionKey(n) });

describe('L1 only', () => {
  it('validates once, then answers from L1', async () => {
    const validator = new TableValidator().add(sessionKey(1), identityFor(1));
    const cache = make({ validator, l2: false });
    const first = await cache.lookup(s(1));
    expect(first).toMatchObject({
      status: 'valid',
      tier: 'validator',
      identity: { userId: 1, credentialKind: 'session' },
    });
    const second = await cache.lookup(s(1));
    expect(second.tier).toBe('l1');
    expect(cache.peek(s(1))?.tier).toBe('l1');
    expect(validator.calls).toBe(1);
    expect(cache.stats()).toMatchObject({
      l1Hits: 2,
      misses: 1,
      validatorCalls: 1,
      l1Size: 1,
      l2State: 'disabled',
    });
    expect(cache.stats().validatorLatencyMs.count).toBe(1);
  });

  it('caches invalid credentials for negative.ttlMs only', async () => {
    let now = 1_000_000;
    const validator = new TableValidator();
    const cache = make({ validator, l2: false, negative: { ttlMs: 2_000 }, ttlMs: 60_000, now: () => now });
    expect(await cache.lookup(s(2))).toMatchObject({
      status: 'invalid',
      reason: 'not-found',
      tier: 'validator',
    });
    now += 1_999;
    expect(await cache.lookup(s(2))).toMatchObject({ status: 'invalid', tier: 'l1' });
    expect(cache.stats()).toMatchObject({ negativeHits: 1, l1NegativeHits: 1, negativeSize: 1, l1Size: 0 });
    now += 1;
    await cache.lookup(s(2));
    expect(validator.calls).toBe(2);
  });

  it('never keeps an entry past the session expiry, and L1 never past l1.ttlMs', async () => {
    let now = 1_000_000;
    const validator = new TableValidator()
      .add(sessionKey(3), identityFor(3, 'session', now + 1_000))
      .add(sessionKey(4), identityFor(4));
    const cache = make({ validator, l2: false, l1: { ttlMs: 5_000 }, ttlMs: 60_000, now: () => now });
    await cache.lookup(s(3));
    await cache.lookup(s(4));
    now += 999;
    expect((await cache.lookup(s(3))).tier).toBe('l1');
    now += 1;
    expect((await cache.lookup(s(3))).tier).not.toBe('l1');
    expect(cache.stats().l1Expirations).toBeGreaterThanOrEqual(1);
    now += 4_000;
    expect((await cache.lookup(s(4))).tier).not.toBe('l1');
    expect(validator.calls).toBe(4);
  });

  it('treats an identity that already expired or is inactive as invalid', async () => {
    const now = 1_000_000;
    const validator = new TableValidator()
      .add(sessionKey(5), identityFor(5, 'session', now - 1))
      .add(sessionKey(6), { ...identityFor(6), isActive: false });
    const cache = make({ validator, l2: false, now: () => now });
    expect(await cache.lookup(s(5))).toMatchObject({ status: 'invalid', reason: 'expired' });
    expect(await cache.lookup(s(6))).toMatchObject({ status: 'invalid', reason: 'user-inactive' });
  });

  it('does not cache validator failures', async () => {
    const validator = new TableValidator().add(sessionKey(7), identityFor(7));
    validator.fail = new Error('database is down');
    const cache = make({ validator, l2: false });
    const error = await cache.lookup(s(7)).catch((e: unknown) => e);
    expect(isSessionCacheError(error, 'E_VALIDATOR_UNAVAILABLE')).toBe(true);
    expect(isSessionCacheError(error) && error.status).toBe(503);
    validator.fail = undefined;
    expect((await cache.lookup(s(7))).status).toBe('valid');
    expect(validator.calls).toBe(2);
    expect(cache.stats().validatorErrors).toBe(1);
  });

  it('bounds a validation by validatorTimeoutMs and aborts it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const validator = new TableValidator();
    validator.gate = new Promise(() => {});
    const signals: AbortSignal[] = [];
    const validate = validator.validate.bind(validator);
    validator.validate = (credential, options) => {
      signals.push(options.signal);
      return validate(credential, options);
    };
    const cache = make({ validator, l2: false, validatorTimeoutMs: 3_000 });
    const outcome = cache.lookup(s(8)).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2_999);
    expect(cache.pendingValidations).toBe(1);
    expect(signals[0]?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const error = await outcome;
    expect(isSessionCacheError(error, 'E_VALIDATOR_TIMEOUT')).toBe(true);
    expect(signals[0]?.aborted).toBe(true);
    expect(cache.pendingValidations).toBe(0);
  });

  it('runs the validator once for 1000 concurrent lookups of one cold credential', async () => {
    const gate = deferred<void>();
    const validator = new TableValidator().add(sessionKey(9), identityFor(9));
    validator.gate = gate.promise;
    const cache = make({ validator, l2: false });
    const lookups = Array.from({ length: 1000 }, () => cache.lookup(s(9)));
    expect(cache.pendingValidations).toBe(1);
    gate.resolve();
    const results = await Promise.all(lookups);
    expect(results.every((r) => r.status === 'valid' && r.identity.userId === 9)).toBe(true);
    expect(validator.calls).toBe(1);
    expect(cache.stats()).toMatchObject({ coalesced: 999, misses: 1, validatorCalls: 1 });
  });

  it('refuses more than maxPendingValidations distinct credentials at once', async () => {
    const gate = deferred<void>();
    const validator = new TableValidator();
    validator.gate = gate.promise;
    const cache = make({ validator, l2: false, maxPendingValidations: 2 });
    const a = cache.lookup(s(10));
    const b = cache.lookup(s(11));
    const c = await cache.lookup(s(12)).catch((e: unknown) => e);
    expect(isSessionCacheError(c, 'E_VALIDATOR_BUSY')).toBe(true);
    gate.resolve();
    await Promise.all([a, b]);
    expect(validator.calls).toBe(2);
  });

  it('bounds L1 by l1.max and counts evictions', async () => {
    const validator = new TableValidator();
    for (let i = 20; i < 23; i += 1) validator.add(sessionKey(i), identityFor(i));
    const cache = make({ validator, l2: false, l1: { max: 2 } });
    const evicted: string[] = [];
    const off = cache.on('evict', (e) => evicted.push(e.keyId));
    for (let i = 20; i < 23; i += 1) await cache.lookup(s(i));
    expect(cache.l1Size).toBe(2);
    expect(cache.stats().l1Evictions).toBe(1);
    expect(evicted).toEqual([cache.keyOf(s(20)).slice(0, 12)]);
    off();
  });

  it('does not store an answer that was in flight when the credential was invalidated', async () => {
    const gate = deferred<void>();
    const validator = new TableValidator().add(sessionKey(30), identityFor(30));
    validator.gate = gate.promise;
    const cache = make({ validator, l2: false });
    const inFlight = cache.lookup(s(30));
    await cache.invalidate(s(30));
    gate.resolve();
    expect((await inFlight).status).toBe('valid');
    validator.gate = undefined;
    expect((await cache.lookup(s(30))).tier).toBe('validator');
    expect(validator.calls).toBe(2);
  });

  it('close() is idempotent, aborts validations and refuses new work', async () => {
    const validator = new TableValidator();
    validator.gate = new Promise(() => {});
    const cache = make({ validator, l2: false });
    const inFlight = cache.lookup(s(31)).catch((e: unknown) => e);
    await Promise.all([cache.close(), cache.close()]);
    expect(isSessionCacheError(await inFlight, 'E_CLOSED')).toBe(true);
    expect(isSessionCacheError(await cache.lookup(s(31)).catch((e: unknown) => e), 'E_CLOSED')).toBe(true);
    await expect(cache.invalidate(s(31))).rejects.toMatchObject({ code: 'E_CLOSED' });
    expect(cache.closed).toBe(true);
    await cache[Symbol.asyncDispose]();
  });
});

describe('refused credentials and the user index', () => {
  const t = (n: number) => ({ kind: 'token' as const, token: drfToken(n) });

  it('a flood of 20,000 random session keys cannot push a warm token out of L1', async () => {
    const validator = new TableValidator().add(drfToken(1), identityFor(1, 'token'));
    // The flood takes seconds on a loaded machine: TTLs longer than that, so only eviction counts.
    const cache = make({
      validator,
      l2: false,
      l1: { max: 10_000, ttlMs: 600_000 },
      negative: { max: 1_000, ttlMs: 600_000 },
    });
    expect((await cache.lookup(t(1))).tier).toBe('validator');
    for (let i = 0; i < 20_000; i += 1) {
      const key = `${i.toString(36).padStart(8, 'q')}${Math.random().toString(36).slice(2, 12)}`;
      expect((await cache.lookup({ kind: 'session', sessionKey: key })).status).toBe('invalid');
    }
    const calls = validator.calls;
    expect(await cache.lookup(t(1))).toMatchObject({ status: 'valid', tier: 'l1' });
    expect(validator.calls).toBe(calls);
    expect(calls).toBe(20_001);
    expect(cache.stats()).toMatchObject({
      l1Size: 1,
      negativeSize: 1_000,
      negativeEvictions: 19_000,
      l1Evictions: 0,
    });
  });

  it('invalidateUser() drops every credential of the user but the one kept, and only theirs', async () => {
    const validator = new TableValidator()
      .add(sessionKey(1), identityFor(7))
      .add(sessionKey(2), identityFor(7))
      .add(drfToken(3), identityFor(7, 'token'))
      .add(sessionKey(4), identityFor(8));
    const cache = make({ validator, l2: false });
    for (const c of [s(1), s(2), t(3), s(4)]) await cache.lookup(c);
    expect(cache.stats().indexedUsers).toBe(2);
    const events: unknown[] = [];
    cache.on('invalidate:user', (e) => events.push(e));
    expect(await cache.invalidateUser(7, { except: s(2) })).toEqual({
      userId: 7,
      evicted: 2,
      propagated: false,
    });
    expect(events).toEqual([{ userId: 7, evicted: 2, origin: 'local' }]);
    expect(cache.peek(s(1))).toBeUndefined();
    expect(cache.peek(t(3))).toBeUndefined();
    expect(cache.peek(s(2))?.tier).toBe('l1');
    expect(cache.peek(s(4))?.tier).toBe('l1');
    expect(await cache.invalidateUser(8)).toMatchObject({ evicted: 1 });
    expect(await cache.invalidateUser(9)).toMatchObject({ evicted: 0 });
    expect(cache.stats()).toMatchObject({ userInvalidations: 3, indexedUsers: 1, l1Size: 1 });
    await expect(cache.invalidateUser(0)).rejects.toThrow(RangeError);
  });

  it('a validation in flight when its user is invalidated is answered but not stored', async () => {
    const gate = deferred<void>();
    const validator = new TableValidator().add(sessionKey(5), identityFor(9));
    validator.gate = gate.promise;
    const cache = make({ validator, l2: false });
    const inFlight = cache.lookup(s(5));
    await cache.invalidateUser(9);
    gate.resolve();
    expect((await inFlight).status).toBe('valid');
    validator.gate = undefined;
    expect((await cache.lookup(s(5))).tier).toBe('validator');
  });
});

describe('observability', () => {
  it('publishes lookups and validations on diagnostics channels and events, never the credential', async () => {
    const validator = new TableValidator().add(sessionKey(90), identityFor(90));
    const cache = make({ validator, l2: false });
    const messages: unknown[] = [];
    const onMessage = (m: unknown) => messages.push(m);
    diagnosticsChannel.subscribe('sluice:session-cache:lookup', onMessage);
    diagnosticsChannel.subscribe('sluice:session-cache:validate', onMessage);
    const events: unknown[] = [];
    const off = cache.on('validate', (e) => events.push(e));
    try {
      await cache.lookup(s(90));
      await cache.lookup(s(90));
      await cache.lookup(s(91));
    } finally {
      diagnosticsChannel.unsubscribe('sluice:session-cache:lookup', onMessage);
      diagnosticsChannel.unsubscribe('sluice:session-cache:validate', onMessage);
    }
    off();
    await cache.lookup(s(92));
    const keyId = cache.keyOf(s(90)).slice(0, 12);
    expect(messages).toContainEqual({
      keyId,
      kind: 'session',
      tier: 'l1',
      status: 'valid',
      coalesced: false,
    });
    expect(messages).toContainEqual(expect.objectContaining({ keyId, kind: 'session', outcome: 'valid' }));
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({ outcome: 'invalid', reason: 'not-found' });
    const text = JSON.stringify([messages, events]);
    for (const n of [90, 91, 92]) expect(text).not.toContain(sessionKey(n));
  });

  it('a throwing listener does not break lookups; it is reported as an error event', async () => {
    const validator = new TableValidator().add(sessionKey(93), identityFor(93));
    const cache = make({ validator, l2: false });
    const errors: unknown[] = [];
    cache.on('validate', () => {
      throw new Error('listener bug');
    });
    cache.on('error', (e) => errors.push(e.error));
    expect((await cache.lookup(s(93))).status).toBe('valid');
    expect(errors).toHaveLength(1);
  });
});

describe('L1 + L2 on a shared Redis', () => {
  // A generous command timeout: these tests are about the tiers, and a loaded machine must not
  // turn a slow answer into an L2 error (timeouts have their own tests against a paused Redis).
  const l2 = { redis: sharedRedisUrl, prefix, timeoutMs: 2000 };

  async function ready(cache: SessionCache): Promise<void> {
    await waitFor(() => cache.l2State === 'up' && cache.busState === 'subscribed', {
      what: 'L2 up',
      intervalMs: 5,
    });
  }

  it('stores answers in Redis under an HMAC key with the entry TTL, small JSON values', async () => {
    const validator = new TableValidator().add(sessionKey(40), identityFor(40));
    const cache = make({ validator, l2, ttlMs: 30_000 });
    await ready(cache);
    await cache.lookup(s(40));
    const redis = new Redis(sharedRedisUrl);
    redis.on('error', () => {}); // failures surface through the commands
    try {
      const key = `${prefix}c:${cache.keyOf(s(40))}`;
      const raw = await redis.get(key);
      expect(raw).not.toBeNull();
      expect(raw).not.toContain(sessionKey(40));
      expect(JSON.parse(raw ?? '{}')).toMatchObject({ v: 1, i: { userId: 40 } });
      const pttl = await redis.pttl(key);
      expect(pttl).toBeGreaterThan(25_000);
      expect(pttl).toBeLessThanOrEqual(30_000);
    } finally {
      redis.disconnect();
    }
  });

  it('an answer one instance validated is an L2 hit for another', async () => {
    const va = new TableValidator().add(sessionKey(41), identityFor(41));
    const vb = new TableValidator().add(sessionKey(41), identityFor(41));
    const a = make({ validator: va, l2 });
    const b = make({ validator: vb, l2 });
    await Promise.all([ready(a), ready(b)]);
    await a.lookup(s(41));
    const r = await b.lookup(s(41));
    expect(r).toMatchObject({ status: 'valid', tier: 'l2', identity: { userId: 41 } });
    expect(vb.calls).toBe(0);
    expect((await b.lookup(s(41))).tier).toBe('l1');
    expect(b.stats()).toMatchObject({ l2Hits: 1, l1Hits: 1, validatorCalls: 0 });
  });

  it('with L1 off every lookup is an L2 read', async () => {
    const validator = new TableValidator().add(sessionKey(42), identityFor(42));
    const cache = make({ validator, l2, l1: false });
    await ready(cache);
    await cache.lookup(s(42));
    for (let i = 0; i < 5; i += 1) expect((await cache.lookup(s(42))).tier).toBe('l2');
    expect(cache.peek(s(42))).toBeUndefined();
    expect(cache.stats()).toMatchObject({ l1Hits: 0, l2Hits: 5, validatorCalls: 1 });
  });

  it('invalidate() on one instance drops the entry on the other within 100 ms', async () => {
    const ids = [43, 143, 243];
    const va = new TableValidator();
    const vb = new TableValidator();
    for (const id of ids) {
      va.add(sessionKey(id), identityFor(id));
      vb.add(sessionKey(id), identityFor(id));
    }
    const a = make({ validator: va, l2 });
    const b = make({ validator: vb, l2 });
    await Promise.all([ready(a), ready(b)]);
    // Pub/sub delivers in a few ms; a TTL or a poll would miss every try. Timed on a shared,
    // loaded machine, so the best of three tries must be within 100 ms, and every try must arrive.
    const delays: number[] = [];
    for (const id of ids) {
      await a.lookup(s(id));
      expect((await b.lookup(s(id))).tier).toBe('l2');
      expect((await b.lookup(s(id))).tier).toBe('l1');
      // logout: the session is gone from the source of truth too
      va.valid.delete(sessionKey(id));
      vb.valid.delete(sessionKey(id));
      let off = () => {};
      const heard = new Promise<number>((resolve) => {
        off = b.on('invalidate', (e) => {
          if (e.origin === 'remote') resolve(performance.now());
        });
      });
      const started = performance.now();
      const result = await a.invalidate(s(id));
      expect(result.propagated).toBe(true);
      delays.push((await heard) - started);
      off();
      expect(await b.lookup(s(id))).toMatchObject({ status: 'invalid', tier: 'validator' });
    }
    expect(Math.min(...delays)).toBeLessThan(100);
    expect(b.stats().remoteInvalidations).toBe(ids.length);
  });

  it('invalidateUser() on one instance evicts the user from L2 and from the other instance, keeping `except`', async () => {
    const t = (n: number) => ({ kind: 'token' as const, token: drfToken(n) });
    const table = () =>
      new TableValidator()
        .add(sessionKey(60), identityFor(50))
        .add(sessionKey(61), identityFor(50))
        .add(drfToken(62), identityFor(50, 'token'))
        .add(sessionKey(63), identityFor(51));
    const va = table();
    const vb = table();
    const a = make({ validator: va, l2, ttlMs: 30_000 });
    const b = make({ validator: vb, l2, ttlMs: 30_000 });
    await Promise.all([ready(a), ready(b)]);
    const all = [s(60), s(61), t(62), s(63)];
    for (const c of all) expect((await a.lookup(c)).tier).toBe('validator');
    for (const c of all) expect((await b.lookup(c)).tier).toBe('l2');
    expect(vb.calls).toBe(0);

    const redis = new Redis(sharedRedisUrl);
    redis.on('error', () => {}); // failures surface through the commands
    try {
      const set = `${prefix}u:50`;
      // the user's set holds the HMAC keys, never a credential, and lives as long as its entries
      expect((await redis.smembers(set)).sort()).toEqual(
        [a.keyOf(s(60)), a.keyOf(s(61)), a.keyOf(t(62))].sort(),
      );
      const pttl = await redis.pttl(set);
      expect(pttl).toBeGreaterThan(25_000);
      expect(pttl).toBeLessThanOrEqual(30_000);

      const heard = new Promise<unknown>((resolve) =>
        b.on('invalidate:user', (e) => e.origin === 'remote' && resolve(e)),
      );
      expect(await a.invalidateUser(50, { except: s(61) })).toEqual({
        userId: 50,
        evicted: 2,
        propagated: true,
      });
      expect(await heard).toEqual({ userId: 50, evicted: 2, origin: 'remote' });
      expect(b.peek(s(60))).toBeUndefined();
      expect(b.peek(t(62))).toBeUndefined();
      expect(b.peek(s(61))?.tier).toBe('l1');
      expect(b.peek(s(63))?.tier).toBe('l1');
      expect(await redis.exists(`${prefix}c:${a.keyOf(s(60))}`, `${prefix}c:${a.keyOf(t(62))}`)).toBe(0);
      expect(await redis.exists(`${prefix}c:${a.keyOf(s(61))}`)).toBe(1);
      expect(await redis.smembers(set)).toEqual([a.keyOf(s(61))]);
    } finally {
      redis.disconnect();
    }
    // the next request with an evicted credential asks the validator again, on either instance
    expect((await b.lookup(s(60))).tier).toBe('validator');
    expect((await a.lookup(t(62))).tier).toBe('validator');
    expect(b.stats().remoteInvalidations).toBe(1);
  });

  it('with the lock, concurrent cold lookups on two instances validate once', async () => {
    const gate = deferred<void>();
    const va = new TableValidator().add(sessionKey(44), identityFor(44));
    const vb = new TableValidator().add(sessionKey(44), identityFor(44));
    va.gate = gate.promise;
    vb.gate = gate.promise;
    const lockL2 = { ...l2, lock: { ttlMs: 10_000, waitMs: 8_000, pollMs: 5 } };
    const a = make({ validator: va, l2: lockL2 });
    const b = make({ validator: vb, l2: lockL2 });
    await Promise.all([ready(a), ready(b)]);
    const pa = a.lookup(s(44));
    await waitFor(() => va.calls + vb.calls === 1, { what: 'one validation started' });
    const pb = b.lookup(s(44));
    await waitFor(() => a.stats().lockWaits + b.stats().lockWaits === 1, { what: 'the other waiting' });
    gate.resolve();
    const [ra, rb] = await Promise.all([pa, pb]);
    expect(ra.status).toBe('valid');
    expect(rb).toMatchObject({ status: 'valid', tier: 'l2' });
    expect(va.calls + vb.calls).toBe(1);
  });
});
