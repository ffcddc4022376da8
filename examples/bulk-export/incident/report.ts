// The incident benchmark's tables (one row per setup, per variant; then ratios against PgBouncer
// alone and against direct) and its plot (connections over time, one chart per variant).
import { lineChartSvg } from '../demo/svg-plot.js';
import { markdownTable } from '../src/index.js';
import type { RunResult } from './run-setup.js';
import { type IncidentSettings, SETUPS, type SetupName, VARIANTS, type VariantName } from './scenario.js';

/** One row of the table: what a run measured, as numbers. */
export interface RunSummary {
  setup: SetupName;
  variant: VariantName;
  error?: string;
  /** Seconds until the bulk run ended (all tasks done, or the deadline). */
  bulkSeconds: number;
  /** The run's deadline stopped tasks before they finished. */
  cut: boolean;
  tasksOk: number;
  tasksFailed: number;
  /** Succeeded tasks per second. */
  tasksPerSecond: number;
  requestsPerSecond: number;
  /** Failed requests (bulk and interactive) by kind. */
  failures: { '5xx': number; '503': number; '429': number; connection: number };
  interactive: { requests: number; failed: number; p50Ms: number; p99Ms: number };
  peakConnections: number;
  leaked?: number;
  /** Every request sent landed in a bucket (bulk: answered or failed; interactive: `lost` 0). */
  accounted: boolean;
}

/** Numbers of one run, with every request accounted for. */
export function summarize(r: RunResult): RunSummary {
  const failures = { '5xx': 0, '503': 0, '429': 0, connection: 0 };
  const count = (statuses: Readonly<Record<string, number>>): void => {
    for (const [code, n] of Object.entries(statuses)) {
      const status = Number(code);
      if (status === 503) failures['503'] += n;
      else if (status === 429) failures['429'] += n;
      else if (status >= 500) failures['5xx'] += n;
    }
  };
  const b = r.bulk;
  const i = r.interactive;
  let accounted = b !== undefined && i !== undefined;
  if (b) {
    count(b.statusCounts);
    const errors = Object.values(b.connectionErrors).reduce((a, n) => a + n, 0);
    failures.connection += errors + b.timeouts;
    const answered = Object.values(b.statusCounts).reduce((a, n) => a + n, 0);
    accounted &&=
      b.requests === answered + errors + b.timeouts + b.interrupted && b.succeeded + b.failed === b.tasks;
  }
  if (i) {
    count(i.byStatus);
    failures.connection += i.errors;
    accounted &&= i.lost === 0 && i.inFlight === 0;
  }
  const summary: RunSummary = {
    setup: r.setup,
    variant: r.variant,
    bulkSeconds: b ? b.durationMs / 1000 : 0,
    cut: (b?.failuresByKind.deadline ?? 0) > 0,
    tasksOk: b?.succeeded ?? 0,
    tasksFailed: b?.failed ?? 0,
    tasksPerSecond: b?.throughput.tasksPerSecond ?? 0,
    requestsPerSecond: b?.throughput.requestsPerSecond ?? 0,
    failures,
    interactive: {
      requests: i?.sent ?? 0,
      failed: i ? i.sent - i.ok : 0,
      p50Ms: i?.latencyMs.p50 ?? 0,
      p99Ms: i?.latencyMs.p99 ?? 0,
    },
    peakConnections: r.peakConnections,
    accounted,
  };
  if (r.error !== undefined) summary.error = r.error;
  if (r.leaks) summary.leaked = r.leaks.leaked;
  return summary;
}

const label = (setup: SetupName, s: IncidentSettings): string =>
  ({
    direct: 'direct',
    pgbouncer: `PgBouncer (transaction, pool ${s.poolSize})`,
    gateway: `gateway (budget ${s.budget})`,
    'gateway+pgbouncer': `gateway (budget ${s.budget}) + PgBouncer`,
    'gateway+pgbouncer-db': `gateway (budget ${s.budget}) + PgBouncer, its DB URL on PgBouncer`,
  })[setup];

const ms = (v: number): string => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`);

/** The table of one variant. */
export function variantTable(rows: readonly RunSummary[], s: IncidentSettings): string {
  return markdownTable(
    [
      'setup',
      'bulk finished in',
      'tasks ok / failed',
      'bulk throughput',
      '5xx',
      '503 shed',
      '429',
      'conn errors',
      'interactive p50 / p99 (requests, failed)',
      'peak DB conns',
    ],
    rows.map((r) =>
      r.error !== undefined
        ? [label(r.setup, s), `did not run: ${r.error}`]
        : [
            label(r.setup, s),
            `${r.bulkSeconds.toFixed(1)} s${r.cut ? ' (cut)' : ''}`,
            `${r.tasksOk} / ${r.tasksFailed}`,
            `${r.tasksPerSecond} tasks/s (${r.requestsPerSecond} req/s)`,
            String(r.failures['5xx']),
            String(r.failures['503']),
            String(r.failures['429']),
            String(r.failures.connection),
            `${ms(r.interactive.p50Ms)} / ${ms(r.interactive.p99Ms)} (${r.interactive.requests}, ${r.interactive.failed})`,
            r.leaked === undefined ? String(r.peakConnections) : `${r.peakConnections} (${r.leaked} leaked)`,
          ],
    ),
  );
}

/** Throughput and interactive p99 of each setup as ratios to PgBouncer alone and to direct. */
export function ratioTable(rows: readonly RunSummary[], s: IncidentSettings): string {
  const find = (setup: SetupName): RunSummary | undefined =>
    rows.find((r) => r.setup === setup && r.error === undefined);
  const ratio = (a: number, b: number | undefined): string =>
    b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`;
  const bouncer = find('pgbouncer');
  const direct = find('direct');
  return markdownTable(
    [
      'setup',
      'throughput vs PgBouncer',
      'throughput vs direct',
      'interactive p99 vs PgBouncer',
      'interactive p99 vs direct',
      'failed requests / tasks',
    ],
    rows
      .filter((r) => r.error === undefined)
      .map((r) => [
        label(r.setup, s),
        ratio(r.tasksPerSecond, bouncer?.tasksPerSecond),
        ratio(r.tasksPerSecond, direct?.tasksPerSecond),
        ratio(r.interactive.p99Ms, bouncer?.interactive.p99Ms),
        ratio(r.interactive.p99Ms, direct?.interactive.p99Ms),
        `${r.failures['5xx'] + r.failures['503'] + r.failures['429'] + r.failures.connection} / ${r.tasksFailed}`,
      ]),
  );
}

/** Every table, variant by variant, with a line saying what the variant is. */
export function formatTables(summaries: readonly RunSummary[], s: IncidentSettings): string {
  const out: string[] = [];
  for (const variant of s.variants) {
    const rows = summaries.filter((r) => r.variant === variant);
    if (rows.length === 0) continue;
    out.push(
      `### ${variant}: ${VARIANTS[variant].describe}`,
      '',
      variantTable(rows, s),
      '',
      ratioTable(rows, s),
      '',
    );
  }
  return out.join('\n');
}

const COLORS: Record<SetupName, string> = {
  direct: '#d62728',
  pgbouncer: '#ff7f0e',
  gateway: '#1f77b4',
  'gateway+pgbouncer': '#2ca02c',
  'gateway+pgbouncer-db': '#8c564b',
};

/** One chart per variant (the role's connections over time, one line per setup), stacked in one SVG. */
export function connectionsSvg(runs: readonly RunResult[], s: IncidentSettings): string {
  const width = 900;
  const height = 420;
  const charts = s.variants
    .map((variant) => runs.filter((r) => r.variant === variant && r.points.length > 0))
    .filter((rs) => rs.length > 0)
    .map((rs) =>
      lineChartSvg({
        title: `${rs[0]?.variant} variant: database connections of Django's role (${s.tasks} exports, ${s.workers} workers)`,
        xLabel: 'seconds since the run started',
        yLabel: 'connections (pg_stat_activity)',
        width,
        height,
        series: rs.map((r) => ({
          label: label(r.setup, s),
          color: COLORS[r.setup],
          points: r.points.map((p) => ({ x: p.t / 1000, y: p.total })),
        })),
        thresholds: [
          { label: 'role CONNECTION LIMIT', color: '#555', y: s.roleLimit },
          ...(s.poolSize === s.budget
            ? [{ label: 'pool / budget', color: '#9467bd', y: s.poolSize }]
            : [
                { label: 'PgBouncer pool', color: '#9467bd', y: s.poolSize },
                { label: 'gateway budget', color: '#8c564b', y: s.budget },
              ]),
        ],
      }),
    );
  const body = charts.map((svg, i) => `<g transform="translate(0 ${i * height})">\n${svg}</g>`).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height * charts.length}" viewBox="0 0 ${width} ${height * charts.length}">\n${body}\n</svg>\n`;
}

/** The setups as one line each, for the header of the output. */
export function describeSetups(s: IncidentSettings): string {
  return s.setups.map((setup) => `- ${label(setup, s)}: ${SETUPS[setup].describe}`).join('\n');
}
