import { adminQuery, waitFor } from '@sluice/test-support';
import { describe, expect, it } from 'vitest';
import {
  type ConnectionMonitorLike,
  type ConnectionSampleLike,
  databaseBudget,
  type LoadLimit,
  loadLimit,
  type Permit,
  poolSizeLimit,
  Semaphore,
} from '../src/index.ts';
import { flush, settle } from './helpers.ts';

/** A connection monitor in the structural shape admission accepts, fed by hand. */
class HandMonitor implements ConnectionMonitorLike {
  lastSample: ConnectionSampleLike | undefined;
  readonly #listeners = new Set<(s: ConnectionSampleLike) => void>();
  on(_event: 'sample', listener: (s: ConnectionSampleLike) => void): () => void {
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

describe('pool-size limit', () => {
  it('poolSizeLimit gives a constant limit, validated', () => {
    expect(poolSizeLimit({ max: 20 }).current).toBe(20);
    expect(poolSizeLimit({ max: 20 }, { share: 0.5 }).current).toBe(10);
    expect(poolSizeLimit({ max: 1 }, { share: 0.1 }).current).toBe(1);
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
    const sleepers = Array.from({ length: 4 }, () => adminQuery('SELECT pg_sleep(6)'));
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
        { timeoutMs: 5500, intervalMs: 20, what: 'the four busy sessions' },
      );
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
      /monitor should have an on\('sample', listener\)/,
    );
    expect(() => databaseBudget({ monitor, reserve: -1 })).toThrow(/reserve/);
    expect(() => databaseBudget({ monitor, floor: 5, ceiling: 4 })).toThrow(/ceiling/);
    expect(() => databaseBudget({ monitor, smoothing: 0 })).toThrow(/smoothing/);
    expect(() => databaseBudget({ monitor, applicationNames: 'sluice' as unknown as string[] })).toThrow(
      /applicationNames/,
    );
  });
});

/**
 * A PgBouncer-backed upstream reduced to arithmetic: `demand` requests want in, each admitted one
 * holds a server connection `share` of its time, `capacity` connections serve them; what does not
 * fit waits. One `step()` = one load sample pushed to the limit.
 */
function upstream(limit: LoadLimit, o: { capacity: number; share: number; demand: number }) {
  const model = { ...o, maxWaitMs: 200 };
  const inFlight = (): number => Math.min(limit.current, model.demand);
  const gate = {
    get queued() {
      return Math.max(0, model.demand - limit.current);
    },
    get inFlight() {
      return inFlight();
    },
  };
  limit.attach?.(() => gate);
  return {
    model,
    step(): number {
      const wanting = model.share * inFlight();
      limit.sample({
        busy: Math.min(model.capacity, wanting),
        capacity: model.capacity,
        waiting: Math.max(0, Math.round(wanting - model.capacity)),
        maxWaitMs: model.maxWaitMs,
      });
      return limit.current;
    },
  };
}

describe('loadLimit (driven by load samples, no clock)', () => {
  it('grows under demand while the database has headroom, to what fills 90 % of it, in a few samples', () => {
    const limit = loadLimit({ ceiling: 100, initial: 10 });
    const up = upstream(limit, { capacity: 20, share: 0.5, demand: 500 });
    const seen = Array.from({ length: 12 }, () => up.step());
    // 18 busy connections (90 % of 20) at half a connection per request: 36 in flight (the
    // busy count is smoothed over two samples, so it may overshoot by a step, never past capacity)
    expect(seen).toEqual([...seen].sort((a, b) => a - b)); // never shrinks on the way
    expect(seen[0]).toBeGreaterThan(10);
    expect(seen[4]).toBeGreaterThanOrEqual(35);
    expect(seen.at(-1)).toBeLessThanOrEqual(40);
    expect(limit.reason).toBe('steady');
  });

  it('does not grow without demand (nothing queued in the gate)', () => {
    const limit = loadLimit({ ceiling: 100, initial: 10 });
    const up = upstream(limit, { capacity: 20, share: 0.5, demand: 6 });
    for (let i = 0; i < 10; i += 1) up.step();
    expect(limit.current).toBe(10);
    expect(limit.reason).toBe('no-demand');
  });

  it('shrinks within a sample when clients wait for a server connection, in proportion', () => {
    const limit = loadLimit({ ceiling: 100, initial: 60 });
    const up = upstream(limit, { capacity: 20, share: 0.5, demand: 500 });
    // 30 want a connection, 20 have one, 10 wait: keep 18 of 30 -> 60 * 18 / 30
    expect(up.step()).toBe(36);
    expect(limit.reason).toBe('waiting');
    // short waits (under waitToleranceMs) are tolerated
    const tolerant = loadLimit({ ceiling: 100, initial: 60 });
    const quick = upstream(tolerant, { capacity: 20, share: 0.5, demand: 500 });
    quick.model.maxWaitMs = 20;
    expect(quick.step()).toBe(60);
  });

  it('reacts when the database gets slower (each request holds a connection longer), then holds steady', () => {
    const limit = loadLimit({ ceiling: 100, initial: 10 });
    const up = upstream(limit, { capacity: 20, share: 0.5, demand: 500 });
    for (let i = 0; i < 10; i += 1) up.step();
    const before = limit.current;
    up.model.share = 1.5;
    const after = Array.from({ length: 3 }, () => up.step());
    expect(after.at(-1)).toBeLessThanOrEqual(Math.ceil(18 / 1.5) + 1);
    expect(after.at(-1)).toBeLessThan(before / 2);
    const steady = Array.from({ length: 30 }, () => up.step());
    expect(new Set(steady).size).toBe(1); // no oscillation once the load is steady
  });

  it('never crosses the ceiling, and follows a ceiling that shrinks at once', () => {
    const monitor = new HandMonitor();
    monitor.emit({ byApplication: { cvat: 57 } }); // budget 100 - 3 - 57 = 40
    const budget = databaseBudget({ monitor, smoothing: 1 });
    const limit = loadLimit({ ceiling: budget, initial: 10 });
    const changes: number[] = [];
    limit.onChange((n) => changes.push(n));
    const up = upstream(limit, { capacity: 100, share: 0.2, demand: 1000 });
    for (let i = 0; i < 20; i += 1) expect(up.step()).toBeLessThanOrEqual(40);
    expect(limit.current).toBe(40);
    monitor.emit({ byApplication: { cvat: 82 } }); // budget 15
    expect(limit.ceiling).toBe(15);
    expect(limit.current).toBe(15);
    expect(changes.at(-1)).toBe(15);
    monitor.emit({ byApplication: { cvat: 57 } }); // back to 40: grows by control steps, not at once
    expect(limit.current).toBe(15);
    up.step();
    expect(limit.current).toBeGreaterThan(15);
    limit.close();
    budget.close();
  });

  it('never drops below the floor', () => {
    const limit = loadLimit({ ceiling: 100, floor: 4, initial: 50 });
    const up = upstream(limit, { capacity: 2, share: 1, demand: 500 });
    for (let i = 0; i < 20; i += 1) expect(up.step()).toBeGreaterThanOrEqual(4);
    expect(limit.current).toBe(4);
  });

  it('latency guard: shrinks when latency grows with concurrency while the database idles', () => {
    const limit = loadLimit({ ceiling: 100 }); // starts at the floor: learns the calm latency
    const up = upstream(limit, { capacity: 20, share: 0.05, demand: 500 });
    const samples = () => {
      // a CPU-bound upstream: 4 requests in flight keep it busy, each one more queues 25 ms
      const rttMs = 20 + 25 * Math.max(0, Math.min(limit.current, 500) - 4);
      for (let i = 0; i < 10; i += 1) limit.record({ rttMs, inflight: limit.current, dropped: false });
    };
    const seen: number[] = [];
    for (let i = 0; i < 40; i += 1) {
      samples();
      seen.push(up.step());
    }
    // the database alone would allow 18 / 0.05 = 360 (the ceiling); latency keeps it near the knee
    expect(Math.max(...seen)).toBeLessThan(15);
    expect(limit.current).toBeGreaterThanOrEqual(4);
    expect(limit.current).toBeLessThanOrEqual(6);
  });

  it('latency guard: latency that rises on its own (not with concurrency) does not collapse the limit', () => {
    const limit = loadLimit({ ceiling: 100, initial: 30 });
    const up = upstream(limit, { capacity: 100, share: 0.05, demand: 500 });
    let rttMs = 20;
    const period = () => {
      for (let i = 0; i < 10; i += 1) limit.record({ rttMs, inflight: 1, dropped: false });
      return up.step();
    };
    for (let i = 0; i < 5; i += 1) period();
    const before = limit.current;
    rttMs = 200; // everything got 10x slower, whatever the concurrency
    const after = Array.from({ length: 30 }, period);
    expect(Math.min(...after)).toBeGreaterThanOrEqual(Math.floor(before / 4));
    expect(limit.current).toBeGreaterThanOrEqual(before / 2);
  });

  it('drives a Semaphore: attached to it, it reads its queue; it never publishes past the ceiling', async () => {
    const limit = loadLimit({ ceiling: 8, initial: 2 });
    const gate = new Semaphore({ limit, interactiveReserve: 0 });
    const held = [await gate.acquire(), await gate.acquire()];
    const waiting = settle(gate.acquire());
    limit.sample({ busy: 1, capacity: 20, waiting: 0 }); // headroom, one queued in the gate
    await flush();
    expect(gate.limit).toBeGreaterThan(2);
    expect(waiting.state).toBe('resolved');
    for (let i = 0; i < 10; i += 1) limit.sample({ busy: 1, capacity: 20, waiting: 0 });
    expect(gate.limit).toBeLessThanOrEqual(8);
    for (const p of [...held, waiting.value as Permit]) p.release();
    await gate.close();
    await limit[Symbol.asyncDispose]();
  });

  it('validates options and samples', () => {
    expect(() => loadLimit({ ceiling: 0 })).toThrow('ceiling should be an integer >= 1, got 0');
    expect(() => loadLimit({ ceiling: 10, targetUtilization: 0 })).toThrow(/targetUtilization/);
    expect(() => loadLimit({ ceiling: 10, latencyTolerance: 1 })).toThrow(/latencyTolerance/);
    expect(() => loadLimit({ ceiling: 10, demand: 3 as unknown as () => never })).toThrow(/demand/);
    const limit = loadLimit({ ceiling: 10 });
    expect(() => limit.sample({ busy: -1, capacity: 20, waiting: 0 })).toThrow(/load.busy/);
    expect(() => limit.sample({ busy: 1, capacity: 20, waiting: Number.NaN })).toThrow(TypeError);
  });
});
