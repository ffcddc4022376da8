import { createTestDatabase, type TestDatabase, uniqueSuffix, waitFor } from '@sluice/test-support';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createPool,
  type PurgeBatch,
  type PurgeRun,
  purgeExpiredSessions,
  type SluicePool,
  schedulePurge,
} from '../src/index.ts';

let db: TestDatabase;
let pool: SluicePool;

beforeAll(async () => {
  db = await createTestDatabase('pool_purge');
  pool = createPool({ connectionString: db.url, max: 2, applicationName: `sluice-purge-${uniqueSuffix()}` });
  // The table exactly as Django 3.2's sessions migration creates it on PostgreSQL.
  await pool.query(`CREATE TABLE "django_session" (
    "session_key" varchar(40) NOT NULL PRIMARY KEY,
    "session_data" text NOT NULL,
    "expire_date" timestamp with time zone NOT NULL)`);
  await pool.query('CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date")');
  await pool.query(
    'CREATE INDEX "django_session_session_key_c0390e0f_like" ON "django_session" ("session_key" varchar_pattern_ops)',
  );
  // Each DELETE statement logs its transaction id and row count, to prove batches are separate.
  await pool.query('CREATE TABLE purge_log (txid bigint NOT NULL, deleted int NOT NULL)');
  await pool.query(`CREATE FUNCTION log_purge() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO purge_log SELECT txid_current(), count(*) FROM gone; RETURN NULL; END $$`);
  await pool.query(`CREATE TRIGGER django_session_purge_log AFTER DELETE ON django_session
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_purge()`);
});
afterAll(async () => {
  await pool?.close();
  await db?.drop();
});
beforeEach(async () => {
  await pool.query('TRUNCATE django_session, purge_log');
});

async function seed(expired: number, valid: number, prefix = 'k'): Promise<void> {
  await pool.query(
    `INSERT INTO django_session (session_key, session_data, expire_date)
     SELECT $3 || lpad(i::text, 30, '0'), 'e30:1a2b3c:signature', now() - interval '1 hour' - i * interval '1 second'
       FROM generate_series(1, $1::int) AS i
     UNION ALL
     SELECT $3 || 'v' || lpad(i::text, 29, '0'), 'e30:1a2b3c:signature', now() + interval '14 days'
       FROM generate_series(1, $2::int) AS i`,
    [expired, valid, prefix],
  );
}

async function count(where: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM django_session WHERE ${where}`,
  );
  return rows[0]?.n ?? -1;
}

describe('purgeExpiredSessions', () => {
  it('deletes only expired rows, in bounded batches, each its own transaction', async () => {
    await seed(2345, 500);
    const batches: PurgeBatch[] = [];
    const first = await purgeExpiredSessions({
      pool,
      batchSize: 200,
      maxBatches: 5,
      onBatch: (b) => batches.push(b),
    });
    expect(first).toBe(1000);
    expect(batches.map((b) => b.deleted)).toEqual([200, 200, 200, 200, 200]);
    expect(await count('expire_date < now()')).toBe(1345);

    const rest = await purgeExpiredSessions({ pool, batchSize: 200, maxBatches: 100 });
    expect(rest).toBe(1345);
    expect(await count('expire_date < now()')).toBe(0);
    expect(await count('expire_date >= now()')).toBe(500);

    const { rows } = await pool.query<{ txid: string; deleted: number }>(
      'SELECT txid, deleted FROM purge_log',
    );
    expect(rows).toHaveLength(12); // 5 + 6 full batches + one of 145
    expect(new Set(rows.map((r) => r.txid)).size).toBe(12);
    expect(Math.max(...rows.map((r) => r.deleted))).toBe(200);
    expect(rows.reduce((n, r) => n + r.deleted, 0)).toBe(2345);

    expect(await purgeExpiredSessions({ pool })).toBe(0);
  });

  it('skips rows another transaction holds instead of waiting for them', async () => {
    await seed(50, 10);
    const holder = new pg.Client({
      connectionString: db.url,
      application_name: `purge-holder-${uniqueSuffix()}`,
    });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        'SELECT session_key FROM django_session WHERE expire_date < now() ORDER BY session_key LIMIT 5 FOR UPDATE',
      );
      const deleted = await purgeExpiredSessions({ pool, batchSize: 20, lockTimeoutMs: 200 });
      expect(deleted).toBe(45);
      await holder.query('COMMIT');
      expect(await purgeExpiredSessions({ pool, batchSize: 20 })).toBe(5);
      expect(await count('true')).toBe(10);
    } finally {
      await holder.end();
    }
  });

  it('works on a schema-qualified table and column names, and refuses anything but identifiers', async () => {
    await pool.query('CREATE SCHEMA IF NOT EXISTS app');
    await pool.query(
      'CREATE TABLE IF NOT EXISTS app.sessions (k text PRIMARY KEY, valid_until timestamptz NOT NULL)',
    );
    await pool.query(
      "INSERT INTO app.sessions SELECT i::text, now() - interval '1 minute' FROM generate_series(1, 30) AS i",
    );
    expect(
      await purgeExpiredSessions({ pool, table: 'app.sessions', expireColumn: 'valid_until', batchSize: 7 }),
    ).toBe(30);
    await expect(purgeExpiredSessions({ pool, table: 'django_session; DROP TABLE x' })).rejects.toThrow(
      /table should be a table name/,
    );
    await expect(purgeExpiredSessions({ pool, expireColumn: 'expire_date"' })).rejects.toThrow(
      /expireColumn/,
    );
    await expect(purgeExpiredSessions({ pool, batchSize: 0 })).rejects.toThrow(/batchSize/);
  });

  it('stops between batches when its signal aborts', async () => {
    await seed(100, 0);
    const controller = new AbortController();
    const deleted = await purgeExpiredSessions({
      pool,
      batchSize: 10,
      signal: controller.signal,
      onBatch: (b) => {
        if (b.batch === 3) controller.abort();
      },
    });
    expect(deleted).toBe(30);
  });
});

describe('schedulePurge', () => {
  it('purges on an interval, reports each run and stops on close()', async () => {
    await seed(120, 5);
    await using purger = schedulePurge({ pool, intervalMs: 30, batchSize: 50, maxBatches: 1 });
    const runs: PurgeRun[] = [];
    purger.on('purge', (r) => runs.push(r));
    await waitFor(async () => (await count('expire_date < now()')) === 0, {
      timeoutMs: 15_000,
      what: 'the purge',
    });
    await waitFor(() => runs.length >= 3, { timeoutMs: 15_000, what: 'three runs' });
    expect(runs.slice(0, 3).map((r) => r.deleted)).toEqual([50, 50, 20]);
    expect(await purger.runNow()).toBe(0);
    await purger.close();
    await purger.close();
    const seen = runs.length;
    await seed(10, 0, 'late');
    await new Promise((r) => setTimeout(r, 120));
    expect(runs.length).toBe(seen);
    expect(await count('expire_date < now()')).toBe(10);
    await expect(purger.runNow()).rejects.toMatchObject({ code: 'E_POOL_CLOSED' });
  });
});
