import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { expect, test } from 'vitest';
import { startRedisCluster } from '../src/index.ts';

test('three local nodes form a working cluster, and stop() takes them down', async () => {
  const stale = join(tmpdir(), 'sluice-redis-cluster-2147483646-leftover');
  mkdirSync(stale, { recursive: true });
  writeFileSync(join(stale, 'pids'), '0\n');
  const cluster = await startRedisCluster({ nodes: 3 });
  expect(existsSync(stale)).toBe(false);
  expect(cluster.nodes).toHaveLength(3);
  for (const n of cluster.nodes) expect(n.port + 10_000).toBeLessThanOrEqual(65_535);
  const client = new Cluster(cluster.nodes.map((n) => ({ host: n.host, port: n.port })));
  client.on('error', () => {}); // failures surface through the commands
  // keys spread over slots owned by different nodes
  for (let i = 0; i < 30; i += 1) await client.set(`k${i}`, String(i));
  for (let i = 0; i < 30; i += 1) expect(await client.get(`k${i}`)).toBe(String(i));
  const owners = new Set<string>();
  for (const node of client.nodes('master'))
    if ((await node.dbsize()) > 0) owners.add(String(node.options.port));
  expect(owners.size).toBe(3);
  await client.quit();
  await cluster.stop();
  await cluster.stop();
  const probe = new Cluster(
    cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
    {
      clusterRetryStrategy: () => null,
      enableOfflineQueue: false,
    },
  );
  probe.on('error', () => {});
  await expect(probe.get('k1')).rejects.toThrow();
  probe.disconnect();
});

test('fewer than three nodes is refused', async () => {
  await expect(startRedisCluster({ nodes: 2 })).rejects.toThrow(RangeError);
});
