import { checkFunction, checkInteger, checkNumber, checkObject, optional, settableValue } from '@sluice/kit';
import { type GateDemand, isLimitSource, type LatencySample, type LimitSource } from './limit-source.js';

/** One measurement of the database's load, pushed by the caller (e.g. every second). */
export interface LoadSample {
  /**
   * Server connections doing work for the upstream now. PgBouncer: `sv_active` of its pool;
   * PostgreSQL: the upstream's backends `active`, `idle in transaction` or waiting on a lock.
   */
  readonly busy: number;
  /** Connections that may do such work: PgBouncer's pool size; for PostgreSQL, the ceiling. */
  readonly capacity: number;
  /** Clients waiting for a server connection: PgBouncer `cl_waiting`; PostgreSQL: lock waiters. */
  readonly waiting: number;
  /** How long the oldest of them has waited (PgBouncer `maxwait`), when known. */
  readonly maxWaitMs?: number | undefined;
}

/** Options of {@link loadLimit}. */
export interface LoadLimitOptions {
  /** The hard ceiling, never crossed: a number, or a source such as {@link databaseBudget}. */
  ceiling: number | LimitSource;
  /** The lowest limit. @default 1 */
  floor?: number | undefined;
  /**
   * The limit before the first samples. Starting low (a slow start) lets the latency guard learn
   * the upstream's calm latency before load hides it. @default floor
   */
  initial?: number | undefined;
  /** Share of `capacity` kept busy at most, in (0, 1]: the rest absorbs bursts without waits. @default 0.9 */
  targetUtilization?: number | undefined;
  /** With `maxWaitMs` in the samples, waits shorter than this are tolerated (without it, any waiter counts). @default 50 */
  waitToleranceMs?: number | undefined;
  /**
   * Latency guard, as a multiple `t` of the baseline (the lowest mean latency of the samples
   * `record`ed per period, over the last 60 periods): while the database is less than half busy,
   * the limit shrinks above `t` times it; growth jumps below `1 + (t - 1) / 4` times it, goes one
   * at a time below `1 + (t - 1) / 2`, and holds above. @default 3
   */
  latencyTolerance?: number | undefined;
  /** The gate's queue and in-flight count. @default the gauges of the gate that follows this source */
  demand?: (() => GateDemand) | undefined;
}

/** A {@link LimitSource} that follows the database's measured load; `close()` stops following the ceiling. */
export interface LoadLimit extends LimitSource {
  /** Takes one load sample and moves the limit (one control step). */
  sample(load: LoadSample): void;
  /** Takes a latency sample (gates call it on every release). */
  record(sample: LatencySample): void;
  /** The ceiling now. */
  readonly ceiling: number;
  /** Why the last step moved or held the limit. */
  readonly reason: LoadLimitReason;
  /** Stops following the ceiling. Idempotent. */
  close(): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What decided the last control step. */
export type LoadLimitReason = 'start' | 'waiting' | 'latency' | 'headroom' | 'steady' | 'no-demand';

/** Periods with fewer latency samples than this say nothing about latency. */
const MIN_LATENCY_SAMPLES = 3;
/** Periods whose lowest mean latency is the baseline: long enough to remember a calm period. */
const BASELINE_PERIODS = 60;

/**
 * A limit that follows the database's measured load under a hard ceiling it never crosses: it
 * grows while the database has headroom (`busy` below `targetUtilization` of `capacity`, nobody
 * waiting), requests queue in the gate and latency holds; it shrinks when clients wait for a
 * server connection or latency degrades. One control step per load sample: growth aims at the
 * in-flight count that would keep `targetUtilization` of the capacity busy (the measured share
 * of admitted requests holding a connection tells how many that is), halfway per step, at most
 * x1.5; waiting shrinks it in proportion to the excess (`busy + waiting` against the target), at
 * most by half. Steady load holds it (dead bands between growing and shrinking). Pure
 * arithmetic driven by the samples: no timers, no clock. See the README's simulation for how it
 * compares with a static limit and with Gradient2.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const limit = loadLimit({ ceiling: databaseBudget({ monitor, reserve: 5 }), floor: 2 });
 * const gate = new Semaphore({ limit });
 * setInterval(async () => limit.sample(await pgbouncerPool()), 1000); // { busy: sv_active, capacity: pool_size, waiting: cl_waiting, maxWaitMs }
 * ```
 */
export function loadLimit(options: LoadLimitOptions): LoadLimit {
  checkObject('options', options);
  const ceilingSource = isLimitSource(options.ceiling) ? options.ceiling : undefined;
  let ceiling = ceilingSource
    ? checkInteger('ceiling.current', ceilingSource.current, 0)
    : checkInteger('ceiling', options.ceiling, 1);
  const floor = optional(options.floor, 1, (v) => checkInteger('floor', v, 0));
  const num = (name: keyof LoadLimitOptions, fallback: number, min: number, max: number, above = false) =>
    optional(options[name], fallback, (v) => checkNumber(name, v, min, max, above));
  const target = num('targetUtilization', 0.9, 0, 1, true);
  const waitToleranceMs = num('waitToleranceMs', 50, 0, 3_600_000);
  const tolerance = num('latencyTolerance', 3, 1, 100, true);
  let demand = optional(options.demand, undefined, (v) => checkFunction<() => GateDemand>('demand', v));
  let limit = optional(options.initial, floor, (v) => checkInteger('initial', v, 0));
  const clamp = (n: number): number => Math.max(Math.min(floor, ceiling), Math.min(ceiling, n));
  limit = clamp(limit);
  const published = settableValue(Math.round(limit));
  let reason: LoadLimitReason = 'start';
  let busyAvg: number | undefined;
  let inFlightAvg: number | undefined;
  let rttSum = 0;
  let rttCount = 0;
  /** The period means of the last BASELINE_PERIODS periods: their minimum is the baseline. */
  const means: number[] = [];

  const publish = (): void => {
    limit = clamp(limit);
    published.set(Math.round(limit));
  };
  let unsubscribe = ceilingSource?.onChange((value) => {
    ceiling = value;
    publish();
  });

  let ratio: number | undefined;
  /** Where the current run of latency-driven shrinking began. */
  let episode: { from: number; ratio: number } | undefined;
  /** The period's mean latency over the baseline, smoothed over about two periods; undefined without samples. */
  const latencyRatio = (): number | undefined => {
    const count = rttCount;
    const mean = rttSum / Math.max(1, count);
    rttSum = 0;
    rttCount = 0;
    if (count < MIN_LATENCY_SAMPLES) {
      ratio = undefined; // nothing to go on: the database's load alone decides
      return ratio;
    }
    means.push(mean);
    if (means.length > BASELINE_PERIODS) means.shift();
    const r = mean / Math.min(...means);
    ratio = ratio === undefined ? r : (ratio + r) / 2;
    return ratio;
  };

  return {
    get current() {
      return published.current;
    },
    get ceiling() {
      return ceiling;
    },
    get reason() {
      return reason;
    },
    onChange: published.onChange,
    attach(gauges) {
      demand ??= gauges;
    },
    record(sample) {
      if (sample.dropped) return;
      rttSum += sample.rttMs;
      rttCount += 1;
    },
    sample(load) {
      checkObject('load', load);
      const count = (name: keyof LoadSample, v: unknown): number =>
        checkNumber(`load.${name}`, v, 0, Number.MAX_SAFE_INTEGER);
      const busy = count('busy', load.busy);
      const capacity = count('capacity', load.capacity);
      const waiting = count('waiting', load.waiting);
      const maxWaitMs = optional(load.maxWaitMs, undefined, (v) => count('maxWaitMs', v));
      const d = demand?.() ?? { queued: 1, inFlight: limit };
      // Smoothed over about two samples: instantaneous counts are noisy, a trend is not.
      busyAvg = busyAvg === undefined ? busy : (busyAvg + busy) / 2;
      inFlightAvg = inFlightAvg === undefined ? d.inFlight : (inFlightAvg + d.inFlight) / 2;
      const goal = target * capacity;
      const waits = maxWaitMs === undefined ? waiting > 0 : waiting > 0 && maxWaitMs >= waitToleranceMs;
      const r = latencyRatio();
      const base = Math.min(limit, Math.max(d.inFlight, 1));
      if (reason !== 'latency') episode = undefined;
      if (waits) {
        reason = 'waiting';
        // The in-flight requests wanting a connection are busy + waiting; keep `goal` of them.
        limit = Math.max(base / 2, Math.min(limit - 1, (base * goal) / Math.max(1, busy + waiting)));
      } else if (r !== undefined && r > tolerance && busyAvg < goal / 2) {
        // Slower while the database is not half busy: the upstream queues elsewhere (CPU,
        // workers); a busier database's latency is the waiting rule's business. Unless halving
        // the limit did not help: then the latency moved on its own; the baseline starts afresh.
        reason = 'latency';
        episode ??= { from: limit, ratio: r };
        if (limit <= episode.from / 2 && r >= episode.ratio * 0.9) {
          means.length = 0;
          ratio = episode = undefined;
        } else limit = Math.max(base / 2, Math.min(limit - 1, (base * tolerance) / r));
      } else if (d.queued === 0) {
        reason = 'no-demand';
      } else if (busyAvg < goal && (r === undefined || r <= 1 + (tolerance - 1) / 2)) {
        reason = 'headroom';
        // The share of admitted requests holding a connection tells how many fill `goal`; while
        // latency is near its baseline, go halfway there, else probe one at a time.
        const share = busyAvg / Math.max(1, inFlightAvg);
        const wanted = share > 0 ? goal / share : limit * 2;
        const jump = r === undefined || r <= 1 + (tolerance - 1) / 4;
        limit = jump ? Math.min(limit * 1.5 + 1, Math.max(limit + 1, (limit + wanted) / 2)) : limit + 1;
      } else {
        reason = 'steady';
      }
      publish();
    },
    close() {
      unsubscribe?.();
      unsubscribe = undefined;
      published.clear();
    },
    async [Symbol.asyncDispose]() {
      this.close();
    },
  };
}
