// One run of the incident benchmark: a fresh PostgreSQL cluster of its own (`initdb`, the
// scenario's `max_connections`, so "too many clients" is the server's real limit and the gateway
// sizes itself from what it reads there), the Django fixture on it, PgBouncer and the gateway as
// the setup asks, the bulk exports and the interactive user at once, Django's role's connections
// and the gateway's admission figures sampled throughout; everything it started is stopped
// before it returns.
import {
  CVAT_SERVER_APPLICATION_NAME,
  type DjangoFixture,
  type DjangoLeaks,
  freePort,
  type LoadReport,
  type OwnPgBouncer,
  type OwnPostgres,
  startDjangoOnOwnPostgres,
  startLoad,
  startOwnPostgres,
  startPgBouncer,
} from '@sluice/test-support';
import { type ConnectionPoint, sampleConnections } from '../demo/connection-sampler.js';
import { type GatewayProcess, startGateway } from '../demo/gateway-process.js';
import { type BulkExportCredential, type BulkExportReport, runBulkExport } from '../src/index.js';
import { type CpuUse, measureCpu } from './cpu.js';
import { gatewayArgs } from './gateway-flags.js';
import { type GatewayPoint, sampleGatewayStatus } from './gateway-status.js';
import { type IncidentSettings, SETUPS, type SetupName, VARIANTS, type VariantName } from './scenario.js';

/** What one run measured. */
export interface RunResult {
  setup: SetupName;
  variant: VariantName;
  /** Set when the run could not start (then the measurements are empty). */
  error?: string | undefined;
  bulk?: BulkExportReport;
  interactive?: LoadReport;
  /** Django's role's connections, every `sampleMs`. */
  points: ConnectionPoint[];
  /** The most connections of the role at once (Django's, PgBouncer's and the gateway's pool). */
  peakConnections: number;
  /** The gateway's admission figures, every `sampleMs` (gateway setups). */
  gateway: GatewayPoint[];
  /** CPU seconds by part while the load ran (Linux; undefined elsewhere). */
  cpu?: CpuUse | undefined;
  /** The leak mode's gauge at the end (leak variant). */
  leaks?: DjangoLeaks | undefined;
  /** The first errors the bulk client saw. */
  sampleErrors: string[];
  /** Seconds spent starting the servers, and stopping them (and dropping the database). */
  overheadSeconds: { start: number; stop: number };
}

const PASSWORD = 'incident-password-1';
const VIEWER = 'viewer';
/** Django's database user on the cluster: a plain role, as CVAT's. */
const ROLE = 'cvat';

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
  let cluster: OwnPostgres | undefined;
  let django: DjangoFixture | undefined;
  let bouncer: OwnPgBouncer | undefined;
  let gateway: GatewayProcess | undefined;
  const result: RunResult = {
    setup,
    variant,
    points: [],
    peakConnections: 0,
    gateway: [],
    sampleErrors: [],
    overheadSeconds: { start: 0, stop: 0 },
  };
  const began = performance.now();
  let stopping = 0;
  try {
    cluster = await startOwnPostgres({ maxConnections: s.maxConnections });
    // PgBouncer routes every database name to the cluster and opens nothing before a client asks.
    if (shape.pgbouncer) {
      bouncer = await startPgBouncer({
        databaseUrl: `postgres://${ROLE}@${cluster.host}:${cluster.port}/postgres`,
        poolSize: s.poolSize,
        maxClientConn: 1000,
      });
    }
    const started = await startDjangoOnOwnPostgres(cluster, {
      role: ROLE,
      label: 'incident',
      threads: s.threads,
      workMs: v.heavy ? s.heavyWorkMs : s.workMs,
      workMode: v.workMode,
      exportMs: s.exportMs,
      exportBytes: s.exportBytes,
      applicationName: CVAT_SERVER_APPLICATION_NAME,
      leakEvery: v.leaks ? s.leakEvery : 0,
      users: [
        ...Array.from({ length: s.logins }, (_, i) => ({ username: `bulk${i + 1}`, password: PASSWORD })),
        { username: VIEWER, password: PASSWORD },
      ],
      ...(bouncer ? { databaseHost: '127.0.0.1', databasePort: bouncer.port } : {}),
      // Refused, not slow: on a busy machine opening a connection may take seconds.
      env: { SLUICE_FIXTURE_DB_CONNECT_TIMEOUT: '10' },
    });
    django = started.django;
    let adminUrl: string | undefined;
    if (shape.gateway) {
      const adminPort = await freePort();
      adminUrl = `http://127.0.0.1:${adminPort}`;
      gateway = await startGateway(
        gatewayArgs({
          upstream: django.url,
          // Django's own database URL: the cluster, or PgBouncer in front of it.
          databaseUrl:
            bouncer && shape.gatewayDbOnPgBouncer
              ? `postgres://${ROLE}@127.0.0.1:${bouncer.port}/${started.databaseName}`
              : started.databaseUrl,
          secretKey: django.secretKey,
          upstreamApplicationName: CVAT_SERVER_APPLICATION_NAME,
          adminListen: `127.0.0.1:${adminPort}`,
          dbBudget: s.budget === 0 ? undefined : s.budget,
          // Django goes through PgBouncer but the gateway's URL does not: it is told where
          // PgBouncer is, or it would take PgBouncer's idle server connections for leaks.
          pgbouncerAdminUrl: bouncer && !shape.gatewayDbOnPgBouncer ? bouncer.adminUrl : undefined,
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

    const maxPoints = Math.ceil((s.runDeadlineMs + 30_000) / s.sampleMs);
    const sampler = await sampleConnections({
      adminUrl: cluster.url('postgres'),
      role: ROLE,
      intervalMs: s.sampleMs,
      maxPoints,
    });
    const status = adminUrl
      ? sampleGatewayStatus({ adminUrl, intervalMs: Math.max(250, s.sampleMs), maxPoints })
      : undefined;
    const cpu =
      process.platform === 'linux'
        ? measureCpu({
            django: django.pid,
            postgres: cluster.pid,
            pgbouncer: bouncer?.pid,
            gateway: gateway?.pid,
          })
        : undefined;
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
      result.cpu = cpu?.stop();
      result.points = await sampler.stop();
      result.peakConnections = sampler.peak;
      result.gateway = (await status?.stop()) ?? [];
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
    await cluster?.stop().catch(() => undefined);
    result.overheadSeconds.stop = (performance.now() - stopping) / 1000;
  }
  return result;
}
