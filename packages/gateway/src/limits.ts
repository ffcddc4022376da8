// How many requests the gateway admits at once. Without a database: a fixed number. With one,
// a ceiling it never crosses and, under it, a limit that follows the database's measured load
// (admission's `loadLimit`, one step a second): the ceiling is what PostgreSQL can still give the
// upstream (`max_connections` minus reserved, minus what others hold or the reserve, minus the
// gateway's own pool), less the upstream's connections idle beyond the requests in flight
// (leaks, at their worst of the last second, and room for a burst of them), or behind PgBouncer
// the configured budget; the load is the upstream's busy backends in `pg_stat_activity`, or
// PgBouncer's `SHOW POOLS`.
import { loadLimit } from '@sluice/admission';
import { settableValue } from '@sluice/kit';
import { activityOf, type ConnectionSample, type PgBouncerSample } from '@sluice/pool';
import type { GatewayConfig } from './config/settings.js';

/**
 * From one `pg_stat_activity` sample: the `room` PostgreSQL has for the upstream (its connections,
 * minus what others hold or the reserve, if more, minus the gateway's pool) and the upstream's
 * connections beyond `inFlight`, left idle: `leaked`.
 */
export function postgresRoom(
  sample: ConnectionSample,
  config: Pick<GatewayConfig, 'upstreamApplicationName' | 'dbReserve' | 'poolMax'>,
  gatewayApplication: string,
  inFlight: number,
): { room: number; leaked: number } {
  const upstream = activityOf(sample, config.upstreamApplicationName).total;
  const others = Math.max(0, sample.total - upstream - activityOf(sample, gatewayApplication).total);
  const spare = sample.maxConnections - sample.reservedConnections - config.poolMax;
  return { room: spare - Math.max(config.dbReserve, others), leaked: Math.max(0, upstream - inFlight) };
}

/**
 * The room less the leaked connections and `margin` (leaks before the next sample). With the
 * reaper, leaks may take it to 0 (requests wait for the reaper, not past the budget); without
 * it, or with no room at all, it stays at least 1.
 */
export function postgresCeiling(room: number, leaked: number, margin: number, reaper: boolean): number {
  return room <= 0 ? 1 : Math.max(reaper ? 0 : 1, room - leaked - margin);
}

/** The initial (and without a database, the only) limit. */
export const DEFAULT_LIMIT = 20;

/**
 * Waits for a PgBouncer server connection shorter than this do not bring the limit down: a few
 * clients waiting keep its pool full between transactions. At 50 ms (admission's default) bulk
 * lost a tenth of PgBouncer's throughput on a busy pool; at 150 ms it lost 3-8%, and the
 * interactive p99 did not move (`pnpm bench incident --variants heavy`).
 */
const PGBOUNCER_WAIT_TOLERANCE_MS = 150;

/** Load control steps once per this many ms, however often the database is sampled. */
export const LOAD_STEP_MS = 1000;

/** Builds the admission limit for `config` (`withDatabase`: the gateway has `databaseUrl`). */
export function admissionLimit(
  config: Pick<GatewayConfig, 'dbBudget' | 'upstreamConnections' | 'loadControl' | 'reaper'> &
    Parameters<typeof postgresRoom>[1],
  withDatabase: boolean,
  gatewayApplication: string,
) {
  const cap = config.dbBudget ?? config.upstreamConnections;
  const ceiling = settableValue(config.dbBudget ?? DEFAULT_LIMIT);
  const load =
    withDatabase && config.loadControl
      ? // A full capacity is the goal (as PgBouncer alone keeps its pool): the ceiling bounds it,
        // waits beyond the tolerance and latency bring it down.
        loadLimit({
          ceiling,
          floor: 1,
          initial: Math.min(DEFAULT_LIMIT, ceiling.current),
          targetUtilization: 1,
          waitToleranceMs: PGBOUNCER_WAIT_TOLERANCE_MS,
        })
      : undefined;
  /** Leaked connections of the last {@link LOAD_STEP_MS}'s samples, and their growth. */
  let recent: { at: number; leaked: number; growth: number }[] = [];
  let leakedBefore = 0;
  let steppedAt = Number.NEGATIVE_INFINITY;
  const due = (at: number): boolean => {
    if (at - steppedAt < LOAD_STEP_MS * 0.9) return false;
    steppedAt = at;
    return true;
  };
  return {
    /** The gate's limit. */
    source: load ?? ceiling,
    /** The ceiling (its `current`); set from database samples. */
    ceiling,
    /** The load-following limit, when load control is on. */
    load,
    /** Feeds one PostgreSQL sample (ceiling and, when not behind PgBouncer, the load). */
    onPostgresSample(sample: ConnectionSample, inFlight: number, behindPgBouncer: boolean): void {
      if (behindPgBouncer) return;
      const { room, leaked } = postgresRoom(sample, config, gatewayApplication, inFlight);
      // A leak frees its slot at once and the next request takes it; the ceiling learns of it at
      // the next sample, a moment old when read. So it counts the most leaked connections of the
      // last second, plus room for that second's worst burst again.
      recent = recent.filter((r) => sample.at - r.at < LOAD_STEP_MS);
      recent.push({ at: sample.at, leaked, growth: Math.max(0, leaked - leakedBefore) });
      leakedBefore = leaked;
      const worst = Math.max(...recent.map((r) => r.leaked));
      const margin = Math.max(...recent.map((r) => r.growth));
      ceiling.set(Math.min(cap, postgresCeiling(room, worst, margin, config.reaper)));
      if (!load || !due(sample.at)) return;
      const a = activityOf(sample, config.upstreamApplicationName);
      load.sample({ busy: a.busy, capacity: ceiling.current, waiting: a.waiting });
    },
    /** Feeds one PgBouncer sample (the load). */
    onPgBouncerSample(sample: PgBouncerSample): void {
      ceiling.set(cap);
      if (!due(sample.at)) return;
      load?.sample({
        busy: sample.serverActive,
        capacity: sample.poolSize,
        waiting: sample.clientWaiting,
        maxWaitMs: sample.maxWaitMs,
      });
    },
    close(): void {
      load?.close();
    },
  };
}
