import {
  adminQuery,
  createTestDatabase,
  pgUrl,
  type TestDatabase,
  uniqueSuffix,
  waitFor,
} from '@sluice/test-support';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createPool,
  isReapPrivilegeError,
  type ReapPrivilegeError,
  type ReapResult,
  reapIdleConnections,
  type SluicePool,
  scheduleReaper,
} from '../src/index.ts';

let db: TestDatabase;
const suffix = uniqueSuffix();
const reaperRole = `sluice_reaper_${suffix}`;
const appRole = `sluice_app_${suffix}`;
const clients: pg.Client[] = [];
const pools: SluicePool[] = [];

beforeAll(async () => {
  db = await createTestDatabase('pool_reaper');
  await adminQuery(`CREATE ROLE "${reaperRole}" LOGIN`);
  await adminQuery(`CREATE ROLE "${appRole}" LOGIN`);
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
});
afterAll(async () => {
  await db?.drop();
  await adminQuery(`DROP ROLE IF EXISTS "${reaperRole}"`);
  await adminQuery(`DROP ROLE IF EXISTS "${appRole}"`);
});

/** Raw connections as the upstream opens them (CVAT labels its connections 'cvat:server'). */
async function open(n: number, applicationName: string, user?: string): Promise<number[]> {
  const opened = Array.from(
    { length: n },
    () => new pg.Client({ connectionString: pgUrl(db.name, user), application_name: applicationName }),
  );
  for (const c of opened) c.on('error', () => undefined); // a reaped connection reports its end
  await Promise.all(opened.map((c) => c.connect()));
  clients.push(...opened);
  return Promise.all(
    opened.map(
      async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0,
    ),
  );
}

function track(pool: SluicePool): SluicePool {
  pools.push(pool);
  return pool;
}

async function alive(pids: number[]): Promise<number[]> {
  const { rows } = await adminQuery<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[]) ORDER BY pid',
    [pids],
  );
  return rows.map((r) => r.pid);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

describe('reapIdleConnections', () => {
  it('terminates only old idle connections of the named application', async () => {
    const label = `cvat:server:${suffix}`;
    const pool = track(
      createPool({ connectionString: db.url, max: 2, applicationName: `sluice-reaper-${suffix}` }),
    );
    // Another Sluice pool in this process, labelled exactly like the target: never reaped.
    const sibling = track(createPool({ connectionString: db.url, max: 1, applicationName: label }));
    await sibling.query('SELECT 1');
    const old = await open(3, label);
    const otherApp = await open(1, `cvat:worker:${suffix}`);
    const inTx = await open(1, label);
    const txClient = clients[clients.length - 1];
    await txClient?.query('BEGIN');
    await txClient?.query('SELECT 1');
    // Old means idle for 1.5 s; the young are touched right before each reap and stay well under
    // the 1 s threshold however slow a loaded machine is between the touch and the reap.
    await sleep(1500);
    const young = await open(2, label);
    const youngClients = clients.slice(-2);
    // A statement resets a connection's idle time: these stay young however slow the machine is.
    const touchYoung = () => Promise.all(youngClients.map((c) => c.query('SELECT 1')));
    await touchYoung();

    const dry = await reapIdleConnections({ pool, applicationName: label, idleForMs: 1000, dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(sorted(dry.reaped.map((b) => b.pid))).toEqual(sorted(old));
    expect(await alive(old)).toEqual(sorted(old)); // a dry run terminates nothing

    await touchYoung();
    const result = await reapIdleConnections({ pool, applicationName: label, idleForMs: 1000 });
    expect(result.dryRun).toBe(false);
    expect(sorted(result.reaped.map((b) => b.pid))).toEqual(sorted(old));
    for (const b of result.reaped) {
      expect(b.applicationName).toBe(label);
      expect(b.state).toBe('idle');
      expect(b.database).toBe(db.name);
      expect(b.idleMs).toBeGreaterThanOrEqual(1000);
    }
    expect(result.deferred).toBe(0);
    expect(result.denied).toEqual([]);
    await waitFor(async () => (await alive(old)).length === 0, { what: 'the reaped backends to exit' });

    const survivors = [...otherApp, ...inTx, ...young, ...sibling.backendPids(), ...pool.backendPids()];
    expect(await alive(survivors)).toEqual(sorted(survivors));

    // idle in transaction only when asked
    await touchYoung();
    const withTx = await reapIdleConnections({
      pool,
      applicationName: label,
      idleForMs: 1000,
      includeIdleInTransaction: true,
    });
    expect(withTx.reaped.map((b) => [b.pid, b.state])).toEqual([[inTx[0], 'idle in transaction']]);
    expect((await sibling.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('matches a pattern, never its own pool, and honours maxPerRun', async () => {
    const base = `cvat:server:${suffix}:p`;
    const pool = track(createPool({ connectionString: db.url, max: 2, applicationName: `${base}:sluice` }));
    await Promise.all([pool.query('SELECT pg_sleep(0.05)'), pool.query('SELECT pg_sleep(0.05)')]);
    const targets = [...(await open(2, `${base}:1`)), ...(await open(2, `${base}:2`))];
    await sleep(400);
    const pattern = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);

    const first = await reapIdleConnections({ pool, applicationName: pattern, idleForMs: 200, maxPerRun: 3 });
    expect(first.reaped).toHaveLength(3);
    expect(first.deferred).toBe(1);
    const second = await reapIdleConnections({
      pool,
      applicationName: pattern,
      idleForMs: 200,
      maxPerRun: 3,
    });
    expect(second.reaped).toHaveLength(1);
    expect(sorted([...first.reaped, ...second.reaped].map((b) => b.pid))).toEqual(sorted(targets));
    const own = pool.backendPids();
    expect(own).toHaveLength(2);
    expect(await alive(own)).toEqual(sorted(own));
  });

  it("reaps connections that set no application_name (Django's default) when asked for ''", async () => {
    const pool = track(
      createPool({ connectionString: db.url, max: 1, applicationName: `sluice-reaper-e-${suffix}` }),
    );
    const unnamed = await open(2, '');
    const named = await open(1, `cvat:server:${suffix}:named`);
    await sleep(300);
    const result = await reapIdleConnections({
      pool,
      applicationName: '',
      idleForMs: 200,
      database: db.name,
    });
    expect(sorted(result.reaped.map((b) => b.pid))).toEqual(sorted(unnamed));
    expect(result.reaped.every((b) => b.applicationName === '')).toBe(true);
    expect(await alive(named)).toEqual(named);
  });

  it('validates options', async () => {
    const pool = track(
      createPool({ connectionString: db.url, max: 1, applicationName: `sluice-reaper-v-${suffix}` }),
    );
    await expect(reapIdleConnections({ pool, applicationName: '', idleForMs: 1 })).rejects.toThrow(
      /needs a database/,
    );
    await expect(reapIdleConnections({ pool, applicationName: 42 as never, idleForMs: 1 })).rejects.toThrow(
      /applicationName/,
    );
    await expect(
      reapIdleConnections({ pool, applicationName: pool.applicationName, idleForMs: 1 }),
    ).rejects.toThrow(/own application name/);
    await expect(reapIdleConnections({ pool, applicationName: 'x', idleForMs: -1 })).rejects.toThrow(
      RangeError,
    );
    await expect(
      reapIdleConnections({ pool, applicationName: 'x', idleForMs: 1, maxPerRun: 0 }),
    ).rejects.toThrow(/maxPerRun/);
    expect(() => scheduleReaper({ pool, applicationName: 'x', idleForMs: 1, intervalMs: 0 })).toThrow(
      /intervalMs/,
    );
  });
});

describe('reaper privileges (a real non-superuser role)', () => {
  it('says clearly what it lacks, then works once granted', async () => {
    const label = `cvat:server:${suffix}:priv`;
    const pool = track(
      createPool({
        connectionString: pgUrl(db.name, reaperRole),
        max: 1,
        applicationName: `sluice-reaper-priv-${suffix}`,
      }),
    );
    const targets = await open(2, label, appRole);
    const superuserOwned = await open(1, label); // the test superuser's own session
    await sleep(300);
    const options = { pool, applicationName: label, idleForMs: 100 };

    const hidden = (await reapIdleConnections(options).catch((e: unknown) => e)) as ReapPrivilegeError;
    expect(isReapPrivilegeError(hidden)).toBe(true);
    expect(hidden.code).toBe('E_REAP_PRIVILEGE');
    expect(hidden.message).toContain('pg_read_all_stats');
    expect(hidden.message).toContain(reaperRole);
    expect(sorted(hidden.result.denied.map((d) => d.pid))).toEqual(sorted([...targets, ...superuserOwned]));
    expect(hidden.result.denied.every((d) => d.reason === 'not-visible')).toBe(true);
    expect(hidden.result.reaped).toEqual([]);

    await adminQuery(`GRANT pg_read_all_stats TO "${reaperRole}"`);
    const refused = (await reapIdleConnections(options).catch((e: unknown) => e)) as ReapPrivilegeError;
    expect(isReapPrivilegeError(refused)).toBe(true);
    expect(refused.message).toContain('pg_signal_backend');
    expect(refused.result.denied.every((d) => d.reason === 'not-permitted')).toBe(true);
    expect(refused.result.denied).toHaveLength(3);
    const reported: ReapResult = await reapIdleConnections({ ...options, onDenied: 'report' });
    expect(reported.denied).toHaveLength(3);
    expect(reported.reaped).toEqual([]);
    expect(await alive(targets)).toEqual(sorted(targets));

    await adminQuery(`GRANT pg_signal_backend TO "${reaperRole}"`);
    const partial = (await reapIdleConnections(options).catch((e: unknown) => e)) as ReapPrivilegeError;
    // pg_signal_backend covers ordinary roles; a superuser's session still needs a superuser.
    expect(sorted(partial.result.reaped.map((b) => b.pid))).toEqual(sorted(targets));
    expect(partial.result.denied.map((d) => [d.pid, d.reason])).toEqual([
      [superuserOwned[0], 'not-permitted'],
    ]);
    await waitFor(async () => (await alive(targets)).length === 0, { what: 'the reaped backends to exit' });
    expect(await alive(superuserOwned)).toEqual(superuserOwned);
  });
});

describe('scheduleReaper', () => {
  it('runs on an interval, reports each run, and stops on close()', async () => {
    const label = `cvat:server:${suffix}:sched`;
    const pool = track(
      createPool({ connectionString: db.url, max: 1, applicationName: `sluice-reaper-s-${suffix}` }),
    );
    await using reaper = scheduleReaper({ pool, applicationName: label, idleForMs: 100, intervalMs: 50 });
    const runs: ReapResult[] = [];
    reaper.onReap((r) => runs.push(r));
    const targets = await open(2, label);
    await waitFor(() => runs.flatMap((r) => r.reaped).length === 2, {
      timeoutMs: 15_000,
      what: 'two reaped',
    });
    expect(sorted(runs.flatMap((r) => r.reaped.map((b) => b.pid)))).toEqual(sorted(targets));
    expect(reaper.lastResult).toBeDefined();
    await reaper.close();
    await reaper.close();
    const count = runs.length;
    await sleep(150);
    expect(runs.length).toBe(count);
    await expect(reaper.runNow()).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
  });
});
