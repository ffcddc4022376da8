import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleConnections, waitForConnections } from '../../examples/bulk-export/demo/connection-sampler.ts';
import {
  DEMO_FLAGS,
  type DemoSettings,
  demoGatewayArgs,
  demoUsage,
  directRunVerdict,
  parseDemoArgs,
} from '../../examples/bulk-export/demo/settings.ts';
import { lineChartSvg } from '../../examples/bulk-export/demo/svg-plot.ts';
import { loadConfig } from '../../packages/gateway/src/index.ts';
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

describe("the demo's flags", () => {
  const run = (argv: string[]): DemoSettings => {
    const parsed = parseDemoArgs(argv);
    if (parsed.kind !== 'run') throw new Error(`expected settings, got ${JSON.stringify(parsed)}`);
    return parsed.settings;
  };
  const error = (argv: string[]): string => {
    const parsed = parseDemoArgs(argv);
    if (parsed.kind !== 'error') throw new Error(`expected an error, got ${JSON.stringify(parsed)}`);
    return parsed.message;
  };

  it('takes the defaults, flags as `--name value` or `--name=value`, after one leading `--`', () => {
    expect(run([])).toMatchObject({ tasks: 300, concurrency: 300, connectionLimit: 20, budget: 14 });
    // `pnpm demo -- --tasks 100` hands the demo `-- --tasks 100`.
    expect(run(['--', '--tasks', '100', '--connection-limit=30'])).toMatchObject({
      tasks: 100,
      connectionLimit: 30,
      concurrency: 300,
    });
    // Only one: a second `--` ends the flags, and what follows is an argument the demo does not take.
    expect(error(['--', '--', '--tasks', '100'])).toBe('unexpected argument "--tasks"');
    expect(parseDemoArgs(['--', '--help'])).toEqual({ kind: 'help' });
    expect(parseDemoArgs(['-h'])).toEqual({ kind: 'help' });
  });

  it('refuses a bad value, an unknown flag or a missing value with one line naming it', () => {
    for (const bad of ['x', '0', '5001', '1.5', '1e3', '', ' 7']) {
      expect(error(['--tasks', bad])).toBe(
        `--tasks must be a whole number from 1 to 5000, got ${JSON.stringify(bad)}`,
      );
    }
    expect(error(['--', '--task', '3'])).toBe('unknown flag --task');
    expect(error(['--tasks'])).toBe('--tasks needs a value');
    expect(error(['--tasks', '--threads', '8'])).toBe('--tasks needs a value');
    expect(error(['--budget', '20'])).toBe('--budget (20) must be below --connection-limit (20)');
    for (const message of [error(['--deadline', '-5']), error(['extra'])]) {
      expect(message).not.toContain('\n');
    }
  });

  it('lists every flag with its range and default in --help', () => {
    const usage = demoUsage();
    for (const [flag, f] of Object.entries(DEMO_FLAGS)) {
      expect(usage).toContain(`--${flag} N`);
      expect(usage).toContain(`(${f.min}-${f.max}; default ${f.default})`);
    }
  });

  it("gives the gateway flags its CLI accepts, even a secret key that starts with '--'", () => {
    const settings = run(['--budget', '9', '--concurrency', '800']);
    const args = demoGatewayArgs(settings, {
      url: 'http://127.0.0.1:45000',
      databaseUrl: 'postgres://demo@127.0.0.1:5432/demo',
      secretKey: '--not-a-flag',
    });
    // What startGateway adds, then the demo's own.
    const result = loadConfig(['--listen', '127.0.0.1:45001', ...args], {});
    if (!result.ok) throw new Error(JSON.stringify(result.issues));
    expect(result.config).toMatchObject({
      upstream: 'http://127.0.0.1:45000',
      databaseUrl: 'postgres://demo@127.0.0.1:5432/demo',
      secretKey: '--not-a-flag',
      dbBudget: 9,
      queueMax: 1600,
      queueTimeoutMs: 60_000,
      monitorIntervalMs: 1000,
      adminListen: false,
      logLevel: 'warn',
    });
  });

  it('says in one line when the direct run did not show the incident, and what to change', () => {
    const s = run([]);
    expect(directRunVerdict(s, { failed: 3, peak: 12 })).toBeUndefined();
    expect(directRunVerdict(s, { failed: 0, peak: 18 })).toBeUndefined(); // 90% of 20
    const line = directRunVerdict(s, { failed: 0, peak: 17 });
    expect(line).toMatch(/^The direct run did not reproduce the incident: .*peaked at 17 of its 20 /);
    expect(line).toContain('raise --tasks / --concurrency (now 300 / 300)');
    expect(line).toContain('lower --connection-limit');
    expect(line).not.toContain('\n');
    // With no more threads than the limit, Django cannot reach it however many tasks there are.
    expect(directRunVerdict(run(['--threads', '16']), { failed: 0, peak: 16 })).toContain(
      'raise --threads (now 16',
    );
  });
});
