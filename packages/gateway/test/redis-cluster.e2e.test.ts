import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Validator } from '@sluice/session-cache';
import { type OwnRedisCluster, startRedisCluster, uniquePrefix, waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessLogEntry, createGateway, type Gateway, loadConfig } from '../src/index.ts';
import { memoryLogger, recordRequests } from './helpers.ts';

// Two gateways given the seed nodes of a real 3-node Redis Cluster (--redis-cluster): a credential
// validated by one is an L2 hit for the other, and the budget is one distributed semaphore. The
// upstream is a small Node server that counts its concurrent requests; the validator is a counting
// stand-in for Django (it accepts a fixed set of tokens without I/O).
const BUDGET = 4;
const TOKENS = Array.from({ length: 6 }, (_, i) => String(i).repeat(40));
const validations = new Map<string, number>();
const validator: Validator = {
  kinds: ['token'],
  async validate(credential) {
    if (credential.kind !== 'token' || !TOKENS.includes(credential.token)) {
      return { valid: false, reason: 'unknown token' };
    }
    validations.set(credential.token, (validations.get(credential.token) ?? 0) + 1);
    return {
      valid: true,
      identity: {
        userId: TOKENS.indexOf(credential.token) + 1,
        username: `user${TOKENS.indexOf(credential.token)}`,
        isActive: true,
        isStaff: false,
        isSuperuser: false,
        credentialKind: 'token',
        expiresAt: null,
      },
    };
  },
};

let cluster: OwnRedisCluster;
let upstream: Server;
let inFlight = 0;
let peak = 0;
let a: Gateway;
let b: Gateway;
let aUrl: string;
let bUrl: string;
let aEntries: AccessLogEntry[];
let bEntries: AccessLogEntry[];

beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3 });
  upstream = createServer((req, res) => {
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    req.resume();
    setTimeout(() => {
      inFlight -= 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ path: req.url }));
    }, 60);
  });
  upstream.listen(0, '127.0.0.1');
  await new Promise((resolve) => upstream.once('listening', resolve));
  const seeds = cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',');
  const common = {
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    listen: '127.0.0.1:0',
    redisUrl: `redis://${seeds}`,
    redisCluster: true,
    redisPrefix: uniquePrefix('gwcluster'),
    cachePepper: 'sluice-gateway-cluster-test-pepper',
    dbBudget: BUDGET,
    upstreamConnections: 16,
    // The test reads what one gateway wrote from the other: a loaded machine must not time the write out.
    cacheRedisTimeoutMs: 2_000,
    queueTimeoutMs: 20_000,
    validator,
  } as const;
  a = createGateway({ ...common, logger: memoryLogger().logger });
  b = createGateway({ ...common, logger: memoryLogger().logger });
  aEntries = recordRequests(a);
  bEntries = recordRequests(b);
  aUrl = (await a.listen()).url;
  bUrl = (await b.listen()).url;
  await waitFor(
    async () => (await a.readiness()).status === 'ready' && (await b.readiness()).status === 'ready',
    {
      timeoutMs: 15_000,
    },
  );
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.close(1_000), b?.close(1_000)]);
  await new Promise((resolve) => upstream?.close(resolve));
  await cluster?.stop();
});

async function get(base: string, token: string): Promise<number> {
  const response = await fetch(`${base}/api/tasks/1`, { headers: { authorization: `Token ${token}` } });
  await response.body?.cancel();
  return response.status;
}

describe('Redis Cluster (--redis-cluster)', () => {
  it('reads the seed nodes from a comma-separated redis URL, and only with --redis-cluster', () => {
    const ok = loadConfig(
      ['--redis-url', 'redis://h1:7000,h2:7001', '--redis-cluster', '--cache-pepper', 'p'.repeat(16)],
      {},
    );
    expect(ok.ok && ok.config.redisCluster).toBe(true);
    const env = loadConfig([], {
      REDIS_URL: 'redis://h1:7000,h2:7001',
      SLUICE_REDIS_CLUSTER: 'true',
      SLUICE_CACHE_PEPPER: 'p'.repeat(16),
    });
    expect(env.ok && env.config.redisCluster).toBe(true);
    const missing = loadConfig(
      ['--redis-url', 'redis://h1:7000,h2:7001', '--cache-pepper', 'p'.repeat(16)],
      {},
    );
    expect(missing.ok ? [] : missing.issues.map((i) => i.field)).toEqual(['redisUrl']);
    const noUrl = loadConfig(['--redis-cluster'], {});
    expect(noUrl.ok ? [] : noUrl.issues.map((i) => i.field)).toEqual(['redisCluster']);
  });

  it('reports the cluster in status and readiness', async () => {
    for (const g of [a, b]) {
      expect(g.status().redis).toEqual({ mode: 'cluster', status: 'ready', nodes: 3 });
      const report = await g.readiness();
      expect(report.checks.redis?.ok).toBe(true);
      expect(report.checks.redis?.detail).toMatchObject({ mode: 'cluster', nodes: 3, reply: 'PONG' });
    }
  });

  it('shares the L2 cache: a credential validated by one gateway is an L2 hit for the other', async () => {
    for (const token of TOKENS) {
      expect(await get(aUrl, token)).toBe(200);
      expect(aEntries.at(-1)?.cacheTier).toBe('validator');
      expect(await get(bUrl, token)).toBe(200);
      expect(bEntries.at(-1)?.cacheTier).toBe('l2');
    }
    expect([...validations.values()]).toEqual(TOKENS.map(() => 1));
    expect(b.status().cache.l2Hits).toBe(TOKENS.length);
    expect(b.status().cache.validatorCalls).toBe(0);
  });

  it('shares the budget: the upstream never sees more than it across both gateways', async () => {
    peak = 0;
    // Alone, each gateway would admit BUDGET; without Redis each admits a quarter of it.
    const statuses = await Promise.all(
      Array.from({ length: 48 }, (_, i) => get(i % 2 === 0 ? aUrl : bUrl, TOKENS[i % TOKENS.length] ?? '')),
    );
    expect(statuses).toEqual(statuses.map(() => 200));
    expect(peak).toBeLessThanOrEqual(BUDGET);
    expect(peak).toBeGreaterThan(2);
    expect(a.status().admission.semaphore).toBe('redis');
  });
});
