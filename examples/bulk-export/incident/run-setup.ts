// One run of the incident benchmark: a fresh Django fixture (same configuration every time),
// PgBouncer and the gateway as the setup asks, the bulk exports and the interactive user at once,
// the role's connections sampled throughout; everything it started is stopped before it returns.
import {
  CVAT_SERVER_APPLICATION_NAME,
  type DjangoFixture,
  type DjangoLeaks,
  freePort,
  type LoadReport,
  pgUrl,
  startDjango,
  startLoad,
} from '@sluice/test-support';
import { type ConnectionPoint, sampleConnections } from '../demo/connection-sampler.js';
import { type GatewayProcess, startGateway } from '../demo/gateway-process.js';
import { type BulkExportCredential, type BulkExportReport, runBulkExport } from '../src/index.js';
import { gatewayArgs } from './gateway-flags.js';
import { type PgBouncer, startPgBouncer } from './pgbouncer.js';
import { type IncidentSettings, SETUPS, type SetupName, VARIANTS, type VariantName } from './scenario.js';

/** What one run measured. */
export interface RunResult {
  setup: SetupName;
  variant: VariantName;
  /** Set when the run could not start (then the measurements are empty). */
  error?: string | undefined;
  bulk?: BulkExportReport;
  interactive?: LoadReport;
  /** The role's connections, every `sampleMs`. */
  points: ConnectionPoint[];
  /** The most connections of the role at once (Django's, PgBouncer's and the gateway's pool). */
  peakConnections: number;
  /** The leak mode's gauge at the end (leak variant). */
  leaks?: DjangoLeaks | undefined;
  /** The first errors the bulk client saw. */
  sampleErrors: string[];
  /** Seconds spent starting the servers, and stopping them (and dropping the database). */
  overheadSeconds: { start: number; stop: number };
}

const PASSWORD = 'incident-password-1';
const VIEWER = 'viewer';

/** Runs one setup under one variant. Never throws for what the servers do; `signal` stops it early. */
export async function runSetup(
  s: IncidentSettings,
  setup: SetupName,
  variant: VariantName,
  o: { signal?: AbortSignal; log?: (line: string) => void } = {},
): Promise<RunResult> {
  const log = o.log ?? (() => undefined);
  const shape = SETUPS[setup];
  const v = VARIANTS[variant];
  let django: DjangoFixture | undefined;
  let bouncer: PgBouncer | undefined;
  let gateway: GatewayProcess | undefined;
  const result: RunResult = {
    setup,
    variant,
    points: [],
    peakConnections: 0,
    sampleErrors: [],
    overheadSeconds: { start: 0, stop: 0 },
  };
  const began = performance.now();
  let stopping = 0;
  try {
    const bouncerPort = shape.pgbouncer ? await freePort() : undefined;
    django = await startDjango({
      label: 'incident',
      threads: s.threads,
      workMs: v.heavy ? s.heavyWorkMs : s.workMs,
      workMode: v.workMode,
      exportMs: s.exportMs,
      exportBytes: s.exportBytes,
      connectionLimit: s.roleLimit,
      applicationName: CVAT_SERVER_APPLICATION_NAME,
      leakEvery: v.leaks ? s.leakEvery : 0,
      users: [
        ...Array.from({ length: s.logins }, (_, i) => ({ username: `bulk${i + 1}`, password: PASSWORD })),
        { username: VIEWER, password: PASSWORD },
      ],
      // Django connects to nothing before its first request: PgBouncer can start just after.
      ...(bouncerPort === undefined ? {} : { databaseHost: '127.0.0.1', databasePort: bouncerPort }),
    });
    const database = { name: django.database.name, user: django.database.user };
    if (bouncerPort !== undefined) {
      bouncer = await startPgBouncer({ databases: [database], poolSize: s.poolSize, port: bouncerPort });
    }
    if (shape.gateway) {
      gateway = await startGateway(
        gatewayArgs({
          upstream: django.url,
          databaseUrl:
            bouncer && shape.gatewayDbOnPgBouncer
              ? bouncer.url(database)
              : pgUrl(database.name, database.user),
          secretKey: django.secretKey,
          dbBudget: s.budget,
          upstreamApplicationName: CVAT_SERVER_APPLICATION_NAME,
        }),
      );
    }
    const baseUrl = gateway?.url ?? django.url;
    // The interactive user logged in earlier (in the browser): its session and the cookies a
    // browser keeps.
    const viewer = await django.login(VIEWER);
    const cookie = `${viewer.cookie}; sessionfresh=1`;
    if (o.signal?.aborted) throw new Error('stopped');
    result.overheadSeconds.start = (performance.now() - began) / 1000;

    const sampler = await sampleConnections({
      adminUrl: pgUrl('postgres'),
      role: database.user,
      intervalMs: s.sampleMs,
      maxPoints: Math.ceil((s.runDeadlineMs + 30_000) / s.sampleMs),
    });
    const interactive = startLoad({
      target: baseUrl,
      concurrency: 1,
      ratePerSecond: s.interactiveRate,
      maxRequests: Math.ceil((s.interactiveRate * s.runDeadlineMs) / 1000) + 1,
      durationMs: s.runDeadlineMs,
      timeoutMs: s.requestTimeoutMs,
      request: (i) => ({ path: i % 2 === 0 ? '/api/users/self' : '/api/tasks', headers: { cookie } }),
    });
    const logins: BulkExportCredential[] = Array.from({ length: s.logins }, (_, i) => ({
      kind: 'login',
      username: `bulk${i + 1}`,
      password: PASSWORD,
      use: 'session',
    }));
    let done = 0;
    const progress = setInterval(() => log(`    ${done}/${s.tasks} tasks done`), 10_000);
    try {
      result.bulk = await runBulkExport({
        baseUrl,
        credential: logins,
        tasks: s.tasks,
        concurrency: s.workers,
        pollIntervalMs: s.pollIntervalMs,
        maxPolls: 1000,
        requestTimeoutMs: s.requestTimeoutMs,
        deadlineMs: s.runDeadlineMs,
        ...(o.signal ? { signal: o.signal } : {}),
        onTaskEnd: (_outcome, p) => {
          done = p.done;
        },
      });
    } finally {
      clearInterval(progress);
      result.interactive = await interactive.stop();
      result.points = await sampler.stop();
      result.peakConnections = sampler.peak;
    }
    result.sampleErrors = result.bulk.sampleErrors;
    if (v.leaks) result.leaks = await django.leaks().catch(() => undefined);
  } catch (e) {
    result.error = e instanceof Error ? e.message.split('\n')[0] : String(e);
  } finally {
    stopping = performance.now();
    await gateway?.stop().catch(() => undefined);
    await bouncer?.stop().catch(() => undefined);
    await django?.stop().catch(() => undefined);
    result.overheadSeconds.stop = (performance.now() - stopping) / 1000;
  }
  return result;
}
