// The last minutes in a ring of fixed buckets (2 s each by default): requests, sheds by reason,
// upstream errors, queue-wait and upstream-latency histograms, and gauges sampled every second
// (in flight, queued, the limit and its ceiling, database connections, breaker and database
// state). Memory is fixed at creation; a bucket is reused once it falls out of the window.
import type { AccessLogEntry } from '../pipeline.js';
import type { activityGauges, BreakerState } from '../status.js';
import { SHED_REASONS, type ShedReason } from './shed-reason.js';

/** Gauges sampled into the current bucket. */
export type TimelineGauges = ReturnType<typeof activityGauges>;

/** Latency percentiles, ms (`null` without a sample). */
export interface Percentiles<T = number | null> {
  readonly p50: T;
  readonly p99: T;
}

/**
 * The finished buckets of the window, one array element per bucket (the current, unfinished
 * bucket is left out). Rates are per second; latencies are quarter-octave histogram estimates
 * (within about 10 %); gauges are `null` where nothing was sampled.
 */
export interface HistoryStatus {
  readonly bucketMs: number;
  /** Start of the first bucket, epoch ms: bucket `i` spans `[from + i * bucketMs, from + (i + 1) * bucketMs)`. */
  readonly from: number;
  readonly requestsPerSecond: readonly number[];
  readonly shedPerSecond: Readonly<Record<ShedReason, readonly number[]>>;
  readonly upstreamErrorsPerSecond: readonly number[];
  readonly queueWaitMs: Percentiles<readonly (number | null)[]>;
  readonly upstreamMs: Percentiles<readonly (number | null)[]>;
  /** Most requests in flight and queued within the bucket (the gate's figures). */
  readonly inFlight: readonly (number | null)[];
  readonly queued: readonly (number | null)[];
  /** The admission limit and its ceiling at the bucket's end. */
  readonly limit: readonly (number | null)[];
  readonly ceiling: readonly (number | null)[];
  readonly dbConnections: readonly (number | null)[];
  readonly dbMax: readonly (number | null)[];
  /** The worst breaker state seen within the bucket (`open` over `half-open` over `closed`). */
  readonly breaker: readonly (BreakerState | null)[];
  /** `down` when the database was down at any moment of the bucket. */
  readonly database: readonly ('up' | 'down' | null)[];
}

/** Rates over the last few seconds and latency percentiles over the last minute. */
export interface RecentStatus {
  /** The window of the rates, ms (the last finished buckets). */
  readonly rateWindowMs: number;
  readonly requestsPerSecond: number;
  readonly shedPerSecond: number;
  readonly shedByReason: Readonly<Partial<Record<ShedReason, number>>>;
  readonly upstreamErrorsPerSecond: number;
  /** The window of the percentiles, ms. */
  readonly latencyWindowMs: number;
  readonly queueWaitMs: Percentiles;
  readonly upstreamMs: Percentiles;
}

/** Histogram bins: bin 0 below 0.1 ms, then four per octave up to about 6 minutes. */
const BINS = 88;
const MIN_MS = 0.1;
const binOf = (ms: number): number =>
  ms < MIN_MS ? 0 : Math.min(BINS - 1, 1 + Math.floor(Math.log2(ms / MIN_MS) * 4));
const binValue = (bin: number): number => {
  const ms = bin === 0 ? 0 : MIN_MS * 2 ** ((bin - 0.5) / 4);
  return ms < 10 ? Math.round(ms * 10) / 10 : Math.round(ms);
};
function count(h: Uint32Array, ms: number): void {
  const bin = binOf(ms);
  h[bin] = (h[bin] ?? 0) + 1;
}
function quantile(h: Uint32Array, q: number): number | null {
  const total = h.reduce((a, b) => a + b, 0);
  let seen = 0;
  for (const [bin, n] of h.entries()) {
    seen += n;
    if (seen >= Math.ceil(q * total) && seen > 0) return binValue(bin);
  }
  return null;
}
const SEVERITY: Readonly<Record<BreakerState, number>> = { closed: 0, 'half-open': 1, open: 2 };

/** A bucket: requests, sheds and upstream errors counted, latencies binned, gauges sampled. */
const newBucket = (index: number) => ({
  index,
  requests: 0,
  upstreamErrors: 0,
  shed: Object.fromEntries(SHED_REASONS.map((r) => [r, 0])) as Record<ShedReason, number>,
  wait: new Uint32Array(BINS),
  upstream: new Uint32Array(BINS),
  gauges: {} as Partial<TimelineGauges>,
});
type Bucket = ReturnType<typeof newBucket>;

/** Builds a ring of `buckets` buckets of `bucketMs` each, starting now. */
export function timeline(bucketMs: number, buckets: number, now: () => number) {
  const ring: (Bucket | undefined)[] = new Array(buckets);
  const first = Math.floor(now() / bucketMs);
  /** The bucket of absolute number `index`, when the ring still holds it. */
  const held = (index: number): Bucket | undefined =>
    ring[index % buckets]?.index === index ? ring[index % buckets] : undefined;
  function current(): Bucket {
    const index = Math.floor(now() / bucketMs);
    let b = held(index);
    if (b === undefined) {
      b = newBucket(index);
      ring[index % buckets] = b;
    }
    return b;
  }
  /** The absolute numbers of the finished buckets of the last `ms` (at most the ring). */
  function finished(ms: number): number[] {
    const last = Math.floor(now() / bucketMs) - 1;
    const from = Math.max(first, last - Math.min(buckets - 1, Math.ceil(ms / bucketMs)) + 1);
    return Array.from({ length: Math.max(0, last - from + 1) }, (_, i) => from + i);
  }

  return {
    /** Counts one finished request, shed for `shed` if given. */
    request(r: AccessLogEntry, shed: ShedReason | undefined): void {
      const b = current();
      b.requests += 1;
      if (shed) b.shed[shed] += 1;
      if (r.error?.startsWith('E_UPSTREAM_')) b.upstreamErrors += 1;
      if (r.queueWaitMs !== undefined) count(b.wait, r.queueWaitMs);
      if (r.upstreamMs !== undefined) count(b.upstream, r.upstreamMs);
    },
    /** Records the gauges and states now (also called on every state change). */
    sample(g: TimelineGauges): void {
      const b = current();
      const was = b.gauges;
      b.gauges = {
        ...g,
        inFlight: Math.max(was.inFlight ?? 0, g.inFlight),
        queued: Math.max(was.queued ?? 0, g.queued),
        breaker: was.breaker && SEVERITY[was.breaker] > SEVERITY[g.breaker] ? was.breaker : g.breaker,
        database: was.database === 'down' ? 'down' : g.database,
      };
    },
    history(): HistoryStatus {
      const indexes = finished(bucketMs * buckets);
      const rows = indexes.map(held);
      const perSecond = (n: number): number => Math.round((n * 10_000) / bucketMs) / 10;
      const column = <T>(f: (b: Bucket) => T | null): (T | null)[] => rows.map((b) => (b ? f(b) : null));
      const rate = (f: (b: Bucket) => number): number[] => rows.map((b) => (b ? perSecond(f(b)) : 0));
      const percentiles = (h: (b: Bucket) => Uint32Array) => ({
        p50: column((b) => quantile(h(b), 0.5)),
        p99: column((b) => quantile(h(b), 0.99)),
      });
      return {
        bucketMs,
        from: (indexes[0] ?? Math.floor(now() / bucketMs)) * bucketMs,
        requestsPerSecond: rate((b) => b.requests),
        shedPerSecond: Object.fromEntries(SHED_REASONS.map((r) => [r, rate((b) => b.shed[r])])) as Record<
          ShedReason,
          number[]
        >,
        upstreamErrorsPerSecond: rate((b) => b.upstreamErrors),
        queueWaitMs: percentiles((b) => b.wait),
        upstreamMs: percentiles((b) => b.upstream),
        inFlight: column((b) => b.gauges.inFlight ?? null),
        queued: column((b) => b.gauges.queued ?? null),
        limit: column((b) => b.gauges.limit ?? null),
        ceiling: column((b) => b.gauges.ceiling ?? null),
        dbConnections: column((b) => b.gauges.dbConnections ?? null),
        dbMax: column((b) => b.gauges.dbMax ?? null),
        breaker: column((b) => b.gauges.breaker ?? null),
        database: column((b) => b.gauges.database ?? null),
      };
    },
    recent(rateWindowMs: number, latencyWindowMs: number): RecentStatus {
      const rated = finished(rateWindowMs).map(held);
      const seconds = Math.max(1, rated.length) * (bucketMs / 1000);
      const sum = (f: (b: Bucket) => number): number => rated.reduce((a, b) => a + (b ? f(b) : 0), 0);
      const perSecond = (n: number): number => Math.round((n / seconds) * 100) / 100;
      const shedByReason: Partial<Record<ShedReason, number>> = {};
      for (const r of SHED_REASONS) {
        const n = sum((b) => b.shed[r]);
        if (n > 0) shedByReason[r] = perSecond(n);
      }
      const wait = new Uint32Array(BINS);
      const upstream = new Uint32Array(BINS);
      const last = Math.floor(now() / bucketMs);
      for (const index of [...finished(latencyWindowMs), last]) {
        const b = held(index);
        if (!b) continue;
        for (const [i, n] of b.wait.entries()) wait[i] = (wait[i] ?? 0) + n;
        for (const [i, n] of b.upstream.entries()) upstream[i] = (upstream[i] ?? 0) + n;
      }
      return {
        rateWindowMs: seconds * 1000,
        requestsPerSecond: perSecond(sum((b) => b.requests)),
        shedPerSecond: perSecond(sum((b) => SHED_REASONS.reduce((a, r) => a + b.shed[r], 0))),
        shedByReason,
        upstreamErrorsPerSecond: perSecond(sum((b) => b.upstreamErrors)),
        latencyWindowMs,
        queueWaitMs: { p50: quantile(wait, 0.5), p99: quantile(wait, 0.99) },
        upstreamMs: { p50: quantile(upstream, 0.5), p99: quantile(upstream, 0.99) },
      };
    },
  };
}
