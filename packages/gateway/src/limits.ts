// How many requests the gateway admits at once. Without a database: a fixed number. With one,
// a ceiling it never crosses and, under it, a limit that follows the database's measured load
// (admission's `loadLimit`): the ceiling is what PostgreSQL can still give the upstream
// (`max_connections` minus reserved, minus what others hold or the reserve, minus the gateway's
// own pool, minus upstream connections idle beyond the requests in flight: leaks), or behind
// PgBouncer the configured budget; the load is the upstream's busy backends in
// `pg_stat_activity`, or PgBouncer's `SHOW POOLS`.
import { type LimitSource, type LoadLimit, loadLimit } from '@sluice/admission';
import { TypedEvents } from '@sluice/kit';
import { activityOf, type ConnectionSample, type PgBouncerSample } from '@sluice/pool';
import type { GatewayConfig } from './config/settings.js';

/** A limit whose value the gateway sets (the ceiling). */
export interface SettableLimit extends LimitSource {
  set(value: number): void;
}

/** A {@link LimitSource} holding one number, changed with `set()`. */
export function settableLimit(initial: number): SettableLimit {
  const events = new TypedEvents<{ change: number }>();
  let current = initial;
  return {
    get current() {
      return current;
    },
    onChange: (listener) => events.on('change', listener),
    set(value) {
      if (value === current) return;
      current = value;
      events.emit('change', value);
    },
  };
}

/**
 * The ceiling PostgreSQL allows the upstream now, from one `pg_stat_activity` sample: the
 * server's connections, minus what others hold (or the reserve, if more), minus the gateway's
 * pool, minus the upstream's connections beyond `inFlight` (left idle: leaked), at least 1.
 */
export function postgresCeiling(
  sample: ConnectionSample,
  config: Pick<GatewayConfig, 'upstreamApplicationName' | 'dbReserve' | 'poolMax'>,
  gatewayApplication: string,
  inFlight: number,
): number {
  const upstream = activityOf(sample, config.upstreamApplicationName).total;
  const gateway = activityOf(sample, gatewayApplication).total;
  const others = Math.max(0, sample.total - upstream - gateway);
  const leaked = Math.max(0, upstream - inFlight);
  const free =
    sample.maxConnections -
    sample.reservedConnections -
    Math.max(config.dbReserve, others) -
    config.poolMax -
    leaked;
  return Math.max(1, free);
}

/** What the admission limit needs to be fed. */
export interface AdmissionLimit {
  /** The gate's limit. */
  readonly source: LimitSource;
  /** The ceiling (its `current`); set from database samples. */
  readonly ceiling: SettableLimit;
  /** The load-following limit, when load control is on. */
  readonly load: LoadLimit | undefined;
  /** Feeds one PostgreSQL sample (ceiling and, when not behind PgBouncer, the load). */
  onPostgresSample(sample: ConnectionSample, inFlight: number, behindPgBouncer: boolean): void;
  /** Feeds one PgBouncer sample (the load). */
  onPgBouncerSample(sample: PgBouncerSample): void;
  close(): void;
}

/** The initial (and without a database, the only) limit. */
export const DEFAULT_LIMIT = 20;

/** Builds the admission limit for `config` (`withDatabase`: the gateway has `databaseUrl`). */
export function admissionLimit(
  config: Pick<
    GatewayConfig,
    'dbBudget' | 'upstreamConnections' | 'loadControl' | 'upstreamApplicationName' | 'dbReserve' | 'poolMax'
  >,
  withDatabase: boolean,
  gatewayApplication: string,
): AdmissionLimit {
  const cap = config.dbBudget ?? config.upstreamConnections;
  const ceiling = settableLimit(config.dbBudget ?? DEFAULT_LIMIT);
  const load =
    withDatabase && config.loadControl
      ? loadLimit({ ceiling, floor: 1, initial: Math.min(DEFAULT_LIMIT, ceiling.current) })
      : undefined;
  return {
    source: load ?? ceiling,
    ceiling,
    load,
    onPostgresSample(sample, inFlight, behindPgBouncer) {
      if (behindPgBouncer) return;
      ceiling.set(Math.min(cap, postgresCeiling(sample, config, gatewayApplication, inFlight)));
      if (!load) return;
      const a = activityOf(sample, config.upstreamApplicationName);
      load.sample({ busy: a.busy, capacity: ceiling.current, waiting: a.waiting });
    },
    onPgBouncerSample(sample) {
      ceiling.set(cap);
      load?.sample({
        busy: sample.serverActive,
        capacity: sample.poolSize,
        waiting: sample.clientWaiting,
        maxWaitMs: sample.maxWaitMs,
      });
    },
    close() {
      load?.close();
    },
  };
}
