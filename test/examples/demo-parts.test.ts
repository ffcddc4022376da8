import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleConnections, waitForConnections } from '../../examples/bulk-export/demo/connection-sampler.ts';
import { lineChartSvg } from '../../examples/bulk-export/demo/svg-plot.ts';
import {
  adminQuery,
  createTestDatabase,
  pgUrl,
  type TestDatabase,
  uniqueSuffix,
} from '../support/src/index.ts';

describe('the demo connection sampler, against pg_stat_activity', () => {
  const role = `sluice_demo_sampler_${uniqueSuffix()}`;
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('demo_sampler');
    await adminQuery(`CREATE ROLE "${role}" LOGIN CONNECTION LIMIT 5`);
  });
  afterAll(async () => {
    await db?.drop();
    await adminQuery(`DROP ROLE IF EXISTS "${role}"`);
  });

  it("counts one role's connections by state and application, and its peak", async () => {
    const sampler = await sampleConnections({ adminUrl: pgUrl('postgres'), role, intervalMs: 20 });
    // Three sessions of the role (psql, so this suite needs no PostgreSQL driver of its own),
    // each busy for a while (long enough to overlap however slowly a loaded machine starts
    // them): one named app-a, two with no application_name (like Django).
    const sessions = Array.from({ length: 3 }, (_, i) =>
      spawn('psql', ['-h', '127.0.0.1', '-U', role, '-d', db.name, '-qAt', '-c', 'SELECT pg_sleep(3)'], {
        env: { ...process.env, PGAPPNAME: i === 0 ? 'app-a' : '' },
        stdio: 'ignore',
      }),
    );
    await Promise.all(sessions.map((c) => new Promise((r) => c.once('exit', r))));
    expect(await waitForConnections(pgUrl('postgres'), role, 0, 15_000)).toBe(0);
    const points = await sampler.stop();
    expect(sampler.peak).toBe(3);
    // A session just connected is not active yet: look at a sample taken once all three were.
    const full = points.find((p) => p.total === 3 && p.byState.active === 3);
    expect(full?.byApplication).toEqual({ 'app-a': 1, '': 2 });
    expect(full?.byState).toEqual({ active: 3 });
    expect(points.every((p, i) => i === 0 || p.t >= (points[i - 1]?.t ?? 0))).toBe(true);
  });
});

describe('the demo plot', () => {
  it('draws one step line per series, the thresholds and a legend, escaping text', () => {
    const svg = lineChartSvg({
      title: 'a <b> & c',
      xLabel: 's',
      yLabel: 'n',
      series: [
        {
          label: 'direct',
          color: '#d62728',
          points: [
            { x: 0, y: 1 },
            { x: 1, y: 20 },
            { x: 2, y: 3 },
          ],
        },
        {
          label: 'gateway',
          color: '#1f77b4',
          points: [
            { x: 0, y: 2 },
            { x: 3, y: 9 },
          ],
        },
      ],
      thresholds: [{ label: 'limit', color: '#555', y: 20 }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('a &lt;b&gt; &amp; c');
    expect(svg.match(/<path /g)).toHaveLength(2);
    // three points as steps: a move, then two horizontal+vertical pairs
    expect(/<path d="M[^"]*"/.exec(svg)?.[0].match(/L/g)).toHaveLength(4);
    expect(svg).toContain('limit (20)');
    expect(svg).toContain('>direct</text>');
    expect(svg).toContain('>gateway</text>');
  });
});
