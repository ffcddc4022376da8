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
import { type DjangoFixture, pgUrl, startDjango } from '@sluice/test-support';
import { type BulkExportReport, markdownTable, runBulkExport } from '../src/index.js';
import { type ConnectionPoint, sampleConnections, waitForConnections } from './connection-sampler.js';
import { type GatewayProcess, startGateway } from './gateway-process.js';
import { demoGatewayArgs, demoUsage, directRunVerdict, parseDemoArgs } from './settings.js';
import { lineChartSvg } from './svg-plot.js';

const args = parseDemoArgs(process.argv.slice(2));
if (args.kind !== 'run') {
  // Nothing has started yet: print and leave (pipes and terminals take the line synchronously).
  if (args.kind === 'help') process.stdout.write(`${demoUsage()}\n`);
  else process.stderr.write(`pnpm demo: ${args.message} (pnpm demo -- --help lists the flags)\n`);
  process.exit(args.kind === 'help' ? 0 : 2);
}
const { settings } = args;

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
  gateway = await startGateway(
    demoGatewayArgs(settings, { url: django.url, databaseUrl, secretKey: django.secretKey }),
  );
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
    [
      `(${settings.tasks} tasks, ${settings.concurrency} at once; role limit ${settings.connectionLimit}; budget ${settings.budget})`,
      'direct to Django',
      'through sluice-gateway',
    ],
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
  const verdict = directRunVerdict(settings, { failed: direct.report.failed, peak: direct.peak });
  if (verdict) console.log(verdict);

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
  console.log(
    'PgBouncer, the gateway in front of it and an interactive user measured meanwhile: pnpm bench incident --quick',
  );
} finally {
  await stopAll();
}
