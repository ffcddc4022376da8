import { createServer, type Socket } from 'node:net';
import {
  adminQuery,
  createTestDatabase,
  pgPort,
  pgUrl,
  type TestDatabase,
  uniqueSuffix,
  waitFor,
} from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, isConnectionError, isPoolError, type PoolErrorEvent } from '../src/index.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

let db: TestDatabase;
const app = (label: string): string => `sluice-resil-${label}-${uniqueSuffix()}`;

beforeAll(async () => {
  db = await createTestDatabase('pool_resilience');
});
afterAll(async () => {
  await db?.drop();
});

async function terminate(pids: number[]): Promise<void> {
  await adminQuery('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
}

async function backendPid(pool: { query: (t: string) => Promise<{ rows: Array<Record<string, unknown>> }> }) {
  const { rows } = await pool.query('SELECT pg_backend_pid() AS pid');
  return rows[0]?.pid as number;
}

describe('server-side faults', () => {
  it('survives pg_terminate_backend on idle pooled connections and reconnects', async () => {
    await using pool = createPool({ connectionString: db.url, max: 3, applicationName: app('idle') });
    const errors: PoolErrorEvent[] = [];
    pool.on('error', (e) => errors.push(e));
    await Promise.all([1, 2, 3].map(() => pool.query('SELECT pg_sleep(0.05)')));
    const pids = pool.backendPids();
    expect(pids).toHaveLength(3);
    expect(pool.idleCount).toBe(3);

    await terminate(pids);
    await waitFor(() => errors.length === 3, { timeoutMs: 15_000, what: 'three idle client errors' });
    expect(errors.every((e) => e.phase === 'idle')).toBe(true);
    expect(errors.map((e) => e.pid).sort()).toEqual([...pids].sort());
    await waitFor(() => pool.totalCount === 0, { timeoutMs: 15_000, what: 'the dead clients to leave' });

    const pid = await backendPid(pool);
    expect(pids).not.toContain(pid);
    expect(pool.stats().errors).toBe(3);
  });

  it('survives pg_terminate_backend on a busy connection: the query fails, the client is destroyed', async () => {
    await using pool = createPool({ connectionString: db.url, max: 1, applicationName: app('busy') });
    const before = await backendPid(pool);
    const slow = pool.query('SELECT pg_sleep(20)').catch((e: unknown) => e);
    await waitFor(
      async () => {
        const { rows } = await adminQuery(
          "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
          [before],
        );
        return rows.length === 1;
      },
      { timeoutMs: 15_000, what: 'the slow query to start' },
    );
    await terminate([before]);
    expect(await slow).toMatchObject({ code: '57P01', severity: 'FATAL' });
    const after = await backendPid(pool);
    expect(after).not.toBe(before);
    const stats = pool.stats();
    expect(stats.destroyed).toBe(1);
    expect(stats.errors).toBe(1); // counted once, although pg reports the dead socket twice
    expect(pool.totalCount).toBe(1);
  });

  it('survives a checked-out client whose backend is terminated between statements', async () => {
    await using pool = createPool({ connectionString: db.url, max: 1, applicationName: app('held') });
    const errors: PoolErrorEvent[] = [];
    pool.on('error', (e) => errors.push(e));
    const failure = await pool
      .withClient(async (c) => {
        const pid = await backendPid(c);
        await terminate([pid]);
        await waitFor(() => errors.length > 0, { timeoutMs: 15_000, what: 'the checked-out client error' });
        return c.query('SELECT 1');
      })
      .catch((e: unknown) => e);
    expect(isConnectionError(failure)).toBe(true);
    expect(pool.stats().destroyed).toBe(1);
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(errors.map((e) => e.phase)).toEqual(['checked-out']);
  });

  it('fails acquires with E_POOL_CONNECT while the server is unreachable and recovers by itself', async () => {
    const proxy = await startTcpProxy(pgPort);
    try {
      await using pool = createPool({
        connectionString: pgUrl(db.name, undefined, proxy.port),
        max: 2,
        acquireTimeoutMs: 3000,
        applicationName: app('proxy'),
      });
      const errors: PoolErrorEvent[] = [];
      pool.on('error', (e) => errors.push(e));
      await Promise.all([pool.query('SELECT pg_sleep(0.05)'), pool.query('SELECT pg_sleep(0.05)')]);
      expect(pool.idleCount).toBe(2);

      await proxy.cut();
      await waitFor(() => pool.totalCount === 0, { timeoutMs: 15_000, what: 'idle clients to drop' });
      const down = await pool.query('SELECT 1').catch((e: unknown) => e);
      expect(isPoolError(down, 'E_POOL_CONNECT')).toBe(true);
      expect((down as Error).cause).toBeInstanceOf(Error);
      expect(errors.filter((e) => e.phase === 'idle')).toHaveLength(2);
      expect(errors.filter((e) => e.phase === 'connect')).toHaveLength(1);

      await proxy.restore();
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(pool.activeCount).toBe(0);
      expect(pool.stats().errors).toBe(3);
    } finally {
      await proxy.close();
    }
  });
});

describe('a server that accepts TCP but never answers', () => {
  it('bounds opening a connection by connectTimeoutMs, and a waiter by its own timeout', async () => {
    const sockets = new Set<Socket>();
    const blackHole = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    const address = blackHole.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      await using pool = createPool({
        connectionString: `postgres://postgres@127.0.0.1:${port}/nowhere`,
        max: 1,
        // Far apart, so a loaded machine cannot mistake the connect timeout for the acquire timeout.
        acquireTimeoutMs: 10_000,
        connectTimeoutMs: 300,
        applicationName: app('hole'),
      });
      const started = Date.now();
      const failed = await pool.query('SELECT 1').catch((e: unknown) => e);
      expect(isPoolError(failed, 'E_POOL_CONNECT')).toBe(true);
      expect(Date.now() - started).toBeLessThan(9000);

      // A waiter with a shorter timeout gives up while its connect is still pending; the slot
      // comes back once that connect fails, so the next acquire is not refused as exhausted.
      const early = await pool.query('SELECT 1', [], { timeoutMs: 50 }).catch((e: unknown) => e);
      expect(isPoolError(early, 'E_POOL_TIMEOUT')).toBe(true);
      const next = await pool.query('SELECT 1').catch((e: unknown) => e);
      expect(isPoolError(next, 'E_POOL_CONNECT')).toBe(true);
      expect(pool.stats()).toMatchObject({ active: 0, waiting: 0, timeouts: 1 });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => blackHole.close(() => resolve()));
    }
    expect(() =>
      createPool({
        connectionString: 'postgres://x@127.0.0.1/x',
        max: 1,
        acquireTimeoutMs: 100,
        connectTimeoutMs: 200,
      }),
    ).toThrow(/connectTimeoutMs should be an integer between 1 and 100/);
  });
});
