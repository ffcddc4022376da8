import { type OwnRedisCluster, startRedisCluster, waitFor } from '@sluice/test-support';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionCache, type SessionCache } from '../src/index.ts';
import { identityFor, sessionKey, TableValidator } from './helpers.ts';

const pepper = 'cluster test pepper, at least 32 b';
let cluster: OwnRedisCluster;
const caches: SessionCache[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3 });
}, 60_000);
afterAll(async () => {
  await Promise.all(caches.map((c) => c.close()));
  await cluster?.stop();
});

const up = (c: SessionCache) =>
  waitFor(() => c.l2State === 'up' && c.busState === 'subscribed', {
    what: 'cluster L2 up',
    timeoutMs: 20_000,
  });

describe('Redis Cluster', () => {
  it('shares entries and invalidations between instances, from seed nodes or a Cluster passed in', async () => {
    const va = new TableValidator();
    const vb = new TableValidator();
    // user i % 10: three sessions each, whose entries land in different slots
    for (let i = 0; i < 30; i += 1) {
      va.add(sessionKey(i), identityFor(1 + (i % 10)));
      vb.add(sessionKey(i), identityFor(1 + (i % 10)));
    }
    const a = createSessionCache({
      validator: va,
      pepper,
      env: {},
      // A generous command timeout: a loaded machine must not turn a slow answer into an L2 miss.
      l2: { redis: { cluster: cluster.nodes }, timeoutMs: 2000 },
    });
    const own = new Cluster([...cluster.nodes], { enableOfflineQueue: false });
    own.on('error', () => {}); // failures surface through the cache's commands
    const b = createSessionCache({ validator: vb, pepper, env: {}, l2: { redis: own, timeoutMs: 2000 } });
    caches.push(a, b);
    await Promise.all([up(a), up(b)]);
    // 30 keys spread over the three masters' slots
    for (let i = 0; i < 30; i += 1) await a.lookup({ kind: 'session', sessionKey: sessionKey(i) });
    for (let i = 0; i < 30; i += 1) {
      expect((await b.lookup({ kind: 'session', sessionKey: sessionKey(i) })).tier).toBe('l2');
    }
    expect(vb.calls).toBe(0);
    const heard = new Promise<void>((resolve) =>
      b.on('invalidate', (e) => e.origin === 'remote' && resolve()),
    );
    expect((await a.invalidate({ kind: 'session', sessionKey: sessionKey(3) })).propagated).toBe(true);
    await heard;
    vb.valid.delete(sessionKey(3));
    expect(await b.lookup({ kind: 'session', sessionKey: sessionKey(3) })).toMatchObject({
      status: 'invalid',
      tier: 'validator',
    });
    // a user's entries span slots: invalidateUser deletes them one by one, and B drops its copies
    const heardUser = new Promise<void>((resolve) =>
      b.on('invalidate:user', (e) => e.origin === 'remote' && resolve()),
    );
    expect(await a.invalidateUser(5)).toEqual({ userId: 5, evicted: 3, propagated: true });
    await heardUser;
    for (const i of [4, 14, 24]) {
      expect(b.peek({ kind: 'session', sessionKey: sessionKey(i) }), String(i)).toBeUndefined();
      expect((await b.lookup({ kind: 'session', sessionKey: sessionKey(i) })).tier).toBe('validator');
    }
    await b.close();
    // the cache never quits a client it was given
    expect(own.status).toBe('ready');
    own.disconnect();
  });
});
