// `pnpm demo`: replays the incident on this machine, then the same load through sluice-gateway.
//
// 1. The real Django fixture (test/django, shaped like CVAT: CONN_MAX_AGE 0, one PostgreSQL
//    connection per request in flight) under gunicorn with more threads than its database role
//    may have connections (a role CONNECTION LIMIT: the shared server's settings stay untouched).
// 2. bulk-export runs cvat_sdk's export pattern for hundreds of tasks at once straight at Django:
//    requests past the limit fail with "too many connections for role".
// 3. The same run through sluice-gateway with a database budget below the role's limit.
// The role's connections are sampled from pg_stat_activity during both runs. Prints a side-by-side
// table; writes .artifacts/demo/connections.svg and .artifacts/demo/report.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type DjangoFixture, pgUrl, startDjango } from '@sluice/test-support';
import { type BulkExportReport, markdownTable, runBulkExport } from '../src/index.js';
import { type ConnectionPoint, sampleConnections, waitForConnections } from './connection-sampler.js';
import { type GatewayProcess, startGateway } from './gateway-process.js';
import { lineChartSvg } from './svg-plot.js';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '300' },
    'connection-limit': { type: 'string', default: '20' },
    threads: { type: 'string', default: '64' },
    'work-ms': { type: 'string', default: '50' },
    'export-ms': { type: 'string', default: '2000' },
    'poll-interval': { type: 'string', default: '500' },
    budget: { type: 'string', default: '14' },
    deadline: { type: 'string', default: '75000' },
    'sample-ms': { type: 'string', default: '100' },
  },
});
const int = (name: keyof typeof values, min: number, max: number): number => {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`--${name} must be an integer from ${min} to ${max}, got ${values[name]}`);
  }
  return v;
};
const settings = {
  tasks: int('tasks', 1, 5000),
  concurrency: int('concurrency', 1, 2000),
  connectionLimit: int('connection-limit', 2, 90),
  threads: int('threads', 1, 256),
  workMs: int('work-ms', 0, 10_000),
  exportMs: int('export-ms', 0, 60_000),
  pollIntervalMs: int('poll-interval', 10, 10_000),
  budget: int('budget', 1, 1000),
  deadlineMs: int('deadline', 1000, 150_000),
  sampleMs: int('sample-ms', 20, 5000),
};
if (settings.budget >= settings.connectionLimit) {
  throw new RangeError(
    `--budget (${settings.budget}) must be below --connection-limit (${settings.connectionLimit})`,
  );
}

const artifacts = fileURLToPath(new URL('../../../.artifacts/demo/', import.meta.url));
const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

interface Run {
  label: string;
  report: BulkExportReport;
  points: ConnectionPoint[];
  peak: number;
  peakDjango: number;
  peakGateway: number;
}

async function measured(label: string, django: DjangoFixture, baseUrl: string, token: string): Promise<Run> {
  const sampler = await sampleConnections({
    adminUrl: pgUrl('postgres'),
    role: django.database.user,
    intervalMs: settings.sampleMs,
  });
  let done = 0;
  const progress = setInterval(() => log(`  ${label}: ${done}/${settings.tasks} tasks done`), 5000);
  try {
    const report = await runBulkExport({
      baseUrl,
      credential: { kind: 'token', token },
      tasks: settings.tasks,
      concurrency: settings.concurrency,
      pollIntervalMs: settings.pollIntervalMs,
      maxPolls: 200,
      requestTimeoutMs: 60_000,
      deadlineMs: settings.deadlineMs,
      onTaskEnd: (_o, p) => {
        done = p.done;
      },
    });
    const points = await sampler.stop();
    const peakOf = (app: (a: string) => boolean): number =>
      Math.max(
        0,
        ...points.map((p) =>
          Object.entries(p.byApplication)
            .filter(([a]) => app(a))
            .reduce((n, [, v]) => n + v, 0),
        ),
      );
    return {
      label,
      report,
      points,
      peak: sampler.peak,
      peakDjango: peakOf((a) => a === ''),
      peakGateway: peakOf((a) => a !== ''),
    };
  } finally {
    clearInterval(progress);
    await sampler.stop();
  }
}

const started = Date.now();
log(
  `Starting the Django fixture: gunicorn gthread with ${settings.threads} threads, database role limited to ` +
    `${settings.connectionLimit} connections, ${settings.workMs} ms of work per request, exports ready after ${settings.exportMs} ms.`,
);
const django = await startDjango({
  connectionLimit: settings.connectionLimit,
  threads: settings.threads,
  workMs: settings.workMs,
  exportMs: settings.exportMs,
  exportBytes: 64 * 1024,
  label: 'demo',
});
let gateway: GatewayProcess | undefined;
const stopAll = async (): Promise<void> => {
  await gateway?.stop();
  await django.stop();
};
process.once('SIGINT', () => {
  stopAll().finally(() => process.exit(130));
});

try {
  const token = django.user('user').token;
  log(
    `\n1/2 direct: ${settings.tasks} tasks, ${settings.concurrency} at once, straight at Django (${django.url})`,
  );
  const direct = await measured('direct', django, django.url, token);
  log(
    `  ${direct.report.succeeded} succeeded, ${direct.report.failed} failed; peak ${direct.peak} connections`,
  );

  const left = await waitForConnections(pgUrl('postgres'), django.database.user, 0, 15_000);
  if (left > 0) log(`  (${left} connections of the role still open after the direct run)`);

  const databaseUrl = pgUrl(django.database.name, django.database.user);
  gateway = await startGateway([
    '--upstream',
    django.url,
    '--database-url',
    databaseUrl,
    '--secret-key',
    django.secretKey,
    '--db-budget',
    String(settings.budget),
    '--queue-max',
    String(Math.max(1000, settings.concurrency * 2)),
    '--queue-timeout',
    '60s',
    '--monitor-interval',
    '1s',
    '--log-level',
    'warn',
  ]);
  log(
    `\n2/2 gateway: the same run through sluice-gateway (${gateway.url}), database budget ${settings.budget}`,
  );
  const viaGateway = await measured('gateway', django, gateway.url, token);
  log(
    `  ${viaGateway.report.succeeded} succeeded, ${viaGateway.report.failed} failed; peak ${viaGateway.peak} connections`,
  );
  await gateway.stop();

  const runs = [direct, viaGateway];
  const entries = (o: Readonly<Record<string, number | undefined>>): string => {
    const list = Object.entries(o).filter(([, v]) => (v ?? 0) > 0);
    return list.length === 0 ? '-' : list.map(([k, v]) => `${k}: ${v}`).join(', ');
  };
  const row = (name: string, f: (r: Run) => string): string[] => [name, ...runs.map(f)];
  const table = markdownTable(
    ['', 'direct to Django', 'through sluice-gateway'],
    [
      row('tasks (at once)', (r) => `${r.report.tasks} (${r.report.concurrency})`),
      row('tasks succeeded / failed', (r) => `${r.report.succeeded} / ${r.report.failed}`),
      row('requests', (r) => String(r.report.requests)),
      row('status codes', (r) => entries(r.report.statusCounts)),
      row('failures by stage', (r) => entries(r.report.failuresByStage)),
      row('connection errors', (r) => entries(r.report.connectionErrors)),
      row(
        `peak DB connections (role limit ${settings.connectionLimit})`,
        (r) => `${r.peak} (Django ${r.peakDjango}, gateway ${r.peakGateway})`,
      ),
      row(
        'throughput',
        (r) =>
          `${r.report.throughput.requestsPerSecond} req/s, ${r.report.throughput.tasksPerSecond} tasks/s`,
      ),
      row(
        'request p50 / p99 (ms)',
        (r) => `${r.report.latencyMs.request.p50} / ${r.report.latencyMs.request.p99}`,
      ),
      row('task p50 / p99 (ms)', (r) => `${r.report.latencyMs.task.p50} / ${r.report.latencyMs.task.p99}`),
      row('duration (s)', (r) => (r.report.durationMs / 1000).toFixed(1)),
    ],
  );
  console.log(`\n${table}\n`);
  const firstError = direct.report.sampleErrors[0];
  if (firstError) console.log(`direct run, first error: ${firstError.slice(0, 240)}`);

  mkdirSync(artifacts, { recursive: true });
  const svg = lineChartSvg({
    title: `Database connections of Django's role during ${settings.tasks} concurrent exports`,
    xLabel: 'seconds since the run started',
    yLabel: 'connections (pg_stat_activity)',
    series: [
      {
        label: 'direct to Django',
        color: '#d62728',
        points: direct.points.map((p) => ({ x: p.t / 1000, y: p.total })),
      },
      {
        label: 'through sluice-gateway',
        color: '#1f77b4',
        points: viaGateway.points.map((p) => ({ x: p.t / 1000, y: p.total })),
      },
    ],
    thresholds: [
      { label: 'role CONNECTION LIMIT', color: '#555', y: settings.connectionLimit },
      { label: 'gateway budget', color: '#2ca02c', y: settings.budget },
    ],
  });
  writeFileSync(`${artifacts}connections.svg`, svg);
  writeFileSync(
    `${artifacts}report.json`,
    `${JSON.stringify({ settings, runs: runs.map((r) => ({ ...r, points: r.points })) }, null, 2)}\n`,
  );
  console.log(`wrote .artifacts/demo/connections.svg and .artifacts/demo/report.json`);
  console.log(`(demo took ${((Date.now() - started) / 1000).toFixed(0)} s)`);
} finally {
  await stopAll();
}
