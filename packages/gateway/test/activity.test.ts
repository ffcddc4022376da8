import { TypedEvents } from '@sluice/kit';
import { afterEach, describe, expect, it } from 'vitest';
import { type Activity, createActivity } from '../src/activity/activity.ts';
import type { TimelineGauges } from '../src/activity/timeline.ts';
import type { AccessLogEntry, GatewayEvents } from '../src/index.ts';

// The status page's figures, on an injected clock: who holds slots and waits (bounded tables with
// decay) and the last minutes (a ring of 2-s buckets).
let t = 1_700_000_000_000;
const now = (): number => t;
let gauges: TimelineGauges = {
  inFlight: 0,
  queued: 0,
  limit: 4,
  ceiling: 8,
  dbConnections: 10,
  dbMax: 97,
  breaker: 'closed',
  database: 'up',
};
let events: TypedEvents<GatewayEvents>;
let activity: Activity;

function start(): Activity {
  events = new TypedEvents<GatewayEvents>();
  activity = createActivity({ events, now, gauges: () => gauges });
  return activity;
}
afterEach(() => activity?.close());

function finished(fields: Partial<AccessLogEntry>): void {
  events.emit('request', {
    reqId: 'r',
    upstreamReqId: undefined,
    method: 'GET',
    route: '/api/tasks',
    status: 200,
    class: 'interactive',
    queueWaitMs: undefined,
    upstreamMs: undefined,
    cacheTier: 'l1',
    durationMs: 1,
    userId: undefined,
    client: '10.0.0.1',
    error: undefined,
    cause: undefined,
    ...fields,
  });
}

describe('who holds the slots and who waits', () => {
  it('follows each request from the queue to its slot and out, per user and per client', () => {
    const a = start();
    const first = a.seat('interactive', 7, 'exporter', '10.0.0.1');
    const second = a.seat('interactive', 7, 'exporter', '10.0.0.2');
    const other = a.seat('interactive', 8, 'alice', '10.0.0.1');
    expect(a.status().users.top.map((u) => [u.name, u.inFlight, u.queued])).toEqual([
      ['exporter', 0, 2],
      ['alice', 0, 1],
    ]);
    first.admitted();
    other.admitted();
    first.admitted(); // twice: counted once
    let s = a.status();
    expect(s.users.top.map((u) => [u.id, u.inFlight, u.queued])).toEqual([
      ['7', 1, 1],
      ['8', 1, 0],
    ]);
    expect(s.clients.top.map((c) => [c.id, c.inFlight, c.queued])).toEqual([
      ['10.0.0.1', 2, 0],
      ['10.0.0.2', 0, 1],
    ]);
    t += 1_000;
    first.left();
    first.left(); // idempotent
    second.left(); // left the queue (shed or gone)
    other.left();
    s = a.status();
    // Still shown (they held slots within the last minute), with nothing live.
    expect(s.users.top.map((u) => [u.id, u.inFlight + u.queued])).toEqual([
      ['7', 0],
      ['8', 0],
    ]);
    expect(s.clients.top.every((c) => c.inFlight === 0 && c.queued === 0)).toBe(true);
  });

  it('ranks the user holding and waiting for the most slots first, and weighs slot time', () => {
    const a = start();
    const held = [a.seat('interactive', 1, 'bulk', '10.0.0.1'), a.seat('interactive', 1, 'bulk', '10.0.0.1')];
    for (const seat of held) seat.admitted();
    a.seat('interactive', 1, 'bulk', '10.0.0.1'); // queued
    const quick = a.seat('interactive', 2, 'person', '10.0.0.9');
    quick.admitted();
    t += 30_000;
    quick.left();
    const s = a.status();
    expect(s.users.top.map((u) => u.name)).toEqual(['bulk', 'person']);
    // Two slots held for the 30 s the table has known them: two slots on average.
    expect(s.users.top[0]?.slots).toBeCloseTo(2, 1);
    expect(s.users.top[1]?.slots).toBeCloseTo(1, 1);
    expect(s.users.top[0]).toMatchObject({ inFlight: 2, queued: 1 });
  });

  it('counts sheds by reason per user and per client, and since start', () => {
    const a = start();
    for (let i = 0; i < 6; i++) finished({ userId: 3, status: 429, error: 'E_QUEUE_FULL' });
    finished({ userId: 3, status: 503, error: 'E_CIRCUIT_OPEN' });
    finished({ client: '10.0.0.66', status: 401, error: 'E_UNAUTHENTICATED' });
    finished({ userId: 3, status: 503, error: 'E_DATABASE_UNAVAILABLE' });
    finished({ userId: 3, status: 502, error: 'E_UPSTREAM_UNAVAILABLE' }); // an error, not a shed
    finished({ class: 'gateway', status: 400, error: 'E_BAD_REQUEST' }); // not counted at all
    t += 10_000;
    const s = a.status();
    const user = s.users.top[0];
    expect(user?.id).toBe('3');
    expect(user?.name).toBeNull();
    expect(Object.keys(user?.shedByReason ?? {}).sort()).toEqual([
      'circuit_open',
      'database_down',
      'queue_full',
    ]);
    // 8 sheds in the 10 s the table has known the user: 48 a minute.
    expect(user?.shedPerMinute).toBeGreaterThan(40);
    expect(user?.shedPerMinute).toBeLessThan(50);
    expect(s.clients.top.find((c) => c.id === '10.0.0.66')?.shedByReason).toEqual({
      unauthenticated: expect.closeTo(5.5, 1),
    });
    expect(s.shed).toEqual({
      queue_full: 6,
      queue_timeout: 0,
      circuit_open: 1,
      database_down: 1,
      unauthenticated: 1,
      shutting_down: 0,
    });
  });

  it('stays bounded under many clients, never evicting one with live requests, and forgets the idle', () => {
    const a = start();
    const live = a.seat('interactive', 42, 'holder', '192.0.2.1');
    live.admitted();
    for (let i = 0; i < 5_000; i++) {
      finished({ userId: 1_000 + i, client: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` });
      if (i % 100 === 0) t += 100;
    }
    let s = a.status();
    expect(s.clients.tracked).toBeLessThanOrEqual(s.clients.capacity);
    expect(s.users.tracked).toBeLessThanOrEqual(s.users.capacity);
    expect(s.users.top).toHaveLength(10);
    expect(s.users.top[0]?.name).toBe('holder');
    expect(s.clients.top[0]?.id).toBe('192.0.2.1');
    // Ten minutes later only the request still in flight is worth showing.
    t += 600_000;
    s = a.status();
    expect(s.users.top.map((u) => u.name)).toEqual(['holder']);
    live.left();
    expect(a.status().users.top[0]?.slots).toBeGreaterThan(0.9);
  });
});

describe('the last minutes', () => {
  it('keeps rates, sheds by reason and latency percentiles per 2-s bucket', () => {
    t = 1_700_000_000_000; // on a bucket boundary
    const a = start();
    for (let i = 1; i <= 100; i++) finished({ queueWaitMs: i, upstreamMs: 10 * i });
    for (let i = 0; i < 10; i++) finished({ status: 429, error: 'E_QUEUE_TIMEOUT' });
    gauges = { ...gauges, inFlight: 4, queued: 9, breaker: 'open' };
    a.status(); // samples the gauges
    gauges = { ...gauges, inFlight: 2, queued: 0, breaker: 'closed' };
    t += 2_000;
    const s = a.status();
    expect(s.history.bucketMs).toBe(2_000);
    expect(s.history.from).toBe(1_700_000_000_000);
    expect(s.history.requestsPerSecond).toEqual([55]);
    expect(s.history.shedPerSecond.queue_timeout).toEqual([5]);
    expect(s.history.inFlight).toEqual([4]);
    expect(s.history.queued).toEqual([9]);
    expect(s.history.breaker).toEqual(['open']);
    expect(s.history.dbConnections).toEqual([10]);
    const p50 = s.recent.queueWaitMs.p50 ?? 0;
    const p99 = s.recent.upstreamMs.p99 ?? 0;
    expect(Math.abs(p50 - 50) / 50).toBeLessThan(0.1);
    expect(Math.abs(p99 - 990) / 990).toBeLessThan(0.1);
    expect(s.recent.requestsPerSecond).toBe(55);
    expect(s.recent.shedByReason).toEqual({ queue_timeout: 5 });
    // Five minutes on, the ring has moved past it: 149 finished buckets, all empty.
    t += 300_000;
    const later = a.status();
    expect(later.history.requestsPerSecond).toHaveLength(149);
    expect(later.history.requestsPerSecond.every((r) => r === 0)).toBe(true);
    expect(later.recent.queueWaitMs.p50).toBeNull();
  });

  it('records breaker and database changes', () => {
    const a = start();
    events.emit('breaker', { from: 'closed', to: 'open' });
    t += 5_000;
    events.emit('database', { state: 'down', downForMs: undefined });
    expect(a.status().changes).toEqual([
      { at: t - 5_000, what: 'breaker', from: 'closed', to: 'open' },
      { at: t, what: 'database', from: 'up', to: 'down' },
    ]);
  });
});
