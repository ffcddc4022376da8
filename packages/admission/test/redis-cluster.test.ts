import { type OwnRedisCluster, startRedisCluster, waitFor } from '@sluice/test-support';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Permit, RedisSemaphore } from '../src/index.ts';
import { settle } from './helpers.ts';

let cluster: OwnRedisCluster;
const clients: Cluster[] = [];

function client(): Cluster {
  const c = new Cluster(cluster.nodes.map((n) => ({ host: n.host, port: n.port })));
  c.on('error', () => {});
  clients.push(c);
  return c;
}

beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3 });
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await cluster?.stop();
});

describe('RedisSemaphore on a real Redis Cluster', () => {
  it('one global limit across instances; scripts touch one slot; releases wake waiters', async () => {
    const options = {
      name: 'cluster',
      limit: 2,
      perKeyLimit: 1,
      interactiveReserve: 0.5,
      pollIntervalMs: 60_000,
    };
    const a = new RedisSemaphore({ redis: client(), ...options });
    const b = new RedisSemaphore({ redis: client(), ...options });
    try {
      const p1 = await a.acquire({ key: 'alice', priority: 'bulk' });
      const p2 = await b.acquire({ key: 'bob' });
      const waiting = settle(b.acquire({ key: 'carol', priority: 'bulk' }));
      await waitFor(() => b.queued === 1);
      const keys = await clients[0]?.zcard('sluice:admission:{cluster}:leases');
      expect(keys).toBe(2);
      const releasedAt = Date.now();
      p1.release(); // on the other instance: pub/sub wakes the waiter, the poll would take a minute
      await waitFor(() => waiting.state === 'resolved', { timeoutMs: 20_000, intervalMs: 5 });
      expect(Date.now() - releasedAt).toBeLessThan(15_000); // generous for a loaded machine
      for (const p of [p2, waiting.value as Permit]) p.release();
      await waitFor(async () => (await clients[0]?.zcard('sluice:admission:{cluster}:leases')) === 0);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
