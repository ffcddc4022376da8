// PostgreSQL crashes (every server process SIGKILLed) under steady load and comes back after
// crash recovery: the gateway must not crash, requests that needed the database while it was
// gone get a clean 503 with Retry-After, and full service returns by itself.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runLoad, startLoad } from '../support/src/index.ts';
import { type GatewayProcess, spawnGateway } from './lib/gateway-process.ts';
import { recordScenario } from './lib/report.ts';
import { call, sleep } from './lib/util.ts';
import { startWorld, userTraffic, type World } from './lib/world.ts';

let world: World;
let gateway: GatewayProcess;

beforeAll(async () => {
  world = await startWorld({ users: 4, sessions: 3 });
  gateway = await spawnGateway({
    gateway: {
      upstream: world.upstream.url,
      databaseUrl: world.databaseUrl,
      secretKey: world.django.secretKey,
      dbBudget: 10,
      monitorIntervalMs: 1_000,
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  await world?.stop();
});

test('PostgreSQL crashed and restarted under load: no crash, clean 503s, full service after', async () => {
  const traffic = userTraffic(world);
  const run = startLoad({
    target: gateway.url,
    concurrency: 16,
    maxRequests: 10_000,
    durationMs: 22_000,
    ratePerSecond: 40,
    timeoutMs: 20_000,
    request: traffic,
  });
  await sleep(4_000);
  const downAt = Date.now();
  await world.pg.kill();
  await sleep(4_000);
  await world.pg.start();
  const upAt = Date.now();
  // Service is back once a request that needs the database (a fresh session) succeeds.
  const fresh = await world.django.createUser({ username: 'pg-after', password: 'pg-after-password' });
  const login = await world.django.login(fresh.username);
  let recoveredAfterMs = Number.NaN;
  for (;;) {
    const r = await call(`${gateway.url}/api/users/self`, { headers: { cookie: login.cookie } });
    if (r.status === 200) {
      recoveredAfterMs = Date.now() - upAt;
      break;
    }
    if (Date.now() - upAt > 30_000)
      throw new Error(`no full service 30 s after the restart: ${r.status} ${r.body}`);
    await sleep(200);
  }
  const report = await run.done;
  const outage = run.window(downAt, upAt + recoveredAfterMs);
  // Full service after: every request of a fresh run is answered 2xx.
  const after = await runLoad({
    target: gateway.url,
    concurrency: 8,
    maxRequests: 2_000,
    durationMs: 4_000,
    ratePerSecond: 40,
    request: traffic,
  });

  const clean = report.other === 0 && report.errors === 0 && report.unauthorized === 0 && report.lost === 0;
  recordScenario({
    group: 'fault',
    scenario: 'PostgreSQL crashed, restarted',
    fault: 'SIGKILL every PostgreSQL process for 4 s under load',
    survived: clean && !gateway.exit && after.ok === after.sent && outage.shed > 0,
    load: report,
    notes: `outage: ${outage.ok} ok, ${outage.shed} clean 503 (${Object.keys(outage.byShedCode).join(', ')}), other ${JSON.stringify(outage.byOther)}; full service ${(recoveredAfterMs / 1000).toFixed(1)} s after restart; after: ${after.ok}/${after.sent} ok`,
  });

  expect(gateway.exit).toBeUndefined();
  expect(report.lost).toBe(0);
  expect({ errors: report.byError, other: report.byOther, unauthorized: report.unauthorized }).toEqual({
    errors: {},
    other: {},
    unauthorized: 0,
  });
  expect(outage.shed).toBeGreaterThan(0);
  expect(after.ok).toBe(after.sent);
});
