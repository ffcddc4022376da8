// The incident benchmark's tables (one row per setup, per variant; then ratios against PgBouncer
// alone and against direct) and its plot (connections over time, one chart per variant).
import { lineChartSvg } from '../demo/svg-plot.js';
import { markdownTable } from '../src/index.js';
import type { RunResult } from './run-setup.js';
import {
  type IncidentSettings,
  SETUPS,
  type SetupName,
  SUPERUSER_RESERVED,
  VARIANTS,
  type VariantName,
} from './scenario.js';

/** The gateway's default `--db-reserve`: what its budget keeps for others out of `max_connections`. */
const GATEWAY_DB_RESERVE = 10;

/** The connections the gateway budgets for Django's role on the run's cluster (its defaults). */
export const gatewayBudget = (s: IncidentSettings): number =>
  s.budget > 0 ? s.budget : s.maxConnections - SUPERUSER_RESERVED - GATEWAY_DB_RESERVE;

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
  /** The gateway's admission over the run (gateway setups). */
  admission?: {
    limitMin: number;
    limitMax: number;
    limitMean: number;
    ceilingMin: number;
    ceilingMax: number;
    peakInFlight: number;
    peakQueued: number;
    /** Readings by load control's reason. */
    control: Record<string, number>;
  };
  /** CPU seconds by part while the load ran, and the machine's busy seconds. */
  cpu?: { wall: number; machine: number; parts: Record<string, number> };
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
  if (r.cpu) summary.cpu = r.cpu;
  if (r.gateway.length > 0) {
    const g = r.gateway;
    const control: Record<string, number> = {};
    for (const p of g) control[p.control] = (control[p.control] ?? 0) + 1;
    summary.admission = {
      limitMin: Math.min(...g.map((p) => p.limit)),
      limitMax: Math.max(...g.map((p) => p.limit)),
      limitMean: Math.round((10 * g.reduce((a, p) => a + p.limit, 0)) / g.length) / 10,
      ceilingMin: Math.min(...g.map((p) => p.ceiling)),
      ceilingMax: Math.max(...g.map((p) => p.ceiling)),
      peakInFlight: Math.max(...g.map((p) => p.inFlight)),
      peakQueued: Math.max(...g.map((p) => p.queued)),
      control,
    };
  }
  if (r.error !== undefined) summary.error = r.error;
  if (r.leaks) summary.leaked = r.leaks.leaked;
  return summary;
}

const label = (setup: SetupName, s: IncidentSettings): string => {
  const gateway = s.budget > 0 ? `gateway (budget ${s.budget})` : 'gateway';
  return {
    direct: 'direct',
    pgbouncer: `PgBouncer (transaction, pool ${s.poolSize})`,
    gateway,
    'gateway+pgbouncer': `${gateway} + PgBouncer, its DB URL on PostgreSQL`,
    'gateway+pgbouncer-db': `${gateway} + PgBouncer, its DB URL on PgBouncer`,
  }[setup];
};

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

/** The gateway's admission over each gateway run: its limit, ceiling and why load control moved it. */
export function admissionTable(rows: readonly RunSummary[], s: IncidentSettings): string {
  return markdownTable(
    [
      'setup',
      'limit min / mean / max',
      'ceiling min / max',
      'peak in flight / queued',
      'control (share of readings)',
    ],
    rows.flatMap((r) => {
      const a = r.admission;
      if (!a) return [];
      const total = Object.values(a.control).reduce((x, n) => x + n, 0);
      const control = Object.entries(a.control)
        .sort((x, y) => y[1] - x[1])
        .map(([reason, n]) => `${reason} ${Math.round((100 * n) / total)}%`)
        .join(', ');
      return [
        [
          label(r.setup, s),
          `${a.limitMin} / ${a.limitMean} / ${a.limitMax}`,
          `${a.ceilingMin} / ${a.ceilingMax}`,
          `${a.peakInFlight} / ${a.peakQueued}`,
          control,
        ],
      ];
    }),
  );
}

/**
 * Where the CPU went while the load ran: each part's seconds, the gateway's per request, and
 * the machine's (2 cores: at most twice the wall time) including other people's work.
 */
export function cpuTable(rows: readonly RunSummary[], s: IncidentSettings): string {
  const sec = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(1));
  return markdownTable(
    [
      'setup',
      'wall s',
      'machine busy s',
      'Django',
      'PostgreSQL',
      'PgBouncer',
      'gateway (ms/request)',
      'load client',
      'others',
    ],
    rows.flatMap((r) => {
      const c = r.cpu;
      if (!c) return [];
      const requests = Math.max(1, r.requestsPerSecond * r.bulkSeconds + r.interactive.requests);
      const gw = c.parts.gateway;
      return [
        [
          label(r.setup, s),
          sec(c.wall),
          sec(c.machine),
          sec(c.parts.django),
          sec(c.parts.postgres),
          sec(c.parts.pgbouncer),
          gw === undefined ? '-' : `${sec(gw)} (${((1000 * gw) / requests).toFixed(1)})`,
          sec(c.parts.bench),
          sec(c.parts.others),
        ],
      ];
    }),
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
      admissionTable(rows, s),
      '',
      cpuTable(rows, s),
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
          {
            label: 'too many clients (max_connections - superuser reserved)',
            color: '#555',
            y: s.maxConnections - SUPERUSER_RESERVED,
          },
          { label: 'PgBouncer pool', color: '#9467bd', y: s.poolSize },
          { label: 'gateway budget', color: '#8c564b', y: gatewayBudget(s) },
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
