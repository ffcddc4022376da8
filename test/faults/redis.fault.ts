// Redis SIGKILLed under steady load, then started again: not one request may fail, and both
// the L2 tier and the invalidation bus must come back by themselves.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type LoadReport, mergeReports, startLoad } from '../support/src/index.ts';
import { type GatewayProcess, spawnGateway } from './lib/gateway-process.ts';
import { recordScenario } from './lib/report.ts';
import { call, gatewayStatus, sleep } from './lib/util.ts';
import { startWorld, userTraffic, type World } from './lib/world.ts';

let world: World;
let a: GatewayProcess;
let b: GatewayProcess;

beforeAll(async () => {
  world = await startWorld({ redis: true, users: 4, sessions: 3 });
  const config = {
    upstream: world.upstream.url,
    databaseUrl: world.databaseUrl,
    redisUrl: world.redis?.url,
    secretKey: world.django.secretKey,
    dbBudget: 12,
  };
  [a, b] = await Promise.all([spawnGateway({ gateway: config }), spawnGateway({ gateway: config })]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await world?.stop();
});

test('Redis killed and restarted under load: zero failed requests; L2 and the bus come back', async () => {
  const redis = world.redis;
  if (!redis) throw new Error('this scenario needs its own Redis');
  const traffic = userTraffic(world);
  const load = (target: string): ReturnType<typeof startLoad> =>
    startLoad({
      target,
      concurrency: 16,
      maxRequests: 5_000,
      durationMs: 16_000,
      ratePerSecond: 30,
      timeoutMs: 15_000,
      request: traffic,
    });
  const runs = [load(a.url), load(b.url)];
  await sleep(4_000);
  const killedAt = Date.now();
  await redis.kill();
  await sleep(5_000);
  await redis.start();
  const restartedAt = Date.now();
  const duringOutage = mergeReports(...runs.map((r) => r.window(killedAt, restartedAt)));
  let backAfterMs = Number.NaN;
  for (;;) {
    const [sa, sb] = await Promise.all([gatewayStatus(a.adminUrl), gatewayStatus(b.adminUrl)]);
    if (sa.cache.l2State === 'up' && sb.cache.l2State === 'up') {
      backAfterMs = Date.now() - restartedAt;
      break;
    }
    if (Date.now() - restartedAt > 30_000)
      throw new Error(`L2 still ${sa.cache.l2State}/${sb.cache.l2State}`);
    await sleep(100);
  }
  const [ra, rb] = (await Promise.all(runs.map((r) => r.done))) as [LoadReport, LoadReport];

  // L2 back: a session validated on A is an L2 hit on B, with no validation there.
  const fresh = await world.django.createUser({ username: 'redis-bus', password: 'redis-bus-password' });
  const login = await world.django.login(fresh.username);
  const before = await gatewayStatus(b.adminUrl);
  expect((await call(`${a.url}/api/users/self`, { headers: { cookie: login.cookie } })).status).toBe(200);
  expect((await call(`${b.url}/api/users/self`, { headers: { cookie: login.cookie } })).status).toBe(200);
  const afterB = await gatewayStatus(b.adminUrl);
  const l2HitOnB = afterB.cache.l2Hits - before.cache.l2Hits;
  const validatedOnB = afterB.cache.validatorCalls - before.cache.validatorCalls;

  // Bus back: logging out through A evicts the session from B's in-process cache.
  const logout = await call(`${a.url}/api/auth/logout`, { method: 'POST', headers: login.headers });
  await sleep(1_000); // the bus's message to B (a loaded machine may take a while); L1 keeps 5 s
  const beforeStale = await gatewayStatus(b.adminUrl);
  const stale = await call(`${b.url}/api/users/self`, { headers: { cookie: login.cookie } });
  const afterStale = await gatewayStatus(b.adminUrl);
  const servedFromL1 = afterStale.cache.l1Hits - beforeStale.cache.l1Hits;

  const total = mergeReports(ra, rb);
  const survived =
    total.ok === total.sent &&
    duringOutage.ok > 0 &&
    total.lost === 0 &&
    !a.exit &&
    !b.exit &&
    l2HitOnB === 1 &&
    validatedOnB === 0;
  recordScenario({
    group: 'fault',
    scenario: 'Redis killed, restarted',
    fault: 'SIGKILL Redis for 5 s under load on 2 gateways',
    survived: survived && logout.status < 300 && stale.status === 401 && servedFromL1 === 0,
    load: total,
    notes: `${duringOutage.ok} served while Redis was down; L2 up ${(backAfterMs / 1000).toFixed(1)} s after restart; L2 hit across gateways; logout evicted remotely`,
  });

  expect(total.lost).toBe(0);
  expect({
    errors: total.byError,
    other: total.byOther,
    shed: total.byShedCode,
    unauthorized: total.unauthorized,
  }).toEqual({
    errors: {},
    other: {},
    shed: {},
    unauthorized: 0,
  });
  expect(total.ok).toBe(total.sent);
  expect(duringOutage.ok).toBeGreaterThan(0);
  expect(a.exit).toBeUndefined();
  expect(b.exit).toBeUndefined();
  expect(l2HitOnB).toBe(1);
  expect(validatedOnB).toBe(0);
  expect(logout.status).toBeLessThan(300);
  expect(stale.status).toBe(401);
  expect(servedFromL1).toBe(0);
});
