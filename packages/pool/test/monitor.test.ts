import { createTestDatabase, type TestDatabase, uniqueSuffix, waitFor } from '@sluice/test-support';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  activityOf,
  type ConnectionLevel,
  type ConnectionSample,
  createPool,
  monitorConnections,
  type SluicePool,
  type ThresholdEvent,
} from '../src/index.ts';
import { nextLevel } from '../src/thresholds.ts';

let db: TestDatabase;
let pool: SluicePool;
const holders: pg.Client[] = [];

beforeAll(async () => {
  db = await createTestDatabase('pool_monitor');
  pool = createPool({ connectionString: db.url, max: 1, applicationName: `sluice-mon-${uniqueSuffix()}` });
});
afterAll(async () => {
  await Promise.all(holders.splice(0).map((c) => c.end()));
  await pool?.close();
  await db?.drop();
});

async function hold(n: number, applicationName: string): Promise<pg.Client[]> {
  const clients = Array.from(
    { length: n },
    () => new pg.Client({ connectionString: db.url, application_name: applicationName }),
  );
  await Promise.all(clients.map((c) => c.connect()));
  holders.push(...clients);
  return clients;
}

async function letGo(clients: pg.Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.end()));
  for (const c of clients) holders.splice(holders.indexOf(c), 1);
}

describe('nextLevel (hysteresis)', () => {
  const t = { warnAt: 0.5, criticalAt: 0.8, hysteresis: 0.1 };

  it('rises at once and falls only below threshold minus hysteresis', () => {
    const walk = (usages: number[]): ConnectionLevel[] => {
      let level: ConnectionLevel = 'ok';
      return usages.map((u) => {
        level = nextLevel(level, u, t);
        return level;
      });
    };
    // hovering around warnAt: one change up, none back until clearly below
    expect(walk([0.49, 0.5, 0.49, 0.51, 0.45, 0.41, 0.39])).toEqual([
      'ok',
      'warn',
      'warn',
      'warn',
      'warn',
      'warn',
      'ok',
    ]);
    // critical and back, through warn
    expect(walk([0.8, 0.75, 0.71, 0.69, 0.45, 0.3])).toEqual([
      'critical',
      'critical',
      'critical',
      'warn',
      'warn',
      'ok',
    ]);
    // a fall straight from critical to well below warn goes to ok
    expect(walk([0.9, 0.1])).toEqual(['critical', 'ok']);
  });
});

describe('monitorConnections', () => {
  it('validates its options', () => {
    expect(() => monitorConnections({ pool, intervalMs: 1000, warnAt: 0.9, criticalAt: 0.5 })).toThrow(
      /criticalAt should be at least warnAt/,
    );
    expect(() => monitorConnections({ pool, intervalMs: 0, warnAt: 0.5, criticalAt: 0.9 })).toThrow(
      /intervalMs/,
    );
    expect(() => monitorConnections({ pool, intervalMs: 1000, warnAt: 0, criticalAt: 0.9 })).toThrow(
      /warnAt/,
    );
    expect(() =>
      monitorConnections({ pool, intervalMs: 1000, warnAt: 0.5, criticalAt: 0.9, hysteresis: 0.6 }),
    ).toThrow(/hysteresis/);
  });

  it('samples pg_stat_activity in one query: totals, states, applications, databases, oldest idle', async () => {
    const label = `cvat:server:${uniqueSuffix()}`;
    const idle = await hold(3, label);
    const busy = (await hold(1, `${label}-busy`))[0];
    // Busy until cancelled below, however long a loaded machine takes to get to the sample.
    const busyQuery = busy?.query('SELECT pg_sleep(30)').catch((e: unknown) => e);
    try {
      await new Promise((r) => setTimeout(r, 150));
      await waitFor(
        async () => {
          const { rows } = await pool.query<{ state: string }>(
            'SELECT state FROM pg_stat_activity WHERE application_name = $1',
            [`${label}-busy`],
          );
          return rows[0]?.state === 'active';
        },
        { timeoutMs: 10_000, what: 'the busy session to be active' },
      );
      await using monitor = monitorConnections({
        pool,
        intervalMs: 60_000,
        warnAt: 0.7,
        criticalAt: 0.9,
        database: db.name,
        now: () => 42,
      });
      const seen: ConnectionSample[] = [];
      monitor.on('sample', (s) => seen.push(s));
      const sample = await monitor.sampleNow();
      const { rows } = await pool.query<{ mc: number; rc: number }>(
        "SELECT current_setting('max_connections')::int AS mc, current_setting('superuser_reserved_connections')::int AS rc",
      );
      expect(Object.keys(sample).sort()).toEqual(
        [
          'activityByApplication',
          'at',
          'byApplication',
          'byDatabase',
          'byState',
          'maxConnections',
          'oldestIdleMsByApplication',
          'reservedConnections',
          'total',
        ].sort(),
      );
      expect(sample.at).toBe(42);
      expect(sample.maxConnections).toBe(rows[0]?.mc);
      expect(sample.reservedConnections).toBe(rows[0]?.rc);
      expect(sample.total).toBe(5); // 3 idle + 1 busy + the monitor's own connection
      expect(sample.byApplication[label]).toBe(3);
      expect(sample.byApplication[`${label}-busy`]).toBe(1);
      expect(sample.byApplication[pool.applicationName]).toBe(1);
      expect(sample.byDatabase).toEqual({ [db.name]: 5 });
      expect(sample.byState.idle).toBe(3);
      expect(sample.byState.active).toBe(2);
      expect(sample.oldestIdleMsByApplication[label]).toBeGreaterThanOrEqual(100);
      expect(sample.oldestIdleMsByApplication[`${label}-busy`]).toBeUndefined();
      expect(sample.activityByApplication[label]).toEqual({
        total: 3,
        active: 0,
        idle: 3,
        idleInTransaction: 0,
        waiting: 0,
        busy: 0,
      });
      expect(sample.activityByApplication[`${label}-busy`]).toMatchObject({ total: 1, active: 1, busy: 1 });
      expect(monitor.lastSample).toBe(sample);
      expect(seen).toContain(sample);
      expect(monitor.usage).toBeCloseTo(5 / (sample.maxConnections - sample.reservedConnections));
    } finally {
      await pool.query('SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [
        `${label}-busy`,
      ]);
      await busyQuery; // cancelled
      await letGo([...idle, ...(busy ? [busy] : [])]);
    }
  });

  it('says per application what its backends do: active, idle in transaction, waiting on a lock', async () => {
    const base = `cvat:worker:${uniqueSuffix()}`;
    await pool.query('CREATE TABLE IF NOT EXISTS monitor_locks (id int PRIMARY KEY)');
    await pool.query('INSERT INTO monitor_locks VALUES (1) ON CONFLICT DO NOTHING');
    const [locker, waiter, sleeper, idle] = await hold(4, `${base}:export`);
    const server = (await hold(1, 'cvat:server-like'))[0];
    await locker?.query('BEGIN');
    await locker?.query('SELECT * FROM monitor_locks WHERE id = 1 FOR UPDATE'); // then idle in transaction
    const blocked = waiter
      ?.query('SELECT * FROM monitor_locks WHERE id = 1 FOR UPDATE')
      .catch((e: unknown) => e);
    const sleeping = sleeper?.query('SELECT pg_sleep(30)').catch((e: unknown) => e);
    try {
      await using monitor = monitorConnections({
        pool,
        intervalMs: 250,
        warnAt: 0.7,
        criticalAt: 0.9,
        database: db.name,
      });
      let sample = await monitor.sampleNow();
      await waitFor(
        async () => {
          sample = await monitor.sampleNow();
          const a = sample.activityByApplication[`${base}:export`];
          return a?.waiting === 1 && a.active === 2;
        },
        { timeoutMs: 10_000, what: 'the waiter to block and the sleeper to run' },
      );
      expect(sample.activityByApplication[`${base}:export`]).toEqual({
        total: 4,
        active: 2,
        idle: 1,
        idleInTransaction: 1,
        waiting: 1,
        busy: 3,
      });
      expect(sample.byApplication[`${base}:export`]).toBe(4);
      // A worker's name carries its queues: a prefix pattern sums every one of them.
      expect(activityOf(sample, `${base}:*`)).toMatchObject({ total: 4, busy: 3, waiting: 1 });
      expect(activityOf(sample, [`${base}:*`, 'cvat:server-like'])).toMatchObject({ total: 5, idle: 2 });
      expect(activityOf(sample, /^nothing-like-this$/).total).toBe(0);
    } finally {
      await pool.query(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        [`${base}:export`],
      );
      await locker?.query('ROLLBACK');
      await Promise.all([blocked, sleeping]);
      await letGo([locker, waiter, sleeper, idle, server].filter((c): c is pg.Client => c !== undefined));
    }
  });

  it('goes warn when a second holder pushes usage over warnAt, then ok, without flapping', async () => {
    const probe = await pool.query<{ mc: number; rc: number }>(
      "SELECT current_setting('max_connections')::int AS mc, current_setting('superuser_reserved_connections')::int AS rc",
    );
    const budget = (probe.rows[0]?.mc ?? 100) - (probe.rows[0]?.rc ?? 3);
    // Counted in this suite's database only, so parallel suites cannot move the numbers.
    await using monitor = monitorConnections({
      pool,
      intervalMs: 60_000,
      warnAt: 10 / budget,
      criticalAt: 40 / budget,
      hysteresis: 4 / budget,
      database: db.name,
    });
    const events: ThresholdEvent[] = [];
    monitor.on('threshold', (e) => events.push(e));
    await monitor.sampleNow();
    expect(monitor.level).toBe('ok');

    const label = `holder-${uniqueSuffix()}`;
    const first = await hold(9, label); // 9 + the monitor's connection = 10: warn
    await monitor.sampleNow();
    expect(monitor.level).toBe('warn');
    const extra = first.splice(0, 2);
    await letGo(extra); // 8: under warnAt but inside the hysteresis band
    for (let i = 0; i < 3; i += 1) await monitor.sampleNow();
    expect(monitor.level).toBe('warn');
    await letGo(first); // 1: clearly below
    await monitor.sampleNow();
    expect(monitor.level).toBe('ok');

    expect(events.map((e) => [e.previous, e.level])).toEqual([
      ['ok', 'warn'],
      ['warn', 'ok'],
    ]);
    expect(events[0]?.sample.total).toBe(10);
    expect(events[0]?.usage).toBeCloseTo(10 / budget);
    expect(events[1]?.sample.total).toBe(1);
  });

  it('samples on its interval, reports failures, and close() stops it', async () => {
    const local = createPool({
      connectionString: db.url,
      max: 1,
      applicationName: `sluice-mon2-${uniqueSuffix()}`,
    });
    await using monitor = monitorConnections({ pool: local, intervalMs: 20, warnAt: 0.5, criticalAt: 0.9 });
    const samples: ConnectionSample[] = [];
    const errors: unknown[] = [];
    monitor.on('sample', (s) => samples.push(s));
    monitor.on('error', (e) => errors.push(e));
    await waitFor(() => samples.length >= 3, { timeoutMs: 10_000, what: 'three samples' });

    await local.close();
    await waitFor(() => errors.length >= 2, { timeoutMs: 10_000, what: 'failed samples' });
    expect(errors[0]).toMatchObject({ code: 'E_POOL_CLOSED' });

    await monitor.close();
    await monitor.close();
    const count = samples.length + errors.length;
    await new Promise((r) => setTimeout(r, 100)); // five intervals: nothing may run any more
    expect(samples.length + errors.length).toBe(count);
    await expect(monitor.sampleNow()).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
  });
});
