import { createTestDatabase, type TestDatabase, uniqueSuffix } from '@sluice/test-support';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPool, type LeakEvent, type SluicePool } from '../src/index.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('pool_leak');
});
afterAll(async () => {
  await db?.drop();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A caller that checks a client out and forgets it: the frame the leak report must name. */
async function checkOutAndForget(pool: SluicePool): Promise<pg.PoolClient> {
  return pool.connect();
}

/** A caller whose callback never settles inside withClient. */
function hangInsideWithClient(pool: SluicePool, until: Promise<void>): Promise<void> {
  return pool.withClient(() => until);
}

describe('leak detection', () => {
  it('fires leak once per checkout with the stack of the code that checked it out', async () => {
    // Only the sweep interval is faked; pg's own socket and timeout timers stay real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let clock = 1_000_000;
    await using pool = createPool({
      connectionString: db.url,
      max: 3,
      leakDetectionMs: 5000,
      applicationName: `sluice-leak-${uniqueSuffix()}`,
      now: () => clock,
    });
    const leaks: LeakEvent[] = [];
    pool.on('leak', (e) => leaks.push(e));

    const forgotten = await checkOutAndForget(pool);
    let releaseHang!: () => void;
    const hanging = hangInsideWithClient(
      pool,
      new Promise<void>((r) => {
        releaseHang = r;
      }),
    );
    await pool.query('SELECT 1'); // a short checkout never leaks
    await vi.waitFor(() => expect(pool.activeCount).toBe(2));

    clock += 4999;
    vi.advanceTimersByTime(1000);
    expect(leaks).toHaveLength(0);

    clock += 1;
    vi.advanceTimersByTime(1000);
    expect(leaks).toHaveLength(2);
    const byCaller = leaks.find((l) => l.stack?.includes('checkOutAndForget'));
    expect(byCaller).toBeDefined();
    expect(byCaller?.stack).toContain('leak.test.ts');
    expect(byCaller?.stack?.split('\n')[1]).toContain('checkOutAndForget');
    expect(byCaller?.query).toBeUndefined();
    expect(byCaller?.heldMs).toBe(5000);
    expect(byCaller?.acquiredAt).toBe(1_000_000);
    expect(pool.backendPids()).toContain(byCaller?.pid);
    expect(leaks.some((l) => l.stack?.includes('hangInsideWithClient'))).toBe(true);

    clock += 60_000;
    vi.advanceTimersByTime(5000);
    expect(leaks).toHaveLength(2); // once per checkout
    expect(pool.stats().leaked).toBe(2);

    forgotten.release();
    releaseHang();
    await hanging;
    expect(pool.activeCount).toBe(0);
    expect(pool.stats().leaked).toBe(2);
  });

  it('reports a pool.query() that holds its client too long with its SQL', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let clock = 0;
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      leakDetectionMs: 1000,
      applicationName: `sluice-slowq-${uniqueSuffix()}`,
      now: () => clock,
    });
    const leaks: LeakEvent[] = [];
    pool.on('leak', (e) => leaks.push(e));
    const slow = pool.query('SELECT pg_sleep(2) AS slow_statement');
    await vi.waitFor(() => expect(pool.activeCount).toBe(1));
    clock += 1000;
    vi.advanceTimersByTime(250);
    await slow;
    expect(leaks).toHaveLength(1);
    expect(leaks[0]?.query).toBe('SELECT pg_sleep(2) AS slow_statement');
    expect(leaks[0]?.stack).toBeUndefined();
  });

  it('leakDetectionMs: 0 turns it off', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let clock = 0;
    await using pool = createPool({
      connectionString: db.url,
      max: 1,
      leakDetectionMs: 0,
      applicationName: `sluice-noleak-${uniqueSuffix()}`,
      now: () => clock,
    });
    const leaks: LeakEvent[] = [];
    pool.on('leak', (e) => leaks.push(e));
    const client = await pool.connect();
    clock += 86_400_000;
    vi.advanceTimersByTime(86_400_000);
    expect(leaks).toHaveLength(0);
    client.release();
  });
});
