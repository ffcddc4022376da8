import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { deleteKeys, sharedRedisUrl, startOwnRedis, uniquePrefix, waitFor } from '@sluice/test-support';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  admission,
  type GateDemand,
  isAdmissionError,
  type LimitSource,
  type Permit,
  RedisSemaphore,
  type RedisSemaphoreOptions,
} from '../src/index.ts';
import { deferred, flush, get, listen, settle } from './helpers.ts';

const prefix = uniquePrefix('admission');
let redis: Redis;
const gates: RedisSemaphore[] = [];

beforeAll(async () => {
  redis = new Redis(sharedRedisUrl, { lazyConnect: true });
  redis.on('error', () => {}); // failures surface through the commands
  await redis.connect();
});

afterEach(async () => {
  for (const g of gates.splice(0)) await g.close();
});

afterAll(async () => {
  redis.disconnect();
  await deleteKeys(sharedRedisUrl, prefix);
});

let names = 0;
function gate(o: Partial<RedisSemaphoreOptions> & { name: string }): RedisSemaphore {
  const g = new RedisSemaphore({ redis: sharedRedisUrl, prefix, limit: 1, drainTimeoutMs: 0, ...o });
  gates.push(g);
  return g;
}
function uniqueName(): string {
  names += 1;
  return `g${names}`;
}

describe('RedisSemaphore against a real Redis', () => {
  it('keeps leases in a sorted set under one hash tag and removes them on release', async () => {
    const name = uniqueName();
    const g = gate({ name, limit: 3 });
    const key = `${prefix}{${name}}:leases`;
    const p1 = await g.acquire({ key: 'a' });
    const p2 = await g.acquire({ key: 'b' });
    expect(await redis.zcard(key)).toBe(2);
    expect([g.inFlight, g.queued, g.available, g.limit, g.leases]).toEqual([2, 0, 1, 3, 2]);
    const [, score] = await redis.zrange(key, 0, 0, 'WITHSCORES');
    const [seconds] = await redis.time();
    // scored by expiry: about leaseMs (30 s by default) from now on the server's clock
    expect(Number(score) - Number(seconds) * 1000).toBeGreaterThan(25_000);
    p1.release();
    p1.release();
    p2.release();
    await waitFor(async () => (await redis.zcard(key)) === 0);
    expect(g.inFlight).toBe(0);
  });

  it('enforces one global limit across instances and wakes a waiter by pub/sub, not by polling', async () => {
    const name = uniqueName();
    const a = gate({ name, limit: 3, pollIntervalMs: 60_000 });
    const b = gate({ name, limit: 3, pollIntervalMs: 60_000 });
    const held = [await a.acquire(), await a.acquire(), await b.acquire()];
    const waiting = settle(b.acquire({ key: 'late' }));
    await waitFor(() => b.queued === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(waiting.state).toBe('pending');
    const releasedAt = Date.now();
    held[0]?.release(); // released by the other instance
    await waitFor(() => waiting.state === 'resolved', { timeoutMs: 20_000, intervalMs: 5 });
    // the poll alone would take a minute; the bound is generous for a loaded machine
    expect(Date.now() - releasedAt).toBeLessThan(15_000);
    expect(b.available).toBe(0);
    for (const p of [...held.slice(1), waiting.value as Permit]) p.release();
  });

  it("serves another key's waiter before a busy key's backlog", async () => {
    const name = uniqueName();
    const g = gate({ name, limit: 1, maxQueue: 100 });
    const order: string[] = [];
    const take = (key: string) =>
      g.acquire({ key }).then((p) => {
        order.push(key);
        return p;
      });
    const first = await take('script');
    const backlog = Array.from({ length: 20 }, () => take('script'));
    await waitFor(() => g.queued === 20);
    const user = take('user');
    await waitFor(() => g.queued === 21);
    first.release();
    (await user).release();
    expect(order).toEqual(['script', 'user']);
    for (const p of backlog) (await p).release();
    expect(order.length).toBe(22);
  });

  it('enforces perKeyLimit and the bulk share globally', async () => {
    const name = uniqueName();
    const a = gate({ name, limit: 4, perKeyLimit: 1, interactiveReserve: 0.5, pollIntervalMs: 50 });
    const b = gate({ name, limit: 4, perKeyLimit: 1, interactiveReserve: 0.5, pollIntervalMs: 50 });
    const alice = await a.acquire({ key: 'alice', priority: 'bulk' });
    const aliceElsewhere = settle(b.acquire({ key: 'alice' }));
    const bob = await b.acquire({ key: 'bob', priority: 'bulk' });
    // bulk share is 2 of 4: carol's bulk request waits, her interactive one goes through
    const carolBulk = settle(b.acquire({ key: 'carol', priority: 'bulk' }));
    const dave = await a.acquire({ key: 'dave', priority: 'interactive' });
    await new Promise((r) => setTimeout(r, 200));
    expect(aliceElsewhere.state).toBe('pending');
    expect(carolBulk.state).toBe('pending');
    alice.release();
    await waitFor(() => aliceElsewhere.state === 'resolved' && carolBulk.state === 'resolved');
    for (const p of [bob, dave, aliceElsewhere.value as Permit, carolBulk.value as Permit]) p.release();
  });

  it('gives bulk its share of the whole gate first, counted over every process, then interactive', async () => {
    const name = uniqueName();
    // limit 8, bulkShare 0.25: two bulk permits go before interactive ones, counted in Redis
    const b = gate({ name, limit: 8, bulkShare: 0.25, pollIntervalMs: 50 });
    const held = await Promise.all(Array.from({ length: 8 }, () => b.acquire({ key: 'ui' })));
    const exports = Array.from({ length: 5 }, () => settle(b.acquire({ key: 'script', priority: 'bulk' })));
    const polls = Array.from({ length: 5 }, () => settle(b.acquire({ key: 'ui' })));
    // Queued once Redis has said "full" to their first try (a loaded machine takes a while).
    await waitFor(() => b.queued === 10);
    for (const p of held.splice(0, 4)) p.release();
    // one pump batch holds every waiter: only the share goes ahead of interactive
    await waitFor(() => [...exports, ...polls].filter((w) => w.state === 'resolved').length === 4);
    expect(exports.filter((e) => e.state === 'resolved')).toHaveLength(2);
    expect(polls.filter((p) => p.state === 'resolved')).toHaveLength(2);
    for (const w of [...exports, ...polls]) if (w.state === 'resolved') (w.value as Permit).release();
    for (const p of held) p.release();
    await waitFor(() => [...exports, ...polls].every((w) => w.state === 'resolved'));
    for (const w of [...exports, ...polls]) (w.value as Permit).release();

    // Another process holds bulk's share: d's free slot goes to its interactive waiter first.
    const other = uniqueName();
    const c = gate({ name: other, limit: 8, bulkShare: 0.25, pollIntervalMs: 50 });
    const d = gate({ name: other, limit: 8, bulkShare: 0.25, pollIntervalMs: 50 });
    const cBulk = await Promise.all([1, 2].map(() => c.acquire({ key: 'script', priority: 'bulk' })));
    const dHeld = await Promise.all(Array.from({ length: 6 }, () => d.acquire({ key: 'ui' })));
    const dExport = settle(d.acquire({ key: 'script', priority: 'bulk' }));
    const dPoll = settle(d.acquire({ key: 'ui' }));
    await waitFor(() => d.queued === 2);
    dHeld[0]?.release();
    await waitFor(() => dPoll.state === 'resolved');
    expect(dExport.state).toBe('pending');
    for (const p of [...cBulk, ...dHeld.slice(1), dPoll.value as Permit]) p.release();
    await waitFor(() => dExport.state === 'resolved');
    (dExport.value as Permit).release();
  });

  it('renews leases while held; times out and aborts waiters', async () => {
    const name = uniqueName();
    // Renewed every leaseMs / 3: the lease outlives a stall of two thirds of it on a loaded machine.
    const holder = gate({ name, limit: 1, leaseMs: 1000 });
    const other = gate({ name, limit: 1, leaseMs: 1000, queueTimeoutMs: 3000, pollIntervalMs: 50 });
    const held = await holder.acquire();
    const timedOut = await other.acquire().catch((e: unknown) => e);
    // it waited three lease times: the lease was renewed all along
    expect(isAdmissionError(timedOut, 'E_QUEUE_TIMEOUT')).toBe(true);
    const controller = new AbortController();
    const aborted = settle(other.acquire({ signal: controller.signal }));
    await flush();
    controller.abort();
    // rejected at once when queued, or as soon as its first round trip to Redis returns
    await waitFor(() => aborted.state === 'rejected', { intervalMs: 5 });
    expect(isAdmissionError(aborted.error, 'E_ABORTED')).toBe(true);
    expect(other.queued).toBe(0);
    held.release();
    const next = await other.acquire();
    next.release();
  });

  it('close() rejects waiters with E_CLOSED and refuses new work', async () => {
    const name = uniqueName();
    const g = gate({ name, limit: 1 });
    const held = await g.acquire();
    const waiting = settle(g.acquire());
    await flush();
    held.release();
    await waitFor(() => waiting.state === 'resolved');
    const again = settle(g.acquire());
    await flush();
    const closing = g.close();
    (waiting.value as Permit).release();
    await closing;
    await waitFor(() => again.state === 'rejected', { intervalMs: 5 });
    expect(isAdmissionError(again.error, 'E_CLOSED')).toBe(true);
    await expect(g.acquire()).rejects.toMatchObject({ code: 'E_CLOSED' });
  });

  it('drives admission(): two apps sharing one global limit of 2', async () => {
    const name = uniqueName();
    let current = 0;
    let peak = 0;
    const apps = await Promise.all(
      [0, 1].map(async () => {
        const mw = admission({
          gate: gate({ name, limit: 2, maxQueue: 50 }),
          queueWaitHeader: 'X-Queue-Wait-Ms',
        });
        const app = express();
        app.use(mw);
        app.get('/', async (_req, res) => {
          current += 1;
          peak = Math.max(peak, current);
          await new Promise((r) => setTimeout(r, 30));
          current -= 1;
          res.json({ ok: true });
        });
        return { mw, server: await listen(app) };
      }),
    );
    try {
      const replies = await Promise.all(
        Array.from({ length: 12 }, (_, i) => get(`${(apps[i % 2] as (typeof apps)[number]).server.url}/`)),
      );
      expect(replies.map((r) => r.status)).toEqual(Array(12).fill(200));
      expect(peak).toBe(2);
      expect(replies.some((r) => Number(r.headers['x-queue-wait-ms']) > 0)).toBe(true);
      await waitFor(() => apps.every((a) => a.mw.inFlight === 0));
    } finally {
      for (const a of apps) await a.server.close();
    }
  });

  it('shows a closed-loop limit source the global in-flight count, not only its own', async () => {
    const name = uniqueName();
    let demand: (() => GateDemand) | undefined;
    const source: LimitSource = {
      current: 4,
      onChange: () => () => {},
      attach: (gauges) => {
        demand = gauges;
      },
    };
    const a = gate({ name, limit: 4 });
    const b = gate({ name, limit: source });
    const held = [await a.acquire(), await a.acquire(), await b.acquire()];
    expect(demand?.()).toEqual({ queued: 0, inFlight: 3 }); // b holds 1, Redis counted 3
    for (const p of held) p.release();
  });

  it('validates options', () => {
    expect(() => new RedisSemaphore({ redis: sharedRedisUrl, limit: 1, prefix: 'a{b' })).toThrow(/prefix/);
    expect(() => new RedisSemaphore({ redis: 42 as unknown as string, limit: 1 })).toThrow(/redis should be/);
    expect(() => new RedisSemaphore({ redis: redis, limit: 1, leaseMs: 10 })).toThrow(/leaseMs/);
    expect(() => new RedisSemaphore({ redis: redis, limit: 1, fallbackShare: 0 })).toThrow(/fallbackShare/);
  });
});

/** A TCP proxy to `port` that holds every connection until `open()`: a Redis slow to answer at start. */
async function slowStart(port: number) {
  const opened = deferred();
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    client.pause();
    void opened.promise.then(() => {
      const upstream = connect(port, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
      client.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`,
    open: () => opened.resolve(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('RedisSemaphore while Redis has not answered yet', () => {
  it('acquires wait while connecting (no fallback share), then go through Redis', async () => {
    const slow = await slowStart(Number(new URL(sharedRedisUrl).port || 6379));
    try {
      const name = uniqueName();
      const g = gate({ name, redis: slow.url, limit: 4, commandTimeoutMs: 250, connectTimeoutMs: 60_000 });
      const events: string[] = [];
      g.on('fallback', () => events.push('fallback'));
      expect(g.mode).toBe('connecting');
      expect(g.tryAcquire()).toBeUndefined();
      const waiting = [settle(g.acquire({ key: 'a' })), settle(g.acquire({ key: 'b' }))];
      // twice commandTimeoutMs: a slow start is not an outage
      await new Promise((r) => setTimeout(r, 500));
      expect(waiting.map((w) => w.state)).toEqual(['pending', 'pending']);
      expect(g.queued).toBe(2);
      slow.open();
      await waitFor(() => waiting.every((w) => w.state === 'resolved'));
      expect(g.mode).toBe('redis');
      expect(events).toEqual([]);
      expect(await redis.zcard(`${prefix}{${name}}:leases`)).toBe(2);
      for (const w of waiting) (w.value as Permit).release();
    } finally {
      await slow.close();
    }
  });

  it('falls back once connectTimeoutMs passes without an answer; a queued wait is served then', async () => {
    const slow = await slowStart(Number(new URL(sharedRedisUrl).port || 6379));
    try {
      const g = gate({ name: uniqueName(), redis: slow.url, limit: 8, connectTimeoutMs: 150 });
      const fallbacks: number[] = [];
      g.on('fallback', (e) => fallbacks.push(e.fallbackLimit));
      const first = settle(g.acquire());
      expect(g.mode).toBe('connecting');
      await waitFor(() => first.state === 'resolved');
      expect(g.mode).toBe('fallback');
      expect(fallbacks).toEqual([2]);
      (first.value as Permit).release();
    } finally {
      await slow.close();
    }
  });
});

describe('RedisSemaphore when Redis goes away', () => {
  it('falls back to its local share with an event, and returns to Redis when it is back', async () => {
    const own = await startOwnRedis();
    try {
      const g = new RedisSemaphore({
        redis: own.url,
        name: 'fallback',
        limit: 8,
        fallbackShare: 0.25,
        interactiveReserve: 0,
        // generous: a loaded machine must not look like an outage; a dead Redis fails at once
        commandTimeoutMs: 2000,
        recoveryIntervalMs: 100,
        drainTimeoutMs: 0,
      });
      gates.push(g);
      const events: string[] = [];
      g.on('fallback', (e) => events.push(`fallback ${e.fallbackLimit}`));
      g.on('recovered', () => events.push('recovered'));
      expect(g.mode).toBe('connecting');
      const first = await g.acquire(); // waits for Redis's first answer: no fallback at start
      expect(g.mode).toBe('redis');
      await own.kill();
      // Redis is down: the next acquire falls back to 8 * 0.25 = 2 permits in this process
      const second = await g.acquire();
      expect(g.mode).toBe('fallback');
      expect(events).toEqual(['fallback 2']);
      expect(g.available).toBe(0);
      expect(g.tryAcquire()).toBeUndefined();
      const third = settle(g.acquire());
      await flush();
      expect(third.state).toBe('pending');
      first.release(); // while down: remembered, sent when Redis is back
      await flush();
      expect(third.state).toBe('resolved');
      await own.start();
      await waitFor(() => g.mode === 'redis', { timeoutMs: 15_000 });
      expect(events).toEqual(['fallback 2', 'recovered']);
      // leases taken during the outage are registered in Redis
      const check = new Redis(own.url);
      check.on('error', () => {}); // failures surface through the commands
      try {
        expect(await check.zcard('sluice:admission:{fallback}:leases')).toBe(2);
        const more = await Promise.all(Array.from({ length: 6 }, () => g.acquire()));
        expect(await check.zcard('sluice:admission:{fallback}:leases')).toBe(8);
        const over = settle(g.acquire());
        await new Promise((r) => setTimeout(r, 100));
        expect(over.state).toBe('pending');
        for (const p of [second, third.value as Permit, ...more]) p.release();
        await waitFor(() => over.state === 'resolved');
        (over.value as Permit).release();
        await waitFor(async () => (await check.zcard('sluice:admission:{fallback}:leases')) === 0);
      } finally {
        check.disconnect();
      }
    } finally {
      await own.stop();
    }
  });
});
