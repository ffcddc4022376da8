import { createTestDatabase, type TestDatabase, uniqueSuffix } from '@sluice/test-support';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPool,
  isPoolError,
  type PoolError,
  type PoolWarning,
  type SluicePool,
  sharedPool,
} from '../src/index.ts';

let db: TestDatabase;
const app = (label: string): string => `sluice-pool-${label}-${uniqueSuffix()}`;

beforeAll(async () => {
  db = await createTestDatabase('pool_core');
});
afterAll(async () => {
  await db?.drop();
});

/** Resolves/rejects from the outside: holds a client for as long as a test wants. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function waitUntil(probe: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000; // generous: the machine may be loaded
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('options', () => {
  it('requires max and names bad options', () => {
    const connectionString = 'postgres://127.0.0.1/x';
    expect(() => createPool({ connectionString } as never)).toThrow(
      'max should be an integer, got undefined',
    );
    expect(() => createPool({ connectionString, max: 0 })).toThrow(RangeError);
    expect(() => createPool({ connectionString, max: 1.5 })).toThrow(/max should be an integer/);
    expect(() => createPool({ connectionString, max: 2, maxWaiting: -1 })).toThrow(/maxWaiting/);
    expect(() => createPool({ connectionString, max: 2, acquireTimeoutMs: 0 })).toThrow(/acquireTimeoutMs/);
    expect(() => createPool({ connectionString, max: 2, applicationName: 'x'.repeat(64) })).toThrow(
      /applicationName/,
    );
    expect(() => createPool({ connectionString: '', max: 2 })).toThrow(/connectionString/);
    expect(() => createPool({ connectionString, max: 2, statementTimeoutMs: '5s' as never })).toThrow(
      TypeError,
    );
    expect(() => createPool({ connectionString, max: 2, serverTimeouts: 'session' as never })).toThrow(
      /serverTimeouts should be one of 'auto', 'startup', 'transaction'/,
    );
  });
});

describe('createPool', () => {
  it('runs 200 concurrent queries through max 5 and never opens more than 5 backends', async () => {
    const applicationName = app('storm');
    await using pool = createPool({ connectionString: db.url, max: 5, maxWaiting: 200, applicationName });
    const sampler = new pg.Client({
      connectionString: db.url,
      application_name: `${applicationName}-sampler`,
    });
    await sampler.connect();
    let running = true;
    let peak = 0;
    let samples = 0;
    const sampling = (async () => {
      while (running) {
        const { rows } = await sampler.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
          [applicationName],
        );
        peak = Math.max(peak, rows[0]?.n ?? 0);
        samples += 1;
      }
    })();
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          pool.query<{ i: number }>('SELECT $1::int AS i, pg_sleep(0.005)', [i]).then((r) => r.rows[0]?.i),
        ),
      );
      expect(results).toEqual(Array.from({ length: 200 }, (_, i) => i));
    } finally {
      running = false;
      await sampling;
      await sampler.end();
    }
    expect(samples).toBeGreaterThan(3);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(5);
    const stats = pool.stats();
    expect(stats.acquired).toBe(200);
    expect(stats.total).toBeLessThanOrEqual(5);
    expect(stats.active).toBe(0);
    expect(stats.waiting).toBe(0);
    expect(stats.acquireWaitMs.samples).toBe(200);
    expect(stats.acquireWaitMs.p99).toBeGreaterThanOrEqual(stats.acquireWaitMs.p50);
  });

  it('sets application_name, statement_timeout and idle_in_transaction_session_timeout', async () => {
    const applicationName = app('settings');
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      applicationName,
      statementTimeoutMs: 234,
      idleInTransactionTimeoutMs: 5678,
    });
    const { rows } = await pool.query<{ a: string; s: string; i: string }>(
      `SELECT current_setting('application_name') AS a, current_setting('statement_timeout') AS s,
              current_setting('idle_in_transaction_session_timeout') AS i`,
    );
    expect(rows[0]).toEqual({ a: applicationName, s: '234ms', i: '5678ms' });
    await expect(pool.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ code: '57014' });
    // A statement timeout is an ordinary error: the connection is reused, not destroyed.
    expect((await pool.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
    expect(pool.stats().destroyed).toBe(0);
  });

  it('closes idle connections after idleTimeoutMs and replaces old ones after maxLifetimeSeconds', async () => {
    await using idle = createPool({
      connectionString: db.url,
      max: 2,
      idleTimeoutMs: 100,
      applicationName: app('idle'),
    });
    const removed: Array<number | undefined> = [];
    idle.on('remove', ({ pid }) => removed.push(pid));
    await Promise.all([idle.query('SELECT pg_sleep(0.02)'), idle.query('SELECT pg_sleep(0.02)')]);
    const opened = idle.backendPids().length + removed.length;
    expect(opened).toBe(2);
    await waitUntil(() => removed.length === 2, 'idle connections to close');
    expect(idle.totalCount).toBe(0);

    await using aging = createPool({
      connectionString: db.url,
      max: 1,
      idleTimeoutMs: 0,
      maxLifetimeSeconds: 1,
      applicationName: app('life'),
    });
    const pid = async () => (await aging.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]?.p;
    const first = await pid();
    expect(await pid()).toBe(first);
    await new Promise((r) => setTimeout(r, 1100));
    await waitUntil(() => aging.totalCount === 0, 'the expired connection to close');
    expect(await pid()).not.toBe(first);
  });

  it("defaults application_name to 'sluice'", async () => {
    await using pool = createPool({ connectionString: db.url, max: 1 });
    expect(pool.applicationName).toBe('sluice');
    const { rows } = await pool.query<{ a: string }>("SELECT current_setting('application_name') AS a");
    expect(rows[0]?.a).toBe('sluice');
  });

  it('fails fast beyond maxWaiting and a queued acquire that times out removes only itself', async () => {
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      maxWaiting: 2,
      applicationName: app('sat'),
    });
    const hold = deferred();
    const holder = pool.withClient(() => hold.promise);
    await waitUntil(() => pool.activeCount === 1, 'the holder');

    const log: string[] = [];
    const short = pool.withClient(async () => log.push('short'), { timeoutMs: 100 });
    const long = pool.withClient(async () => log.push('long'), { timeoutMs: 5_000 });
    // Awaited below; should an assertion fail first, closing the pool rejects them unobserved.
    for (const p of [holder, short, long]) p.catch(() => {});
    expect(pool.waitingCount).toBe(2);

    const started = Date.now();
    const over = await pool.query('SELECT 1').catch((e: unknown) => e);
    expect(isPoolError(over, 'E_POOL_EXHAUSTED')).toBe(true);
    expect((over as PoolError).status).toBe(503);
    expect(Date.now() - started).toBeLessThan(5000); // at once, not after the 10 s default wait

    const timedOut = await short.catch((e: unknown) => e);
    expect(isPoolError(timedOut, 'E_POOL_TIMEOUT')).toBe(true);
    // The other waiter is still queued; the slot goes to it once the holder releases.
    expect(pool.waitingCount).toBe(1);
    hold.resolve();
    await holder;
    await long;
    expect(log).toEqual(['long']);
    const stats = pool.stats();
    expect(stats.exhausted).toBe(1);
    expect(stats.timeouts).toBe(1);
    expect(stats.waiting).toBe(0);
    expect(stats.active).toBe(0);
  });

  it("expires waiters with the default timeout in order (pg.Pool's connectionTimeoutMillis)", async () => {
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      // Wide apart, so a stalled event loop cannot blur which deadline has come.
      acquireTimeoutMs: 1000,
      applicationName: app('deadline'),
    });
    const hold = deferred();
    const holder = pool.withClient(() => hold.promise);
    await waitUntil(() => pool.activeCount === 1, 'the holder');
    const settledAt: Array<[string, number]> = [];
    const started = Date.now();
    const track = (name: string, p: Promise<unknown>) =>
      p.then(
        () => settledAt.push([`${name}:ok`, Date.now() - started]),
        (e: { code?: string }) => settledAt.push([`${name}:${e.code}`, Date.now() - started]),
      );
    const first = track('a', pool.query('SELECT 1'));
    const second = track('b', pool.query('SELECT 1'));
    await new Promise((r) => setTimeout(r, 500));
    const third = track('c', pool.query('SELECT 1'));
    await Promise.all([first, second]);
    expect(settledAt.map(([what]) => what)).toEqual(['a:E_POOL_TIMEOUT', 'b:E_POOL_TIMEOUT']);
    expect(pool.waitingCount).toBe(1); // c entered later: its deadline has not come yet
    hold.resolve();
    await holder;
    await third;
    expect(settledAt.map(([what]) => what)).toEqual(['a:E_POOL_TIMEOUT', 'b:E_POOL_TIMEOUT', 'c:ok']);
    expect(settledAt[0]?.[1]).toBeGreaterThanOrEqual(990);
    expect(pool.stats().timeouts).toBe(2);
  });

  it('serves queued acquires in FIFO order and honours an AbortSignal', async () => {
    await using pool = createPool({ connectionString: db.url, max: 1, applicationName: app('fifo') });
    const hold = deferred();
    const holder = pool.withClient(() => hold.promise);
    await waitUntil(() => pool.activeCount === 1, 'the holder');
    const order: number[] = [];
    const controller = new AbortController();
    const aborted = pool.withClient(async () => order.push(-1), { signal: controller.signal });
    const waiters = [1, 2, 3].map((n) => pool.withClient(async () => order.push(n)));
    // Awaited below; should an assertion fail first, closing the pool rejects them unobserved.
    for (const p of [holder, ...waiters]) p.catch(() => {});
    controller.abort(new Error('caller went away'));
    const abortError = await aborted.catch((e: unknown) => e);
    expect(isPoolError(abortError, 'E_POOL_ABORTED')).toBe(true);
    expect((abortError as PoolError).cause).toBeInstanceOf(Error);
    expect(pool.waitingCount).toBe(3);
    hold.resolve();
    await Promise.all([holder, ...waiters]);
    expect(order).toEqual([1, 2, 3]);
    await expect(pool.query('SELECT 1', [], { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'E_POOL_ABORTED',
    });
  });

  it('an acquire aborted before it gets a client never runs its work; its place goes to the next', async () => {
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      maxWaiting: 1,
      applicationName: app('abort'),
    });
    await pool.query('CREATE TABLE abort_log (what text)');
    const hold = deferred();
    const holder = pool.withClient(() => hold.promise);
    await waitUntil(() => pool.activeCount === 1, 'the holder');
    const controller = new AbortController();
    const aborted = pool.query("INSERT INTO abort_log VALUES ('aborted')", [], { signal: controller.signal });
    expect(pool.waitingCount).toBe(1);
    controller.abort(new Error('the HTTP client went away'));
    await expect(aborted).rejects.toMatchObject({ code: 'E_POOL_ABORTED', status: 499 });
    // Its place in the bounded queue is free at once.
    expect(pool.waitingCount).toBe(0);
    const next = pool.query("INSERT INTO abort_log VALUES ('next')");
    next.catch(() => {});
    hold.resolve();
    await holder;
    await next;
    const { rows } = await pool.query<{ what: string }>('SELECT what FROM abort_log');
    expect(rows).toEqual([{ what: 'next' }]);
    expect(pool.stats()).toMatchObject({ acquired: 4, waiting: 0, active: 0, total: 1 });
    // An acquire's own timeout may only shorten the pool's.
    await expect(pool.query('SELECT 1', [], { timeoutMs: 10_001 })).rejects.toThrow(
      'timeoutMs should be an integer between 1 and 10000, got 10001',
    );
  });

  it("serverTimeouts: 'transaction' sets them with SET LOCAL in the BEGIN round trip, never for the session", async () => {
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      applicationName: app('local'),
      statementTimeoutMs: 250,
      idleInTransactionTimeoutMs: 4000,
      serverTimeouts: 'transaction',
    });
    const read =
      "SELECT current_setting('statement_timeout') AS s, current_setting('idle_in_transaction_session_timeout') AS i";
    expect((await pool.query(read)).rows[0]).toEqual({ s: '0', i: '0' });
    expect((await pool.withTransaction((c) => c.query(read))).rows[0]).toEqual({ s: '250ms', i: '4s' });
    await expect(pool.withTransaction((c) => c.query('SELECT pg_sleep(3)'))).rejects.toMatchObject({
      code: '57014',
    });
    expect((await pool.query(read)).rows[0]).toEqual({ s: '0', i: '0' });
    expect(pool.stats().destroyed).toBe(0);
  });

  it('withTransaction commits, rolls back on error and releases exactly once', async () => {
    await using pool = createPool({ connectionString: db.url, max: 2, applicationName: app('tx') });
    await pool.query('CREATE TABLE tx_items (id int PRIMARY KEY)');
    await pool.withTransaction(async (c) => {
      await c.query('INSERT INTO tx_items VALUES (1)');
    });
    const boom = new Error('boom');
    await expect(
      pool.withTransaction(async (c) => {
        await c.query('INSERT INTO tx_items VALUES (2)');
        throw boom;
      }),
    ).rejects.toBe(boom);
    await expect(
      pool.withTransaction(async (c) => {
        await c.query('INSERT INTO tx_items VALUES (3)');
        await c.query('INSERT INTO tx_items VALUES (3)'); // duplicate key: the transaction is aborted
      }),
    ).rejects.toMatchObject({ code: '23505' });
    const { rows } = await pool.query<{ id: number }>('SELECT id FROM tx_items ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([1]);

    const serial = await pool.withTransaction(
      async (c) =>
        (await c.query<{ l: string }>("SELECT current_setting('transaction_isolation') AS l")).rows[0]?.l,
      { isolationLevel: 'serializable', readOnly: true },
    );
    expect(serial).toBe('serializable');

    // A caller that releases inside withClient does not cause a second release (a second call of
    // its own is pg.Pool's error).
    await pool.withClient(async (c) => {
      c.release();
      expect(() => c.release()).toThrow(/already been released/);
    });
    expect(pool.activeCount).toBe(0);
    expect(pool.stats().destroyed).toBe(0);
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('destroys a client released inside an open transaction instead of reusing it', async () => {
    await using pool = createPool({ connectionString: db.url, max: 1, applicationName: app('opentx') });
    const firstPid = await pool.withClient(async (c) => {
      await c.query('BEGIN');
      return (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    });
    expect(pool.stats().destroyed).toBe(1);
    const { rows } = await pool.query<{ pid: number; tx: string }>(
      'SELECT pg_backend_pid() AS pid, (SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS tx',
    );
    expect(rows[0]?.pid).not.toBe(firstPid);
    expect(rows[0]?.tx).toBe('active');
  });

  it('close() is idempotent, refuses new work and fails queued acquires', async () => {
    const pool = createPool({ connectionString: db.url, max: 1, applicationName: app('close') });
    const hold = deferred();
    const holder = pool.withClient(async (c) => {
      await hold.promise;
      return (await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one;
    });
    await waitUntil(() => pool.activeCount === 1, 'the holder');
    const queued = pool.query('SELECT 1');
    expect(pool.waitingCount).toBe(1);
    const first = pool.close();
    const second = pool.close();
    expect(second).toBe(first);
    expect(pool.closed).toBe(true);
    await expect(queued).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
    await expect(pool.query('SELECT 1')).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
    // Work already checked out finishes before close() resolves.
    hold.resolve();
    expect(await holder).toBe(1);
    await first;
    expect(pool.totalCount).toBe(0);
    await pool[Symbol.asyncDispose]();
  });

  it('close() ends a client that is never released after closeTimeoutMs', async () => {
    const pool = createPool({
      connectionString: db.url,
      max: 1,
      closeTimeoutMs: 50,
      applicationName: app('stuck'),
    });
    const client = await pool.connect();
    await pool.close();
    expect(pool.totalCount).toBe(0);
    expect(pool.activeCount).toBe(0);
    // close() released it with an error (its connection is gone): pg.Pool refuses a second release.
    expect(() => client.release()).toThrow(/already been released/);
    expect(pool.stats().destroyed).toBe(1);
  });
});

describe('sharedPool', () => {
  it('returns one pool per connection settings, reference-counted', async () => {
    const applicationName = app('shared');
    const a = sharedPool({ connectionString: db.url, max: 2, applicationName });
    const b = sharedPool({ connectionString: db.url, max: 2, applicationName });
    const other = sharedPool({ connectionString: db.url, max: 2, applicationName: `${applicationName}-x` });
    expect(() => sharedPool({ connectionString: db.url, max: 3, applicationName })).toThrow(
      /max is 3 but the shared pool/,
    );
    const pidA = await a.withClient(
      async (c) => (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]?.p,
    );
    const pidB = await b.withClient(
      async (c) => (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]?.p,
    );
    expect(pidB).toBe(pidA); // the same underlying connection
    expect(b.totalCount).toBe(1);
    await other.query('SELECT 1');
    expect(other.backendPids()).not.toContain(pidA);

    await a.close();
    await a.close(); // idempotent per handle: must not release b's reference
    expect(a.closed).toBe(true);
    await expect(a.query('SELECT 1')).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
    expect(b.closed).toBe(false);
    expect((await b.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await b.close();
    expect(b.totalCount).toBe(0);
    // After the last close a new call makes a fresh pool.
    await using c = sharedPool({ connectionString: db.url, max: 3, applicationName });
    expect(c.max).toBe(3);
    await other.close();
  });
});

describe('verify', () => {
  it('reads the server budget, warns or throws when max does not fit', async () => {
    await using pool = createPool({ connectionString: db.url, max: 500, applicationName: app('verify') });
    const warnings: PoolWarning[] = [];
    pool.on('warning', (w) => warnings.push(w));
    const { rows } = await pool.query<{ mc: number; rc: number }>(
      "SELECT current_setting('max_connections')::int AS mc, current_setting('superuser_reserved_connections')::int AS rc",
    );
    const result = await pool.verify();
    expect(result.maxConnections).toBe(rows[0]?.mc);
    expect(result.reservedConnections).toBe(rows[0]?.rc);
    expect(result.budget).toBe(result.maxConnections - result.reservedConnections);
    expect(result.fits).toBe(result.maxConnections - result.reservedConnections >= 500);
    expect(result.otherConnections).toBeGreaterThanOrEqual(0);
    expect(warnings.map((w) => w.code)).toEqual(result.fits ? [] : ['E_POOL_MISFIT']);
    if (!result.fits) {
      const error = await pool.verify({ onMisfit: 'throw' }).catch((e: unknown) => e);
      expect(isPoolError(error, 'E_POOL_MISFIT')).toBe(true);
      expect((error as Error).message).toMatch(/max 500 does not fit/);
    }
    await expect(pool.verify({ onMisfit: 'explode' as never })).rejects.toThrow(/onMisfit/);

    await using small = createPool({ connectionString: db.url, max: 2, applicationName: app('verify2') });
    const ok = await small.verify({ onMisfit: 'throw' });
    expect(ok.fits).toBe(true);
    expect(ok.poolMax).toBe(2);
  });
});

describe('typed events', () => {
  it('on() returns an unsubscribe function', async () => {
    const pool: SluicePool = createPool({ connectionString: db.url, max: 1, applicationName: app('events') });
    const connects: Array<number | undefined> = [];
    const off = pool.on('connect', ({ pid }) => connects.push(pid));
    await pool.query('SELECT 1');
    off();
    expect(connects).toHaveLength(1);
    expect(pool.backendPids()).toEqual(connects);
    await pool.close();
    expect(pool.backendPids()).toEqual([]);
  });
});
