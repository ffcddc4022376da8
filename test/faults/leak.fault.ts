// The seed's incident replayed: exports whose downloads leak their database connection now and
// then (idle, `cvat:server`, last query the session lookup), on a PostgreSQL whose own
// `max_connections` is small. Straight at Django the leaks fill the server until it answers
// "too many clients"; through the gateway, on its defaults plus the database URL, every task
// finishes and the role never holds more connections than the gateway budgets: its ceiling
// shrinks by the leaked connections and its reaper ends them.
import { afterAll, beforeAll, expect, test } from 'vitest';
import {
  type ConnectionSampler,
  sampleConnections,
} from '../../examples/bulk-export/demo/connection-sampler.ts';
import { type BulkExportReport, runBulkExport } from '../../examples/bulk-export/src/index.ts';
import {
  CVAT_SERVER_APPLICATION_NAME,
  type DjangoFixture,
  freePort,
  type OwnPostgres,
  startDjangoOnOwnPostgres,
  startOwnPostgres,
} from '../support/src/index.ts';
import { type GatewayProcess, spawnGateway } from './lib/gateway-process.ts';
import { recordScenario, writeArtifact } from './lib/report.ts';
import { sleep } from './lib/util.ts';

/** The cluster's `max_connections`: Django's plain role gets 3 fewer ("too many clients" past 27). */
const MAX_CONNECTIONS = 30;
const SUPERUSER_RESERVED = 3;
/** The gateway's default `--db-reserve`: its budget for the upstream's role is what is left. */
const DB_RESERVE = 10;
const BUDGET = MAX_CONNECTIONS - SUPERUSER_RESERVED - DB_RESERVE;
/**
 * How far the role's connections (sampled every 50 ms) may pass the budget: in at most 5% of the
 * samples, and never into the half of the reserve that others (workers, psql) always keep.
 */
const BUDGET_SLACK = { samples: 0.05, connections: DB_RESERVE / 2 };
const ROLE = 'cvat';
const TASKS = 100;
const LEAK_EVERY = 4;
const USERS = 3;
const PASSWORD = 'leak-password-1';

let cluster: OwnPostgres;
let django: DjangoFixture;
let databaseUrl: string;
let gateway: GatewayProcess | undefined;

beforeAll(async () => {
  cluster = await startOwnPostgres({ maxConnections: MAX_CONNECTIONS });
  const started = await startDjangoOnOwnPostgres(cluster, {
    role: ROLE,
    label: 'leak',
    threads: 32,
    workMs: 50,
    exportMs: 200,
    exportBytes: 4096,
    leakEvery: LEAK_EVERY,
    applicationName: CVAT_SERVER_APPLICATION_NAME,
    users: Array.from({ length: USERS }, (_, i) => ({ username: `leak${i}`, password: PASSWORD })),
    // Refused, not slow: a loaded machine may take seconds to open a connection.
    env: { SLUICE_FIXTURE_DB_CONNECT_TIMEOUT: '10' },
  });
  django = started.django;
  databaseUrl = started.databaseUrl;
});

afterAll(async () => {
  await gateway?.close();
  await django?.stop();
  await cluster?.stop();
});

/** The gateway's admission figures every 100 ms (`limit/ceiling inFlight+queued`), for the artifact. */
function sampleAdmission(statusUrl: string): { stop(): Promise<{ t: number; admission: string }[]> } {
  const points: { t: number; admission: string }[] = [];
  const started = Date.now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const res = await fetch(statusUrl).catch(() => undefined);
      const s = (await res?.json().catch(() => undefined)) as
        | { admission: { limit: number; ceiling: number; inFlight: number; queued: number } }
        | undefined;
      const a = s?.admission;
      if (a)
        points.push({
          t: Date.now() - started,
          admission: `${a.limit}/${a.ceiling} ${a.inFlight}+${a.queued}`,
        });
      await sleep(100);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return points;
    },
  };
}

/** Django's role's connections every 50 ms, through the superuser (not counted against the role). */
const sampleRole = (): Promise<ConnectionSampler> =>
  sampleConnections({ adminUrl: cluster.url(), role: ROLE, intervalMs: 50 });

const exportsAt = (baseUrl: string, signal?: AbortSignal): Promise<BulkExportReport> =>
  runBulkExport({
    baseUrl,
    credential: Array.from({ length: USERS }, (_, i) => ({
      kind: 'login' as const,
      username: `leak${i}`,
      password: PASSWORD,
      use: 'session' as const,
    })),
    tasks: TASKS,
    concurrency: 30,
    pollIntervalMs: 100,
    maxPolls: 200,
    requestTimeoutMs: 20_000,
    deadlineMs: 40_000,
    ...(signal ? { signal } : {}),
  });

test('leaking downloads: direct runs out of connections, the gateway on its defaults loses nothing', async () => {
  // Straight at Django: the leaks pile up until PostgreSQL refuses the role.
  // PostgreSQL's refusal of a plain role at max_connections - superuser_reserved_connections (at
  // max_connections itself: "sorry, too many clients already"), as the server logs it.
  // Once it has refused connections for a second, direct has made its point: the run stops.
  let refusals = 0;
  const enough = new AbortController();
  const unsubscribe = cluster.onLog((line) => {
    if (!/FATAL: .*(too many clients|remaining connection slots are reserved)/.test(line)) return;
    refusals += 1;
    if (refusals === 1) setTimeout(() => enough.abort(), 1000);
  });
  const directRole = await sampleRole();
  const direct = await exportsAt(django.url, enough.signal);
  await directRole.stop();
  const directPeak = directRole.peak;
  const directLeaks = await django.leaks();
  const refused = refusals;
  expect(direct.failuresByKind.http, 'direct should fail on "too many clients"').toBeGreaterThan(0);
  expect(refused, direct.sampleErrors.join('\n')).toBeGreaterThan(0);
  await django.closeLeaks();

  // Through the gateway: its defaults, told only where Django and its database are.
  const adminPort = await freePort();
  gateway = await spawnGateway({
    gateway: {
      upstream: django.url,
      databaseUrl,
      secretKey: django.secretKey,
      adminListen: `127.0.0.1:${adminPort}`,
    },
  });
  const leaksBefore = (await django.leaks()).downloads;
  const role = await sampleRole();
  const admission = sampleAdmission(`http://127.0.0.1:${adminPort}/sluice/status.json`);
  const through = await exportsAt(gateway.url);
  const points = await role.stop();
  const { peak } = role;
  const samples = points.length;
  const gatewayPoints = await admission.stop();
  unsubscribe();
  const refusedThrough = refusals - refused;
  const leaks = await django.leaks();
  const leaked = Math.floor(leaks.downloads / LEAK_EVERY) - Math.floor(leaksBefore / LEAK_EVERY);
  const status = (await (await fetch(`http://127.0.0.1:${adminPort}/sluice/status.json`)).json()) as {
    database: { reaped: number | null };
  };
  const reaped = status.database.reaped ?? 0;
  writeArtifact('leak-replay.json', {
    direct,
    directPeak,
    directLeaks,
    through,
    peak,
    points,
    gatewayPoints,
    leaks,
    reaped,
  });

  // The budget holds but for moments: the gateway learns of a leak or of a connection still
  // closing after its request (Django closes it at the pace of its threads) only at its next
  // sample, and requests admitted meanwhile open theirs. Those moments are short and few; leaks
  // piling up are neither.
  const over = points.filter((p) => p.total > BUDGET).length;
  const withinBudget =
    over <= Math.ceil(samples * BUDGET_SLACK.samples) && peak <= BUDGET + BUDGET_SLACK.connections;
  const clean = through.failed === 0 && through.succeeded === TASKS && withinBudget;
  recordScenario({
    group: 'fault',
    scenario: 'leaking downloads (the seed)',
    fault: `one download in ${LEAK_EVERY} never closes its connection; max_connections ${MAX_CONNECTIONS}`,
    survived: clean && refused > 0 && refusedThrough === 0 && !gateway.exit,
    notes:
      `direct: ${direct.failuresByKind.http ?? 0} tasks failed (500) once ${refused} connections were refused at ${directPeak}; ` +
      `gateway (defaults + DATABASE_URL): ${through.succeeded}/${TASKS} tasks in ${(through.durationMs / 1000).toFixed(1)} s, ` +
      `${leaked} leaked, ${reaped} reaped, role peak ${peak} / budget ${BUDGET}, above it in ${over} of ${samples} samples`,
  });

  expect(gateway.exit).toBeUndefined();
  expect({ failed: through.failed, byStage: through.failuresByStage }).toEqual({ failed: 0, byStage: {} });
  expect(through.succeeded).toBe(TASKS);
  expect(refusedThrough).toBe(0);
  // More leaked than the budget holds: only reaping them kept the role under it.
  expect(leaked).toBeGreaterThan(BUDGET);
  expect(reaped).toBeGreaterThan(0);
  expect(peak, 'peak of the role').toBeLessThanOrEqual(BUDGET + BUDGET_SLACK.connections);
  expect(over / samples, 'share of samples above the budget').toBeLessThanOrEqual(BUDGET_SLACK.samples);
});
