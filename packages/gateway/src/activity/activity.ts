// Who uses the gateway and how it went over the last minutes, for the status page, status.json
// and the metrics: per user and per client address (bounded tables), a ring of time buckets, and
// the last breaker and database state changes. Fed by the pipeline's seats (a request's way
// through admission) and by the gateway's events (finished requests, state changes).
import type { TypedEvents } from '@sluice/kit';
import type { RequestClass } from '../cvat-profile.js';
import type { GatewayEvents } from '../parts.js';
import type { AccessLogEntry } from '../pipeline.js';
import { SHED_REASONS, type ShedReason, shedReason } from './shed-reason.js';
import { type HistoryStatus, type RecentStatus, type TimelineGauges, timeline } from './timeline.js';
import { topTable, type WhoTable } from './top-table.js';

/** A breaker or database state change. */
export interface StateChange {
  /** Epoch ms. */
  readonly at: number;
  readonly what: 'breaker' | 'database';
  readonly from: string;
  readonly to: string;
}

/** What {@link Activity.status} reports. */
export interface ActivityStatus {
  /**
   * Who holds slots and who waits, by the validated identity's user id (the username when
   * known, never a credential): live in flight and queued, and over about the last minute
   * (exponentially weighted) average slots held, requests per second and sheds per minute by
   * reason. The ten heaviest of at most 500 tracked (plus the owners of live requests).
   */
  readonly users: WhoTable;
  /** The same by client address. */
  readonly clients: WhoTable;
  /** Requests and sheds per second over the last 10 s, queue wait and upstream latency p50/p99 over the last minute. */
  readonly recent: RecentStatus;
  /** The last five minutes in 2-s buckets. */
  readonly history: HistoryStatus;
  /** The last 20 breaker and database state changes, oldest first. */
  readonly changes: readonly StateChange[];
  /** Requests shed since start, by reason. */
  readonly shed: Readonly<Record<ShedReason, number>>;
}

/** What the gateway tells its activity. */
export type Activity = ReturnType<typeof createActivity>;
/** One request's way through admission: queued when created, then admitted, then gone. */
export type Seat = ReturnType<Activity['seat']>;

/** Options of {@link createActivity}. */
export interface ActivityOptions {
  readonly events: TypedEvents<GatewayEvents>;
  /** The gauges sampled every second. */
  readonly gauges: () => TimelineGauges;
  /** Clock, epoch ms. */
  readonly now: () => number;
}

/** Time constant of the per-user and per-client weighted sums: about the last minute. */
const WINDOW_MS = 60_000;
/** Idle entries each table keeps at most. */
const CAPACITY = 500;
/** Entries each table reports. */
const TOP = 10;
const BUCKET_MS = 2_000;
/** Buckets in the ring: five minutes. */
const BUCKETS = 150;
const CHANGES = 20;

/** Builds the activity of a gateway; it samples the gauges every second until `close()`. */
export function createActivity({ events, gauges, now }: ActivityOptions) {
  const users = topTable(CAPACITY, WINDOW_MS, now);
  const clients = topTable(CAPACITY, WINDOW_MS, now);
  const ring = timeline(BUCKET_MS, BUCKETS, now);
  const changes: StateChange[] = [];
  const byClassNow: Record<RequestClass, { inFlight: number; queued: number }> = {
    interactive: { inFlight: 0, queued: 0 },
    bulk: { inFlight: 0, queued: 0 },
  };
  const shed = Object.fromEntries(SHED_REASONS.map((r) => [r, 0])) as Record<ShedReason, number>;
  const change = (what: StateChange['what'], from: string, to: string): void => {
    changes.push({ at: now(), what, from, to });
    if (changes.length > CHANGES) changes.shift();
    ring.sample(gauges());
  };

  function finished(entry: AccessLogEntry): void {
    if (entry.class === 'gateway') return;
    const reason = shedReason(entry.error);
    if (reason) shed[reason] += 1;
    ring.request(entry, reason);
    if (entry.userId !== undefined) users.add(users.entry(String(entry.userId)), reason);
    clients.add(clients.entry(entry.client), reason);
  }
  const unsubscribe = [
    events.on('request', finished),
    events.on('breaker', ({ from, to }) => change('breaker', from, to)),
    events.on('database', ({ state }) => change('database', state === 'up' ? 'down' : 'up', state)),
  ];
  const timer = setInterval(() => {
    try {
      ring.sample(gauges());
    } catch {
      // Best effort: a gauge that cannot be read leaves a gap in the history, never a crash.
    }
  }, 1_000);
  timer.unref();

  return {
    /**
     * A request of class `requestClass` enters admission (it counts as queued) for `userId` (if
     * validated) from `client`.
     */
    seat(
      requestClass: RequestClass,
      userId: number | undefined,
      username: string | undefined,
      client: string,
    ) {
      const counts = byClassNow[requestClass];
      const c = clients.entry(client);
      const u = userId === undefined ? undefined : users.entry(String(userId));
      if (u) u.name = username;
      const move = (queued: number, inFlight: number): void => {
        counts.queued += queued;
        counts.inFlight += inFlight;
        clients.move(c, queued, inFlight);
        if (u) users.move(u, queued, inFlight);
      };
      move(1, 0);
      let state: 'queued' | 'admitted' | 'gone' = 'queued';
      return {
        /** The request got its slot; false when it had already left the queue. */
        admitted(): boolean {
          if (state !== 'queued') return false;
          state = 'admitted';
          move(-1, 1);
          return true;
        },
        /** The request gave its slot back, or left the queue (idempotent); true when it held a slot. */
        left(): boolean {
          const held = state === 'admitted';
          if (state !== 'gone') move(state === 'queued' ? -1 : 0, held ? -1 : 0);
          state = 'gone';
          return held;
        },
      };
    },
    /** Requests in flight and queued now, by class. */
    byClassNow: () => structuredClone(byClassNow),
    status(): ActivityStatus {
      ring.sample(gauges());
      return {
        users: users.view(TOP),
        clients: clients.view(TOP),
        recent: ring.recent(10_000, 60_000),
        history: ring.history(),
        changes: [...changes],
        shed: { ...shed },
      };
    },
    /** Stops the sampling timer and the event subscriptions. Idempotent. */
    close() {
      clearInterval(timer);
      for (const off of unsubscribe.splice(0)) off();
    },
  };
}
