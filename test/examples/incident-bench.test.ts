// A smoke run of the incident benchmark (`pnpm bench incident`) with tiny numbers: every setup
// starts for real (a PostgreSQL cluster of its own, Django, PgBouncer, the gateway as a child
// process), every request of the bulk client and of the interactive user lands in a bucket, and
// nothing is left behind.
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { runIncidentBench } from '../../examples/bulk-export/incident/bench.ts';
import { connectionsSvg, formatTables } from '../../examples/bulk-export/incident/report.ts';
import { checkSettings, type IncidentSettings, QUICK } from '../../examples/bulk-export/incident/scenario.ts';
import { adminQuery } from '../support/src/index.ts';

const tiny: IncidentSettings = {
  ...QUICK,
  setups: ['direct', 'pgbouncer', 'gateway', 'gateway+pgbouncer', 'gateway+pgbouncer-db'],
  variants: ['base'],
  tasks: 6,
  workers: 4,
  logins: 2,
  threads: 8,
  workMs: 20,
  exportMs: 100,
  exportBytes: 4096,
  pollIntervalMs: 100,
  maxConnections: 20,
  poolSize: 4,
  interactiveRate: 5,
  runDeadlineMs: 10_000,
  requestTimeoutMs: 5000,
};

describe('the incident benchmark', () => {
  it('refuses a scenario whose pool or budget the cluster cannot hold', () => {
    expect(() => checkSettings({ ...tiny, maxConnections: 500 })).toThrow(/maxConnections/);
    expect(() => checkSettings({ ...tiny, poolSize: 17 })).toThrow(/poolSize/);
    expect(() => checkSettings({ ...tiny, budget: 17 })).toThrow(/budget/);
    expect(() => checkSettings({ ...tiny, setups: ['nginx' as 'direct'] })).toThrow(/setups/);
  });

  it('runs every setup and accounts for every request, then leaves nothing behind', async () => {
    const report = await runIncidentBench(tiny);
    expect(report.complete).toBe(true);
    expect(report.summaries.map((s) => s.setup)).toEqual(tiny.setups);
    for (const s of report.summaries) {
      expect(s.error, `${s.setup} did not run`).toBeUndefined();
      expect(s.accounted, `${s.setup}: requests unaccounted for`).toBe(true);
      expect(s.tasksOk + s.tasksFailed).toBe(tiny.tasks);
      expect(s.interactive.requests).toBeGreaterThan(0);
    }
    for (const run of report.runs) {
      const bulk = run.bulk;
      expect(bulk?.tasks).toBe(tiny.tasks);
      // logins, then at least an export, a poll and a download per finished task
      expect(bulk?.requests).toBeGreaterThanOrEqual(tiny.logins + 3 * (bulk?.succeeded ?? 0));
      expect(run.points.length).toBeGreaterThan(0);
      // The gateway's admission figures were read from its admin listener.
      expect(run.gateway.length > 0).toBe(run.setup.startsWith('gateway'));
    }
    // PgBouncer holds the role's server connections to its pool (plus the gateway's own pool).
    const peak = (setup: string): number =>
      report.summaries.find((s) => s.setup === setup)?.peakConnections ?? Number.NaN;
    expect(peak('pgbouncer')).toBeLessThanOrEqual(tiny.poolSize);
    expect(peak('direct')).toBeLessThanOrEqual(tiny.maxConnections);
    // Behind PgBouncer (its DATABASE_URL Django's), the gateway detects it and follows its pools.
    const behind = report.runs.find((r) => r.setup === 'gateway+pgbouncer-db');
    expect(behind?.gateway.every((p) => p.source === 'pgbouncer')).toBe(true);
    expect(
      report.runs.find((r) => r.setup === 'gateway')?.gateway.every((p) => p.source === 'database'),
    ).toBe(true);

    const tables = formatTables(report.summaries, report.settings);
    for (const label of [
      '| direct',
      '| PgBouncer (transaction, pool 4)',
      '| gateway ',
      '| gateway + PgBouncer, its DB URL on PgBouncer',
      'vs PgBouncer',
    ]) {
      expect(tables).toContain(label);
    }
    const svg = connectionsSvg(report.runs, report.settings);
    expect(svg.match(/<path /g)).toHaveLength(tiny.setups.length);

    const left = await adminQuery(
      `SELECT datname FROM pg_database WHERE datname LIKE $1
        UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE $2`,
      [`sluice\\_incident\\_${process.pid}\\_%`, `sluice\\_django\\_${process.pid}\\_%`],
    );
    expect(left.rows).toEqual([]);
    const folders = readdirSync(tmpdir()).filter((d) =>
      new RegExp(`^sluice-(pg|pgbouncer)-${process.pid}-`).test(d),
    );
    expect(folders).toEqual([]);
  }, 120_000);
});
