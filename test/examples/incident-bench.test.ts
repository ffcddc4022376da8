// A smoke run of the incident benchmark (`pnpm bench incident`) with tiny numbers: every setup
// starts for real (Django, PgBouncer, the gateway as a child process), every request of the bulk
// client and of the interactive user lands in a bucket, and nothing is left behind.
import { describe, expect, it } from 'vitest';
import { runIncidentBench } from '../../examples/bulk-export/incident/bench.ts';
import { connectionsSvg, formatTables } from '../../examples/bulk-export/incident/report.ts';
import { checkSettings, type IncidentSettings, QUICK } from '../../examples/bulk-export/incident/scenario.ts';
import { adminQuery } from '../support/src/index.ts';

const tiny: IncidentSettings = {
  ...QUICK,
  setups: ['direct', 'pgbouncer', 'gateway', 'gateway+pgbouncer'],
  variants: ['base'],
  tasks: 6,
  workers: 4,
  logins: 2,
  threads: 8,
  workMs: 20,
  exportMs: 100,
  exportBytes: 4096,
  pollIntervalMs: 100,
  roleLimit: 10,
  poolSize: 4,
  budget: 4,
  interactiveRate: 5,
  runDeadlineMs: 10_000,
  requestTimeoutMs: 5000,
};

describe('the incident benchmark', () => {
  it('refuses a scenario that could crowd the shared server', () => {
    expect(() => checkSettings({ ...tiny, roleLimit: 90 })).toThrow(/roleLimit/);
    expect(() => checkSettings({ ...tiny, poolSize: 10 })).toThrow(/poolSize/);
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
    }
    // PgBouncer holds the role's server connections to its pool (plus the gateway's own pool).
    const peak = (setup: string): number =>
      report.summaries.find((s) => s.setup === setup)?.peakConnections ?? Number.NaN;
    expect(peak('pgbouncer')).toBeLessThanOrEqual(tiny.poolSize);
    expect(peak('direct')).toBeLessThanOrEqual(tiny.roleLimit);

    const tables = formatTables(report.summaries, report.settings);
    for (const label of [
      '| direct',
      '| PgBouncer (transaction, pool 4)',
      '| gateway (budget 4)',
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
  }, 120_000);
});
