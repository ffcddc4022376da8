// The upstream (the Django fixture, behind a relay the suite can kill or stall) dies under load,
// then comes back; later it stalls. The breaker must open and reject fast, recover by itself
// through half-open; stalled requests must time out and give their slots back, in bounded memory.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runLoad, startLoad } from '../support/src/index.ts';
import { type GatewayProcess, spawnGateway } from './lib/gateway-process.ts';
import { recordScenario } from './lib/report.ts';
import { gatewayStatus, sampler, sleep } from './lib/util.ts';
import { startWorld, userTraffic, type World } from './lib/world.ts';

let world: World;
let gateway: GatewayProcess;
const HEADERS_TIMEOUT_MS = 1_500;

beforeAll(async () => {
  world = await startWorld({ users: 4, sessions: 2 });
  gateway = await spawnGateway({
    gateway: {
      upstream: world.upstream.url,
      databaseUrl: world.databaseUrl,
      secretKey: world.django.secretKey,
      dbBudget: 8,
      queueTimeoutMs: 4_000,
      upstreamHeadersTimeoutMs: HEADERS_TIMEOUT_MS,
      upstreamConnectTimeoutMs: 1_000,
    },
    sampleMs: 250,
  });
});

afterAll(async () => {
  await gateway?.close();
  await world?.stop();
});

// One retry: a passing hiccup (a collection, a busy core) can still fail the p99 check with
// nothing wrong. The state it leaves is what it starts from (upstream back, breaker closed),
// and every attempt is reported.
let killAttempt = 0;
test('upstream killed, then restarted: the breaker opens, rejects fast, and recovers through half-open', {
  retry: 1,
}, async () => {
  killAttempt += 1;
  const states = sampler(async () => (await gatewayStatus(gateway.adminUrl)).breaker, 25);
  // The baseline: a bare request, which the gateway answers itself (no credential, admission,
  // breaker or upstream), probed all along so it shares the rejections' machine and moment.
  const bareProbes = sampler(async () => (await fetch(`${gateway.url}/healthz`)).arrayBuffer(), 40);
  const run = startLoad({
    target: gateway.url,
    concurrency: 16,
    maxRequests: 10_000,
    durationMs: 26_000,
    ratePerSecond: 40,
    request: userTraffic(world),
  });
  await sleep(3_000);
  const killedAt = Date.now();
  await world.upstream.kill();
  await sleep(8_000);
  await world.upstream.start();
  const restartedAt = Date.now();
  let closedAfterMs = Number.NaN;
  for (;;) {
    if ((await gatewayStatus(gateway.adminUrl)).breaker === 'closed') {
      closedAfterMs = Date.now() - restartedAt;
      break;
    }
    if (Date.now() - restartedAt > 20_000)
      throw new Error('the breaker did not close 20 s after the upstream came back');
    await sleep(50);
  }
  const report = await run.done;
  const seen = await states.stop();
  await bareProbes.stop();
  // The gateway's own record of its breaker's changes: a half-open window can be shorter than a
  // sample's interval (it ends with the next request's trial). Samples back it up should the
  // record (the last 20 changes) no longer reach back to the kill.
  const changes = (await gatewayStatus(gateway.adminUrl)).changes.filter(
    (c) => c.what === 'breaker' && c.at >= killedAt,
  );
  const firstOpenAt = Math.min(
    seen.find((s) => s.value === 'open' && s.at >= killedAt)?.at ?? Number.POSITIVE_INFINITY,
    changes.find((c) => c.to === 'open')?.at ?? Number.POSITIVE_INFINITY,
  );
  const halfOpens = Math.max(
    seen.filter((s, i) => s.value === 'half-open' && seen[i - 1]?.value !== 'half-open').length,
    changes.filter((c) => c.to === 'half-open').length,
  );
  const records = run.records();
  // Rejections of requests that arrived while the breaker was open. A request queued for a slot
  // before it opened is refused too once it gets one, but its time is mostly the wait in the queue.
  const fastRejections = records.filter(
    (r) => r.kind === 'shed' && r.detail === 'E_CIRCUIT_OPEN' && r.startedAt >= firstOpenAt,
  );
  const clientSide = latency(fastRejections.map((r) => r.endedAt - r.startedAt));
  // The gateway's own time for its 503s while the breaker was open (the client's figure also
  // holds the time both processes waited for a CPU on a busy machine), and for the bare
  // requests it answered in the same window.
  const whileOpen = (await gateway.accessLog(killedAt)).filter(
    (e) => e.at - e.durationMs >= firstOpenAt && e.at <= restartedAt,
  );
  const serverSide = latency(
    whileOpen.filter((e) => e.status === 503 && e.route !== '/healthz').map((e) => e.durationMs),
  );
  const bareTimes = whileOpen.filter((e) => e.route === '/healthz').map((e) => e.durationMs);
  const bare = latency(bareTimes);
  // Refusing is more work than a bare answer (credential, cache, admission, breaker, a JSON
  // error), and a p99 of a few hundred requests on a busy machine is one unlucky wait for a core:
  // twice the bare p99 plus 5 ms. What the check is for (a rejection waiting on the dead
  // upstream: a 1 s connect timeout, a 4 s queue) is hundreds of times that.
  const rejectBoundMs = 2 * bare.p99 + 5;
  const failedBeforeOpen = records.filter((r) => r.status === 502 && r.startedAt < firstOpenAt).length;
  const failedWhileOpen = records.filter((r) => r.status === 502 && r.startedAt >= firstOpenAt + 100).length;
  const recoveredAt = restartedAt + closedAfterMs;
  const tail = run.window(recoveredAt + 500, Date.now());
  const opened = Number.isFinite(firstOpenAt);
  // A response already streaming when the upstream died can only be cut: those requests (in
  // flight at the kill) may end without an answer; no other request may.
  const cut = records.filter((r) => r.kind === 'error' && r.startedAt <= killedAt && r.endedAt >= killedAt);
  const unanswered = records.filter((r) => r.kind === 'error').length - cut.length;

  recordScenario({
    group: 'fault',
    scenario: 'upstream killed, restarted',
    attempt: killAttempt,
    fault: 'upstream connections reset and refused for 8 s under load',
    survived:
      opened &&
      serverSide.p99 < rejectBoundMs &&
      failedWhileOpen <= halfOpens + 1 &&
      tail.ok === tail.sent &&
      report.lost === 0 &&
      unanswered === 0 &&
      !gateway.exit,
    load: report,
    notes: `${cut.length} responses cut by the kill; breaker open ${((firstOpenAt - killedAt) / 1000).toFixed(1)} s after the kill (${failedBeforeOpen} x 502 before), ${halfOpens} half-open trials, closed ${(closedAfterMs / 1000).toFixed(1)} s after restart; ${fastRejections.length} rejections: gateway p50 ${serverSide.p50.toFixed(2)} ms / p99 ${serverSide.p99.toFixed(2)} ms (bare request p99 ${bare.p99.toFixed(2)} ms, ${bareTimes.length} probes), client p50 ${clientSide.p50.toFixed(1)} ms / p99 ${clientSide.p99.toFixed(1)} ms`,
  });

  expect(report.lost).toBe(0);
  expect(unanswered).toBe(0);
  expect(opened).toBe(true);
  expect(halfOpens).toBeGreaterThan(0);
  expect(fastRejections.length).toBeGreaterThan(20);
  expect(bareTimes.length).toBeGreaterThan(20);
  expect(serverSide.p99).toBeLessThan(rejectBoundMs);
  // once open, only half-open trials reach the dead upstream
  expect(failedWhileOpen).toBeLessThanOrEqual(halfOpens + 1);
  expect(Object.keys(report.byOther)).toEqual(['502']);
  expect(tail.sent).toBeGreaterThan(0);
  expect(tail.ok).toBe(tail.sent);
  expect(gateway.exit).toBeUndefined();
});

test('upstream stalls: timeouts fire, slots come back, memory stays bounded', async () => {
  // a fresh breaker window
  await sleep(11_000);
  const baseline = await runLoad({
    target: gateway.url,
    concurrency: 4,
    maxRequests: 200,
    durationMs: 3_000,
    ratePerSecond: 30,
    request: userTraffic(world),
  });
  const rssBefore = Math.max(...gateway.samples.slice(-8).map((s) => s.rss));
  const run = startLoad({
    target: gateway.url,
    concurrency: 40,
    maxRequests: 10_000,
    durationMs: 18_000,
    ratePerSecond: 60,
    timeoutMs: 20_000,
    request: userTraffic(world),
  });
  await sleep(2_000);
  const stalledAt = Date.now();
  world.upstream.stall(true);
  await sleep(6_000);
  world.upstream.stall(false);
  const releasedAt = Date.now();
  const report = await run.done;
  const during = gateway.samples.filter((s) => s.at >= stalledAt && s.at <= releasedAt + 2_000);
  const stall = run.window(stalledAt, releasedAt);
  // slots come back: nothing in flight or queued once the load is over
  await sleep(500);
  const idle = await gatewayStatus(gateway.adminUrl);
  // and the service is whole again
  await sleep(10_000); // the breaker's reset timeout, should it have opened
  const after = await runLoad({
    target: gateway.url,
    concurrency: 8,
    maxRequests: 500,
    durationMs: 4_000,
    ratePerSecond: 40,
    request: userTraffic(world),
  });
  const rssPeak = Math.max(...during.map((s) => s.rss));
  const growthMb = (rssPeak - rssBefore) / 2 ** 20;
  // Timeouts of requests that were waiting on the stalled upstream, whenever they were sent: on
  // a loaded machine the first ones to time out can be requests sent just before the stall,
  // after which the breaker may refuse the rest (nothing times out while the upstream answers).
  const timeouts = run.records().filter((r) => r.status === 504 && r.endedAt >= stalledAt).length;

  recordScenario({
    group: 'fault',
    scenario: 'upstream stalls',
    fault: `upstream answers nothing for 6 s (headers timeout ${HEADERS_TIMEOUT_MS} ms)`,
    survived:
      timeouts > 0 &&
      idle.admission.inFlight === 0 &&
      idle.admission.queued === 0 &&
      after.ok === after.sent &&
      growthMb < 64 &&
      report.errors === 0 &&
      report.lost === 0,
    load: report,
    notes: `whole run ${JSON.stringify(report.byStatus)}; during the stall: ${timeouts} x 504, ${stall.shed} clean 503 (${Object.keys(stall.byShedCode).join(', ')}); after: in flight ${idle.admission.inFlight}, queued ${idle.admission.queued}; RSS +${growthMb.toFixed(1)} MB; baseline ${baseline.ok}/${baseline.sent} ok, after ${after.ok}/${after.sent} ok`,
  });

  expect(baseline.ok).toBe(baseline.sent);
  expect(report.lost).toBe(0);
  expect(report.byError).toEqual({});
  expect(timeouts).toBeGreaterThan(0);
  expect(Object.keys(report.byOther).every((k) => k === '504' || k === '502')).toBe(true);
  expect(idle.admission.inFlight).toBe(0);
  expect(idle.admission.queued).toBe(0);
  expect(growthMb).toBeLessThan(64);
  expect(after.ok).toBe(after.sent);
  expect(gateway.exit).toBeUndefined();
});

function latency(values: number[]): { p50: number; p99: number } {
  const sorted = values.sort((a, b) => a - b);
  const at = (p: number): number =>
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
  return { p50: at(50), p99: at(99) };
}
