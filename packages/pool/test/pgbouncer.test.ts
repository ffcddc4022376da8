import { existsSync } from 'node:fs';
import {
  createTestDatabase,
  freePort,
  type OwnPgBouncer,
  startPgBouncer,
  type TestDatabase,
  uniqueSuffix,
  waitFor,
} from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPool,
  detectPgBouncer,
  isPoolError,
  monitorPgBouncer,
  type PgBouncerSample,
  type SluicePool,
} from '../src/index.ts';

let db: TestDatabase;
let bouncer: OwnPgBouncer;
const app = (label: string): string => `sluice-bouncer-${label}-${uniqueSuffix()}`;

beforeAll(async () => {
  db = await createTestDatabase('pool_pgbouncer');
  // Transaction mode, two server connections: what the incident's PgBouncer setup runs, smaller.
  bouncer = await startPgBouncer({
    database: db.name,
    poolSize: 2,
    poolMode: 'transaction',
    maxClientConn: 50,
  });
});
afterAll(async () => {
  await bouncer?.stop();
  await db?.drop();
});

describe('a pool through PgBouncer in transaction mode', () => {
  it('works out of the box with server timeouts: refused at startup once, then set per transaction', async () => {
    await using pool = createPool({
      connectionString: bouncer.url,
      max: 4,
      applicationName: app('auto'),
      statementTimeoutMs: 300,
      idleInTransactionTimeoutMs: 5000,
    });
    // PgBouncer refuses statement_timeout as a startup parameter; the pool retries without it.
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    const settings = await pool.withTransaction(
      async (c) =>
        (
          await c.query<{ s: string; i: string }>(
            "SELECT current_setting('statement_timeout') AS s, current_setting('idle_in_transaction_session_timeout') AS i",
          )
        ).rows[0],
    );
    expect(settings).toEqual({ s: '300ms', i: '5s' });
    // SET LOCAL: the setting ends with the transaction, nothing is left on PgBouncer's server connection.
    const after = await pool.query<{ s: string }>("SELECT current_setting('statement_timeout') AS s");
    expect(after.rows[0]?.s).toBe('0');
    // The server-side timeout holds inside transactions...
    const slow = await pool.withTransaction((c) => c.query('SELECT pg_sleep(3)')).catch((e: unknown) => e);
    expect(slow).toMatchObject({ code: '57014' });
    // ...and outside them the client-side backstop (statementTimeoutMs + 1 s) ends the wait and
    // destroys the connection, which may still be busy.
    const started = Date.now();
    const outside = await pool.query('SELECT pg_sleep(3)').catch((e: unknown) => e);
    expect((outside as Error).message).toMatch(/Query read timeout/);
    expect(Date.now() - started).toBeLessThan(2900);
    expect(pool.stats().destroyed).toBe(1);
    expect((await pool.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);

    // Many concurrent callers through a PgBouncer pool of 2: all served, none refused.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => pool.query<{ i: number }>('SELECT $1::int AS i', [i])),
    );
    expect(results.map((r) => r.rows[0]?.i)).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it("serverTimeouts: 'startup' fails to connect through PgBouncer, and says why", async () => {
    await using pool = createPool({
      connectionString: bouncer.url,
      max: 1,
      applicationName: app('startup'),
      statementTimeoutMs: 300,
      serverTimeouts: 'startup',
    });
    const error = await pool.query('SELECT 1').catch((e: unknown) => e);
    expect(isPoolError(error, 'E_POOL_CONNECT')).toBe(true);
    expect((error as Error).message).toMatch(/unsupported startup parameter: statement_timeout/);
  });
});

describe('detectPgBouncer', () => {
  it('finds the admin console behind a PgBouncer URL and nothing behind PostgreSQL', async () => {
    const found = await detectPgBouncer(bouncer.url);
    expect(found).toEqual({ adminUrl: bouncer.adminUrl, version: expect.stringMatching(/^PgBouncer \d/) });
    expect(await detectPgBouncer(db.url)).toBeUndefined();
    const closed = await freePort();
    expect(
      await detectPgBouncer(`postgres://postgres@127.0.0.1:${closed}/x`, { timeoutMs: 1000 }),
    ).toBeUndefined();
    await expect(detectPgBouncer('not a url')).rejects.toThrow(
      /connectionString should be a postgres:\/\/ URL/,
    );
  });
});

describe('monitorPgBouncer', () => {
  it('samples SHOW POOLS: clients wait while both server connections are busy', async () => {
    const pool: SluicePool = createPool({
      connectionString: bouncer.url,
      max: 6,
      applicationName: app('load'),
    });
    await using monitor = monitorPgBouncer({
      adminUrl: bouncer.adminUrl,
      database: db.name,
      intervalMs: 50,
      now: () => 7,
    });
    const samples: PgBouncerSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    try {
      const idle = await monitor.sampleNow();
      expect(idle).toMatchObject({ at: 7, database: db.name, poolSize: 2, clientWaiting: 0 });
      // Six statements of 1.5 s over two server connections: four clients must wait.
      const load = Array.from({ length: 6 }, () => pool.query('SELECT pg_sleep(1.5)'));
      // Waiting starts while the last clients may still be logging in: wait for all six.
      const full = (s: PgBouncerSample): boolean =>
        s.clientWaiting > 0 && s.clientActive + s.clientWaiting >= 6;
      await waitFor(() => samples.some(full), { timeoutMs: 10_000, what: 'six clients, some waiting' });
      const busy = samples.find(full) as PgBouncerSample;
      expect(busy.poolMode).toBe('transaction');
      expect(busy.serverActive).toBeLessThanOrEqual(2);
      expect(busy.clientActive + busy.clientWaiting).toBeGreaterThanOrEqual(6);
      await waitFor(() => (monitor.lastSample?.maxWaitMs ?? 0) > 0, {
        timeoutMs: 10_000,
        what: 'maxwait > 0',
      });
      await Promise.all(load);
      await waitFor(() => monitor.lastSample?.clientWaiting === 0, { timeoutMs: 10_000, what: 'no waiting' });
    } finally {
      await pool.close();
    }
    await monitor.close();
    await monitor.close();
    await expect(monitor.sampleNow()).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
  });

  it('reports a failed sample and recovers once PgBouncer answers again', async () => {
    const port = await freePort();
    await using monitor = monitorPgBouncer({
      adminUrl: `postgres://postgres@127.0.0.1:${port}/pgbouncer`,
      intervalMs: 20,
      timeoutMs: 500,
    });
    const errors: unknown[] = [];
    monitor.on('error', (e) => errors.push(e));
    await waitFor(() => errors.length >= 2, { timeoutMs: 10_000, what: 'failed samples' });
    expect(monitor.lastSample).toBeUndefined();
  });
});

describe('startPgBouncer', () => {
  it('stops the process and leaves nothing behind', async () => {
    const own = await startPgBouncer({ database: db.name, poolSize: 1 });
    const pid = own.pid;
    expect(pid).toBeGreaterThan(0);
    expect(await detectPgBouncer(own.url)).toBeDefined();
    await own.stop();
    await own.stop();
    expect(own.pid).toBeUndefined();
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(own.dir)).toBe(false);
    expect(await detectPgBouncer(own.url, { timeoutMs: 1000 })).toBeUndefined();
  });
});
