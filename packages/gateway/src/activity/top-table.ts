// A bounded table of who uses the gateway (users, or client addresses): live figures for the
// requests each one has queued or in flight, and exponentially weighted sums over a window
// (about the last minute) of requests, sheds and slot time. When full, the least active idle
// entries go (a bounded map with decay); an entry with requests queued or in flight is never
// evicted, so the table holds at most `capacity` entries plus those live requests' owners.
import type { ShedReason } from './shed-reason.js';

/** One user or client address, first seen at `t`: live counts and weighted sums (as of `at`). */
const newEntry = (id: string, t: number) => ({
  id,
  /** A display name (the username), once known. */
  name: undefined as string | undefined,
  /** When the table first saw it, epoch ms. */
  since: t,
  inFlight: 0,
  queued: 0,
  requests: 0,
  shed: 0,
  shedBy: {} as Partial<Record<ShedReason, number>>,
  /** The weighted integral of `inFlight` over time, ms. */
  slotMs: 0,
  at: t,
});
type TopEntry = ReturnType<typeof newEntry>;

/** One entry as the status reports it. */
export interface WhoEntry {
  /** The user id, or the client address. */
  readonly id: string;
  /** The username (users only, once seen). */
  readonly name: string | null;
  /** Requests holding a slot now. */
  readonly inFlight: number;
  /** Requests waiting for a slot now. */
  readonly queued: number;
  /** Slots held on average over the window (1: one slot all the time). */
  readonly slots: number;
  readonly requestsPerSecond: number;
  /** Requests shed per minute over the window, and by reason. */
  readonly shedPerMinute: number;
  readonly shedByReason: Partial<Record<ShedReason, number>>;
}

/** A bounded table and its heaviest entries. */
export interface WhoTable {
  /** Entries the table holds now (at most `capacity`, plus owners of live requests). */
  readonly tracked: number;
  readonly capacity: number;
  /** The heaviest entries first: most queued and in flight, then most slot time, requests, sheds. */
  readonly top: readonly WhoEntry[];
}

const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Builds a table of at most `capacity` idle entries whose sums decay with time constant `windowMs`. */
export function topTable(capacity: number, windowMs: number, now: () => number) {
  const entries = new Map<string, TopEntry>();

  function decay(e: TopEntry, t: number): void {
    if (t <= e.at) return;
    const f = Math.exp(-(t - e.at) / windowMs);
    e.requests *= f;
    e.shed *= f;
    // The weighted integral of a constant inFlight over (at, t] is inFlight * windowMs * (1 - f).
    e.slotMs = e.slotMs * f + e.inFlight * windowMs * (1 - f);
    if (e.shed > 0)
      for (const r in e.shedBy) e.shedBy[r as ShedReason] = (e.shedBy[r as ShedReason] ?? 0) * f;
    e.at = t;
  }

  /** Evicts the least active idle entries down to 3/4 of the capacity (so it runs once per capacity/4 new entries). */
  function makeRoom(t: number): void {
    const idle = [...entries.values()].filter((e) => e.inFlight + e.queued === 0);
    for (const e of idle) decay(e, t);
    // Weight: requests plus slot-seconds (a long download weighs like the requests it stood for).
    idle.sort((a, b) => a.requests + a.slotMs / 1_000 - (b.requests + b.slotMs / 1_000));
    const excess = entries.size - Math.floor(capacity * 0.75);
    for (const e of idle.slice(0, Math.max(1, excess))) entries.delete(e.id);
  }

  /** Weighted sums turned into rates: a constant rate r sums to r * windowMs * (1 - e^(-age/windowMs)). */
  function show(e: TopEntry, t: number): WhoEntry {
    decay(e, t);
    const span = windowMs * (1 - Math.exp(-Math.max(1_000, t - e.since) / windowMs));
    const shedByReason: Partial<Record<ShedReason, number>> = {};
    for (const [r, n] of Object.entries(e.shedBy))
      if (n >= 0.05) shedByReason[r as ShedReason] = round((n * 60_000) / span, 1);
    return {
      id: e.id,
      name: e.name ?? null,
      inFlight: e.inFlight,
      queued: e.queued,
      slots: round(e.slotMs / span),
      requestsPerSecond: round((e.requests * 1_000) / span),
      shedPerMinute: round((e.shed * 60_000) / span, 1),
      shedByReason,
    };
  }

  return {
    /** The entry of `id`, created when new (first making room by evicting idle entries). */
    entry(id: string): TopEntry {
      let e = entries.get(id);
      if (e === undefined) {
        const t = now();
        if (entries.size >= capacity) makeRoom(t);
        e = newEntry(id, t);
        entries.set(id, e);
      }
      return e;
    },
    /** Counts one finished request of `e`, shed for `reason` if given. */
    add(e: TopEntry, reason: ShedReason | undefined): void {
      decay(e, now());
      e.requests += 1;
      if (reason !== undefined) {
        e.shed += 1;
        e.shedBy[reason] = (e.shedBy[reason] ?? 0) + 1;
      }
    },
    /** Changes the live counts of `e` (after bringing its slot time to now). */
    move(e: TopEntry, queued: number, inFlight: number): void {
      decay(e, now());
      e.queued += queued;
      e.inFlight += inFlight;
    },
    /** The table's `top` heaviest entries. */
    view(top: number): WhoTable {
      const t = now();
      const shown = [...entries.values()]
        .map((e) => show(e, t))
        .filter(
          (e) =>
            e.inFlight + e.queued > 0 ||
            e.slots >= 0.01 ||
            e.requestsPerSecond >= 0.01 ||
            e.shedPerMinute >= 0.1,
        );
      shown.sort(
        (a, b) =>
          b.inFlight + b.queued - (a.inFlight + a.queued) ||
          b.slots - a.slots ||
          b.requestsPerSecond - a.requestsPerSecond ||
          b.shedPerMinute - a.shedPerMinute,
      );
      return { tracked: entries.size, capacity, top: shown.slice(0, top) };
    },
  };
}
