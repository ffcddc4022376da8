// The admission limit fed by database samples: the ceiling counts the upstream's leaked
// connections (and keeps room for a burst of them), goes to 0 only while the reaper can end
// them, and load control steps once a second however often the database is sampled; behind
// PgBouncer, waits shorter than 150 ms do not lower the limit.
import type { ApplicationActivity, ConnectionSample, PgBouncerSample } from '@sluice/pool';
import { describe, expect, it } from 'vitest';
import { admissionLimit, postgresCeiling, postgresRoom } from '../src/limits.ts';

const UPSTREAM = 'cvat:server';
const GATEWAY = 'sluice-gateway';

const activity = (idle: number, busy = 0): ApplicationActivity => ({
  total: idle + busy,
  active: busy,
  idle,
  idleInTransaction: 0,
  waiting: 0,
  busy,
});

/** A sample of a 40-connection server (by default): the upstream's idle and busy backends, the gateway's pool. */
function sample(
  at: number,
  upstreamIdle: number,
  o: { busy?: number; others?: number; maxConnections?: number } = {},
): ConnectionSample {
  const upstream = activity(upstreamIdle, o.busy ?? 0);
  const gateway = activity(2);
  const others = o.others ?? 1;
  const total = upstream.total + gateway.total + others;
  return {
    at,
    maxConnections: o.maxConnections ?? 40,
    reservedConnections: 3,
    total,
    byState: { idle: total },
    byApplication: { [UPSTREAM]: upstream.total, [GATEWAY]: 2, psql: others },
    activityByApplication: { [UPSTREAM]: upstream, [GATEWAY]: gateway, psql: activity(others) },
    byDatabase: {},
    oldestIdleMsByApplication: {},
  };
}

const config = {
  dbBudget: undefined,
  upstreamConnections: 128,
  loadControl: false,
  upstreamApplicationName: UPSTREAM,
  dbReserve: 10,
  poolMax: 4,
  reaper: true,
};

describe('postgresRoom and postgresCeiling', () => {
  it('gives the upstream max_connections less reserved, the reserve (or others, if more) and the pool', () => {
    expect(postgresRoom(sample(0, 5), config, GATEWAY, 5)).toEqual({ room: 23, leaked: 0 });
    expect(postgresRoom(sample(0, 5, { others: 14 }), config, GATEWAY, 5).room).toBe(19);
    // idle upstream connections beyond the requests in flight are leaked
    expect(postgresRoom(sample(0, 12), config, GATEWAY, 4).leaked).toBe(8);
  });

  it('counts leaks down to 0 with the reaper on, to 1 without it or when the server has no room', () => {
    expect(postgresCeiling(23, 8, 2, true)).toBe(13);
    expect(postgresCeiling(23, 30, 0, true)).toBe(0);
    expect(postgresCeiling(23, 30, 0, false)).toBe(1);
    expect(postgresCeiling(-2, 0, 0, true)).toBe(1);
  });
});

describe('admissionLimit', () => {
  it('keeps room for the worst leak burst of the last second, then lets it go', () => {
    const limit = admissionLimit(config, true, GATEWAY);
    limit.onPostgresSample(sample(0, 5), 5, false);
    expect(limit.ceiling.current).toBe(23);
    limit.onPostgresSample(sample(250, 9), 5, false); // 4 leaked at once: 23 - 4 - 4
    expect(limit.ceiling.current).toBe(15);
    limit.onPostgresSample(sample(500, 9), 5, false); // still within the second of the burst
    expect(limit.ceiling.current).toBe(15);
    limit.onPostgresSample(sample(1300, 9), 5, false); // the burst is a second old: the 4 leaks count
    expect(limit.ceiling.current).toBe(19);
    limit.onPostgresSample(sample(2400, 5), 5, false); // reaped: back to the room
    expect(limit.ceiling.current).toBe(23);
    limit.close();
  });

  it('never crosses --db-budget, and behind PgBouncer leaves the ceiling to the PgBouncer samples', () => {
    const limit = admissionLimit({ ...config, dbBudget: 10 }, true, GATEWAY);
    limit.onPostgresSample(sample(0, 0), 0, false);
    expect(limit.ceiling.current).toBe(10);
    limit.onPostgresSample(sample(250, 30), 0, true);
    expect(limit.ceiling.current).toBe(10);
    limit.close();
  });

  it('behind PgBouncer, lowers the limit for clients waiting 150 ms or more, not for shorter waits', () => {
    const limit = admissionLimit({ ...config, dbBudget: 100, loadControl: true }, true, GATEWAY);
    const load = limit.load;
    if (!load) throw new Error('load control should be on');
    load.attach?.(() => ({ queued: 50, inFlight: load.current }));
    const bouncer = (at: number, maxWaitMs: number): PgBouncerSample => ({
      at,
      database: 'cvat',
      poolMode: 'transaction',
      pools: 1,
      poolSize: 20,
      clientActive: 25,
      clientWaiting: 5,
      serverActive: 20,
      serverIdle: 0,
      serverUsed: 0,
      maxWaitMs,
    });
    limit.onPgBouncerSample(bouncer(0, 120)); // a short wait: held
    expect(load.reason).toBe('steady');
    expect(load.current).toBe(20);
    limit.onPgBouncerSample(bouncer(1000, 150)); // a wait at the tolerance: lowered
    expect(load.reason).toBe('waiting');
    expect(load.current).toBeLessThan(20);
    limit.close();
  });

  it('steps load control once a second however often the database is sampled', () => {
    const limit = admissionLimit({ ...config, loadControl: true }, true, GATEWAY);
    const load = limit.load;
    if (!load) throw new Error('load control should be on');
    load.attach?.(() => ({ queued: 50, inFlight: load.current }));
    const seen: number[] = [];
    for (let at = 0; at < 2000; at += 250) {
      limit.onPostgresSample(sample(at, 0, { maxConnections: 200 }), load.current, false);
      seen.push(load.current);
    }
    // headroom grows the limit from 20: once at 0 ms and once at 1000 ms, not at every sample
    const [first, second] = [seen[0] ?? 0, seen[4] ?? 0];
    expect(first).toBeGreaterThan(20);
    expect(second).toBeGreaterThan(first);
    expect(seen).toEqual([first, first, first, first, second, second, second, second]);
    limit.close();
  });
});
