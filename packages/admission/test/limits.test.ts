import { adminQuery, waitFor } from '@sluice/test-support';
import { describe, expect, it } from 'vitest';
import {
  adaptiveLimit,
  type ConnectionMonitorLike,
  type ConnectionSampleLike,
  databaseBudget,
  fixedLimit,
  Gradient2,
  type Permit,
  poolSizeLimit,
  Semaphore,
} from '../src/index.ts';
import { flush, settle } from './helpers.ts';

/** A connection monitor in the structural shape admission accepts, fed by hand. */
class HandMonitor implements ConnectionMonitorLike {
  lastSample: ConnectionSampleLike | undefined;
  readonly #listeners = new Set<(s: ConnectionSampleLike) => void>();
  onSample(listener: (s: ConnectionSampleLike) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  get listeners(): number {
    return this.#listeners.size;
  }
  emit(s: Partial<ConnectionSampleLike> & { byApplication: Record<string, number> }): void {
    const total = s.total ?? Object.values(s.byApplication).reduce((a, b) => a + b, 0);
    const sample = { maxConnections: 100, reservedConnections: 3, ...s, total };
    this.lastSample = sample;
    for (const l of [...this.#listeners]) l(sample);
  }
}

describe('fixed and pool-size limits', () => {
  it('fixedLimit and poolSizeLimit give a constant limit, validated', () => {
    expect(fixedLimit(7).current).toBe(7);
    expect(poolSizeLimit({ max: 20 }).current).toBe(20);
    expect(poolSizeLimit({ max: 20 }, { share: 0.5 }).current).toBe(10);
    expect(poolSizeLimit({ max: 1 }, { share: 0.1 }).current).toBe(1);
    expect(() => fixedLimit(-2)).toThrow(RangeError);
    expect(() => poolSizeLimit({ max: 0 })).toThrow(/pool.max/);
    expect(() => poolSizeLimit({ max: 5 }, { share: 0 })).toThrow(/share/);
  });
});

describe('databaseBudget', () => {
  it('is max_connections - reserved - reserve - held by others, clamped', () => {
    const monitor = new HandMonitor();
    const budget = databaseBudget({
      monitor,
      reserve: 5,
      floor: 2,
      ceiling: 50,
      applicationNames: ['sluice'],
    });
    expect(budget.current).toBe(2); // floor before the first sample
    monitor.emit({ byApplication: { sluice: 10, cvat: 30 } });
    // 100 - 3 - 5 - 30 = 62, ceiling 50
    expect(budget.raw).toBe(62);
    expect(budget.heldByOthers).toBe(30);
    expect(budget.current).toBe(50);
    monitor.emit({ byApplication: { sluice: 10, cvat: 80 } });
    // 100 - 3 - 5 - 80 = 12, applied at once (shrinking is never smoothed)
    expect(budget.current).toBe(12);
    monitor.emit({ byApplication: { sluice: 10, cvat: 95 } });
    expect(budget.raw).toBe(-3);
    expect(budget.current).toBe(2);
    budget.close();
  });

  it('leaked idle connections shrink the gate; once reaped it grows back, smoothed', () => {
    const monitor = new HandMonitor();
    const budget = databaseBudget({ monitor, smoothing: 0.5 });
    const seen: number[] = [];
    budget.onChange((n) => seen.push(n));
    monitor.emit({ byApplication: { sluice: 0, cvat: 17 } });
    expect(budget.current).toBe(80);
    // cvat leaks 40 idle connections
    monitor.emit({ byApplication: { sluice: 0, cvat: 57 } });
    expect(budget.current).toBe(40);
    // the reaper closes them: growth is smoothed
    monitor.emit({ byApplication: { sluice: 0, cvat: 17 } });
    expect(budget.current).toBe(60);
    monitor.emit({ byApplication: { sluice: 0, cvat: 17 } });
    expect(budget.current).toBe(70);
    for (let i = 0; i < 10; i += 1) monitor.emit({ byApplication: { cvat: 17 } });
    expect(budget.current).toBe(80);
    expect(seen.slice(0, 4)).toEqual([80, 40, 60, 70]);
    expect(seen.at(-1)).toBe(80);
    budget.close();
    expect(monitor.listeners).toBe(0);
  });

  it('drives a Semaphore: the gate shrinks as permits return and grows at once', async () => {
    const monitor = new HandMonitor();
    monitor.emit({ maxConnections: 13, reservedConnections: 3, byApplication: { sluice: 0 } });
    const budget = databaseBudget({ monitor, smoothing: 1 });
    const gate = new Semaphore({ limit: budget, interactiveReserve: 0 });
    expect(gate.limit).toBe(10);
    const permits = await Promise.all(Array.from({ length: 10 }, () => gate.acquire()));
    monitor.emit({ maxConnections: 13, reservedConnections: 3, byApplication: { sluice: 10, other: 6 } });
    expect(gate.limit).toBe(4);
    const waiting = settle(gate.acquire());
    for (const p of permits.slice(0, 6)) p.release();
    await flush();
    expect(waiting.state).toBe('pending');
    permits[6]?.release();
    await flush();
    expect(waiting.state).toBe('resolved');
    monitor.emit({ maxConnections: 13, reservedConnections: 3, byApplication: { sluice: 4 } });
    expect(gate.limit).toBe(10);
    expect(gate.available).toBe(6);
    for (const p of [...permits.slice(7), waiting.value as Permit]) p.release();
    await gate.close();
    budget.close();
  });

  it('reads a real pg_stat_activity sample: connections held by others count against it', async () => {
    // A real sample from the server, with 4 sessions of another application kept busy meanwhile.
    // Sampled until all four are connected (the sample's own session is the fifth): a loaded
    // machine may take a while to open them.
    const sleepers = Array.from({ length: 4 }, () => adminQuery('SELECT pg_sleep(3)'));
    type Row = { max: string; reserved: string; app: string | null; n: string };
    let rows: Row[] = [];
    let byApplication: Record<string, number> = {};
    try {
      await waitFor(
        async () => {
          ({ rows } = await adminQuery<Row>(
            `SELECT current_setting('max_connections') AS max, current_setting('superuser_reserved_connections') AS reserved,
                    application_name AS app, count(*)::text AS n
               FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY application_name`,
          ));
          byApplication = {};
          for (const r of rows) byApplication[r.app ?? ''] = Number(r.n);
          return (byApplication['sluice-test-admin'] ?? 0) >= 5;
        },
        { timeoutMs: 2500, intervalMs: 20, what: 'the four busy sessions' },
      ).catch(() => {});
    } finally {
      await Promise.all(sleepers);
    }
    const total = Object.values(byApplication).reduce((a, b) => a + b, 0);
    const monitor = new HandMonitor();
    monitor.emit({
      maxConnections: Number(rows[0]?.max),
      reservedConnections: Number(rows[0]?.reserved),
      total,
      byApplication,
    });
    const budget = databaseBudget({ monitor, reserve: 2 });
    expect(byApplication['sluice-test-admin']).toBeGreaterThanOrEqual(5);
    expect(budget.heldByOthers).toBe(total - (byApplication.sluice ?? 0));
    expect(budget.raw).toBe(
      Number(rows[0]?.max) - Number(rows[0]?.reserved) - 2 - (budget.heldByOthers ?? 0),
    );
    budget.close();
  });

  it('validates options', () => {
    const monitor = new HandMonitor();
    expect(() => databaseBudget({ monitor: {} as ConnectionMonitorLike })).toThrow(
      /monitor should have an onSample/,
    );
    expect(() => databaseBudget({ monitor, reserve: -1 })).toThrow(/reserve/);
    expect(() => databaseBudget({ monitor, floor: 5, ceiling: 4 })).toThrow(/ceiling/);
    expect(() => databaseBudget({ monitor, smoothing: 0 })).toThrow(/smoothing/);
    expect(() => databaseBudget({ monitor, applicationNames: 'sluice' as unknown as string[] })).toThrow(
      /applicationNames/,
    );
  });
});

describe('Gradient2 (pure)', () => {
  it('grows by queueSize while latency holds, when the limit is in use', () => {
    const g = new Gradient2({ initialLimit: 10, maxLimit: 100, smoothing: 1 });
    expect(g.update({ rttMs: 10, inflight: 10 })).toBe(14);
    expect(g.update({ rttMs: 10, inflight: 14 })).toBe(18);
  });

  it('does not grow while less than half the limit is in use', () => {
    const g = new Gradient2({ initialLimit: 20, smoothing: 1 });
    expect(g.update({ rttMs: 10, inflight: 5 })).toBe(20);
  });

  it('shrinks when the short RTT rises well above the long one, at most by half per step', () => {
    const g = new Gradient2({ initialLimit: 40, maxLimit: 100, smoothing: 1, longWindow: 100 });
    for (let i = 0; i < 20; i += 1) g.update({ rttMs: 10, inflight: 1 });
    expect(g.limit).toBe(40);
    // 10x latency: gradient clamps at 0.5 -> 40 * 0.5 + 4
    expect(g.update({ rttMs: 100, inflight: 40 })).toBe(24);
    expect(g.longRttMs).toBeGreaterThan(10);
  });

  it('never exceeds the cap nor drops below minLimit', () => {
    const g = new Gradient2({ initialLimit: 10, minLimit: 3, maxLimit: 100, smoothing: 1 });
    for (let i = 0; i < 30; i += 1) g.update({ rttMs: 10, inflight: 1000 }, 25);
    expect(g.limit).toBe(25);
    // under lasting overload it settles where limit / 2 + queueSize = limit
    for (let i = 0; i < 30; i += 1) g.update({ rttMs: 10_000, inflight: 1000 }, 25);
    expect(g.limit).toBe(8);
    const floor = new Gradient2({ initialLimit: 30, minLimit: 12, smoothing: 1 });
    for (let i = 0; i < 30; i += 1) floor.update({ rttMs: 10 * 2 ** i, inflight: 1000 });
    expect(floor.limit).toBe(12);
  });

  it('validates options', () => {
    expect(() => new Gradient2({ minLimit: 0 })).toThrow(/minLimit/);
    expect(() => new Gradient2({ minLimit: 5, maxLimit: 4 })).toThrow(/maxLimit/);
    expect(() => new Gradient2({ rttTolerance: 0.5 })).toThrow(/rttTolerance/);
  });
});

describe('adaptiveLimit', () => {
  it('updates once per window (injected clock) and is capped by the database budget', () => {
    let t = 0;
    const monitor = new HandMonitor();
    monitor.emit({ byApplication: { cvat: 67 } }); // budget 30
    const budget = databaseBudget({ monitor, smoothing: 1 });
    const limit = adaptiveLimit({
      max: budget,
      initialLimit: 10,
      smoothing: 1,
      windowMs: 1000,
      minSamples: 5,
      now: () => t,
    });
    const changes: number[] = [];
    limit.onChange((n) => changes.push(n));
    expect(limit.current).toBe(10);
    for (let i = 0; i < 20; i += 1) limit.record({ rttMs: 10, inflight: 10, dropped: false });
    expect(limit.current).toBe(10); // the window has not closed: too early
    t = 1000;
    limit.record({ rttMs: 10, inflight: 10, dropped: false });
    expect(limit.current).toBe(14);
    for (let w = 2; w < 10; w += 1) {
      t = w * 1000;
      for (let i = 0; i < 5; i += 1) limit.record({ rttMs: 10, inflight: 100, dropped: false });
    }
    expect(limit.current).toBe(30); // capped by the budget
    monitor.emit({ byApplication: { cvat: 82 } }); // budget 15
    expect(limit.cap).toBe(15);
    expect(limit.current).toBe(15);
    expect(changes.at(-1)).toBe(15);
    limit.close();
    budget.close();
  });

  it('is fed by a Semaphore on release (dropped and ignored samples handled)', async () => {
    let t = 0;
    const limit = adaptiveLimit({
      max: 50,
      initialLimit: 2,
      smoothing: 1,
      windowMs: 10,
      minSamples: 2,
      now: () => t,
    });
    const gate = new Semaphore({ limit, now: () => t, interactiveReserve: 0 });
    expect(gate.limit).toBe(2);
    const a = await gate.acquire();
    const b = await gate.acquire();
    t = 20;
    a.release('ignore');
    b.release('ok');
    expect(gate.limit).toBe(2); // one sample only: the window needs two
    const c = await gate.acquire();
    const d = await gate.acquire();
    t = 40;
    c.release('ok');
    d.release('dropped');
    expect(gate.limit).toBe(3); // 2 * 1 + queueSize(2) = 3
    await gate.close();
    limit.close();
  });
});
