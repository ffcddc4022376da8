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
  type ReaperPool,
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
    const old = await open(3, label);
    const otherApp = await open(1, `cvat:worker:${suffix}`);
    const inTx = await open(1, label);
    const txClient = clients[clients.length - 1];
    await txClient?.query('BEGIN');
    await txClient?.query('SELECT 1');
    const active = await open(1, label);
    const busy = clients[clients.length - 1]?.query('SELECT pg_sleep(30)').catch((e: unknown) => e);
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
    expect(result).toMatchObject({ kept: 0, deferred: 0, denied: [] });
    await waitFor(async () => (await alive(old)).length === 0, { what: 'the reaped backends to exit' });

    // Never idle in transaction, never active, never another application, never the pool's own.
    const survivors = [...otherApp, ...inTx, ...active, ...young, ...pool.backendPids()];
    expect(await alive(survivors)).toEqual(sorted(survivors));
    await adminQuery('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [active]);
    await busy;
  });

  it('keeps the most recently active idle connections and matches the last statement', async () => {
    const label = `cvat:server:${suffix}:keep`;
    const pool = track(
      createPool({ connectionString: db.url, max: 1, applicationName: `sluice-reaper-k-${suffix}` }),
    );
    await pool.query('CREATE TABLE IF NOT EXISTS django_session (session_key varchar(40) PRIMARY KEY)');
    const lookup = "SELECT session_key FROM django_session WHERE session_key = 'qwertyuiop'";
    // Leaked the way the seed leaks them: idle since the session lookup, at staggered times.
    const leaked: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const [pid] = await open(1, label);
      await clients[clients.length - 1]?.query(lookup);
      leaked.push(pid ?? 0);
      await sleep(150);
    }
    const otherStatement = await open(1, label); // idle as long, but its last statement is another one
    await sleep(1100);

    const byLike = await reapIdleConnections({
      pool,
      applicationName: label,
      idleForMs: 1000,
      lastQuery: '%FROM django_session%',
      keep: () => 1,
      dryRun: true,
    });
    // keep 1: the most recently active idle connection (the other-statement one) is left alone,
    // whatever its statement; of the rest, only session lookups are reaped.
    expect(byLike.kept).toBe(1);
    expect(sorted(byLike.reaped.map((b) => b.pid))).toEqual(sorted(leaked));

    const result = await reapIdleConnections({
      pool,
      applicationName: label,
      idleForMs: 1000,
      lastQuery: /django_session/,
      keep: () => 2, // e.g. two requests in flight: the two most recent idle ones stay
    });
    expect(result.kept).toBe(2);
    expect(sorted(result.reaped.map((b) => b.pid))).toEqual(sorted(leaked.slice(0, 2)));
    await waitFor(async () => (await alive(leaked.slice(0, 2))).length === 0, { what: 'reaped to exit' });
    expect(await alive([leaked[2] ?? 0, ...otherStatement])).toEqual(
      sorted([leaked[2] ?? 0, ...otherStatement]),
    );
    await expect(
      reapIdleConnections({ pool, applicationName: label, idleForMs: 1, keep: () => -1 }),
    ).rejects.toThrow(/keep\(\) should be an integer >= 0/);
  });

  it('leaves alone a connection that ran anything between the look and the kill', async () => {
    const label = `cvat:server:${suffix}:race`;
    const inner = track(
      createPool({ connectionString: db.url, max: 1, applicationName: `sluice-reaper-r-${suffix}` }),
    );
    const [quiet, picked] = await open(2, label);
    const pickedClient = clients[clients.length - 1];
    await sleep(300);
    // The reaper's own pool, with a request arriving on one candidate just before the kill.
    const pool: ReaperPool = {
      applicationName: inner.applicationName,
      backendPids: () => inner.backendPids(),
      query: (async (text: string, values?: unknown[]) => {
        if (text.includes('pg_terminate_backend')) await pickedClient?.query('SELECT 1');
        return inner.query(text, values);
      }) as ReaperPool['query'],
    };
    const result = await reapIdleConnections({ pool, applicationName: label, idleForMs: 200 });
    expect(result.reaped.map((b) => b.pid)).toEqual([quiet]);
    expect(await alive([picked ?? 0])).toEqual([picked]);
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
    // A terminated backend stays in pg_stat_activity until it has exited: let them go first.
    await waitFor(async () => (await alive(first.reaped.map((b) => b.pid))).length === 0, {
      what: 'the reaped backends to exit',
    });
    // The same as a prefix pattern (how CVAT's workers are named: 'cvat:worker:<queues>').
    const second = await reapIdleConnections({
      pool,
      applicationName: `${base}*`,
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
    let clock = 0;
    await using reaper = scheduleReaper({
      pool,
      applicationName: label,
      idleForMs: 100,
      intervalMs: 50,
      now: () => clock++,
    });
    const runs: ReapResult[] = [];
    reaper.on('reap', (r) => runs.push(r));
    const targets = await open(2, label);
    await waitFor(() => runs.flatMap((r) => r.reaped).length === 2, {
      timeoutMs: 15_000,
      what: 'two reaped',
    });
    expect(sorted(runs.flatMap((r) => r.reaped.map((b) => b.pid)))).toEqual(sorted(targets));
    expect(reaper.lastResult).toBeDefined();
    expect(clock).toBeGreaterThan(0); // its memory of signalled backends runs on the injected clock
    await reaper.close();
    await reaper.close();
    const count = runs.length;
    await sleep(150);
    expect(runs.length).toBe(count);
    await expect(reaper.runNow()).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
  });
});
