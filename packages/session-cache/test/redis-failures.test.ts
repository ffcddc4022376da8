import { freePort, type OwnRedis, startOwnRedis, waitFor } from '@sluice/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createSessionCache,
  type L2Error,
  type SessionCache,
  type SessionCacheOptions,
} from '../src/index.ts';
import { identityFor, sessionKey, TableValidator } from './helpers.ts';

const pepper = 'redis-failures test pepper, 32 bytes';
const s = (n: number) => ({ kind: 'session' as const, sessionKey: sessionKey(n) });
let redis: OwnRedis;
const caches: SessionCache[] = [];

beforeAll(async () => {
  redis = await startOwnRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

function make(validator: TableValidator, options: Partial<SessionCacheOptions> = {}): SessionCache {
  const cache = createSessionCache({
    validator,
    pepper,
    env: {},
    l2: { redis: redis.url, prefix: 'rf:', timeoutMs: 150, failureThreshold: 1, cooldownMs: 100 },
    ...options,
  });
  caches.push(cache);
  return cache;
}

const up = (c: SessionCache) =>
  waitFor(() => c.l2State === 'up' && c.busState !== 'disconnected', { what: 'L2 up', intervalMs: 5 });

describe('Redis failures', () => {
  it('Redis killed mid-run: every lookup still answers; Redis back: L2 is used again without a restart', async () => {
    const validator = new TableValidator();
    for (let i = 0; i < 20; i += 1) validator.add(sessionKey(i), identityFor(i));
    const cache = make(validator, { l1: false });
    await up(cache);
    // Listened to once up: a first connection slower than the 100 ms cooldown is a startup outage
    // of its own on a loaded machine, and not what this test is about.
    const events: string[] = [];
    cache.on('l2:down', () => events.push('down'));
    cache.on('l2:up', () => events.push('up'));

    let failures = 0;
    let answered = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i += 1) {
        try {
          const r = await cache.lookup(s(i % 20));
          if (r.status === 'valid') answered += 1;
          else failures += 1;
        } catch {
          failures += 1;
        }
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      await waitFor(() => answered > 200, { what: 'traffic before the kill', timeoutMs: 20_000 });
      await redis.kill();
      await waitFor(() => events.includes('down'), { what: 'l2:down', timeoutMs: 20_000 });
      const atDown = answered;
      await waitFor(() => answered > atDown + 200, {
        what: 'traffic while Redis is down',
        timeoutMs: 20_000,
      });
      expect(cache.l2State).not.toBe('up');
      const l2HitsWhileDown = cache.stats().l2Hits;
      await redis.start();
      await waitFor(() => events.includes('up'), { what: 'l2:up', timeoutMs: 20_000 });
      await waitFor(() => cache.stats().l2Hits > l2HitsWhileDown + 50, {
        what: 'L2 hits again',
        timeoutMs: 20_000,
      });
    } finally {
      // the loop ends however the waits went, so a failure never leaves it spinning
      stop = true;
      await loop;
    }
    expect(failures).toBe(0);
    // down at the kill, up at the end (a command slower than 150 ms on a loaded machine may add
    // an outage of its own in between: failureThreshold is 1)
    expect(events[0]).toBe('down');
    expect(events.at(-1)).toBe('up');
    expect(cache.stats().l2Errors).toBeGreaterThan(0);
  });

  it('a slow Redis (CLIENT PAUSE) times commands out and takes L2 down; lookups fall back', async () => {
    const validator = new TableValidator().add(sessionKey(50), identityFor(50));
    // A cooldown long enough that the breaker is surely still open for the second lookup below.
    const cache = make(validator, {
      l1: false,
      l2: { redis: redis.url, prefix: 'rf:', timeoutMs: 150, failureThreshold: 1, cooldownMs: 1000 },
    });
    await up(cache);
    const downs: L2Error[] = [];
    cache.on('l2:down', (e) => downs.push(e.error));
    const admin = new Redis(redis.url);
    admin.on('error', () => {}); // failures surface through the commands
    try {
      // Paused far longer than the 150 ms command timeout, so a loaded machine cannot blur them.
      await admin.call('CLIENT', 'PAUSE', '2000', 'ALL');
      const started = performance.now();
      const r = await cache.lookup(s(50));
      expect(r).toMatchObject({ status: 'valid', tier: 'validator' });
      expect(performance.now() - started).toBeLessThan(2000); // did not wait for the pause to end
      expect(cache.stats().l2Timeouts).toBeGreaterThanOrEqual(1);
      expect(downs[0]?.code).toBe('E_L2_TIMEOUT');
      expect(cache.l2State).not.toBe('up');
      // while down, L2 is skipped entirely
      const errors = cache.stats().l2Errors;
      await cache.lookup(s(50));
      expect(cache.stats().l2Errors).toBe(errors);
      await waitFor(() => cache.l2State === 'up', { what: 'L2 back after the pause', timeoutMs: 10_000 });
    } finally {
      admin.disconnect();
    }
  });

  it('invalidations (of a credential, of a user) made while L2 is down are replayed when it is back', async () => {
    const va = new TableValidator().add(sessionKey(60), identityFor(60));
    const a = make(va);
    await up(a);
    await a.lookup(s(60));
    const key = `rf:c:${a.keyOf(s(60))}`;
    const admin = new Redis(redis.url);
    admin.on('error', () => {}); // failures surface through the commands
    try {
      expect(await admin.exists(key, 'rf:u:60')).toBe(2);
      // Paused far longer than the 150 ms command timeout, so the invalidation surely times out.
      await admin.call('CLIENT', 'PAUSE', '2000', 'ALL');
      const first = await a.invalidate(s(60)); // times out, marks L2 down
      expect(first.propagated).toBe(false);
      expect(await a.invalidateUser(60)).toEqual({ userId: 60, evicted: 0, propagated: false });
      expect(a.stats().pendingInvalidations).toBe(2);
      await waitFor(() => a.l2State === 'up', { what: 'L2 back', timeoutMs: 10_000 });
      await waitFor(() => a.stats().pendingInvalidations === 0, { what: 'replay' });
      expect(await admin.exists(key, 'rf:u:60')).toBe(0);
    } finally {
      admin.disconnect();
    }
  });

  it('the subscriber resubscribes after Redis restarts, and L1 is dropped since messages may have been lost', async () => {
    const va = new TableValidator().add(sessionKey(70), identityFor(70));
    const vb = new TableValidator().add(sessionKey(70), identityFor(70));
    const a = make(va);
    const b = make(vb);
    await Promise.all([up(a), up(b)]);
    let resubscribed = 0;
    b.on('bus:resubscribed', () => {
      resubscribed += 1;
    });
    await redis.kill();
    await redis.start();
    await waitFor(() => resubscribed > 0 && b.busState === 'subscribed', {
      what: 'resubscribed',
      timeoutMs: 15_000,
    });
    await Promise.all([up(a), up(b)]);
    await b.lookup(s(70));
    expect((await b.lookup(s(70))).tier).toBe('l1');
    const heard = new Promise<void>((resolve) =>
      b.on('invalidate', (e) => e.origin === 'remote' && resolve()),
    );
    expect((await a.invalidate(s(70))).propagated).toBe(true);
    await heard;
    expect((await b.lookup(s(70))).tier).not.toBe('l1');
  });

  it('a Redis that never answers: L2 is reported down after a cooldown and lookups work', async () => {
    const port = await freePort();
    const validator = new TableValidator().add(sessionKey(80), identityFor(80));
    const cache = createSessionCache({
      validator,
      pepper,
      env: {},
      l2: { redis: `redis://127.0.0.1:${port}`, cooldownMs: 200 },
    });
    caches.push(cache);
    expect(cache.l2State).toBe('connecting');
    const down = new Promise<L2Error>((resolve) => cache.on('l2:down', (e) => resolve(e.error)));
    expect((await cache.lookup(s(80))).status).toBe('valid');
    expect((await down).code).toBe('E_L2_UNAVAILABLE');
    expect(cache.l2State).toBe('down');
  });
});
