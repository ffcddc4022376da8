import { checkFunction, checkInteger, checkNumber, checkObject, checkString, optional } from '@sluice/kit';
import { type ApplicationPattern, applicationMatcher } from './application-pattern.js';
import { poolChannels } from './channels.js';
import { Repeater, type Scheduled } from './repeater.js';
import { BUDGET_COLUMNS, clientBackendSql, type Queryable } from './server-budget.js';
import { type ConnectionLevel, nextLevel } from './thresholds.js';

/**
 * What the backends of one application are doing. `busy` (`active + idleInTransaction`) is what
 * it holds for work in flight; `waiting` is the part of `active` blocked on a lock.
 */
export interface ApplicationActivity {
  /** Client backends of the application. */
  total: number;
  /** `state = 'active'` (running a statement, including those waiting on a lock). */
  active: number;
  /** `state = 'idle'`: connected, doing nothing. */
  idle: number;
  /** `idle in transaction` and `idle in transaction (aborted)`: holding a transaction open. */
  idleInTransaction: number;
  /** Active and waiting on a lock (`wait_event_type = 'Lock'`); part of `active`. */
  waiting: number;
  /** `active + idleInTransaction`. */
  busy: number;
}

/** One look at `pg_stat_activity`, taken with a single query. */
export interface ConnectionSample {
  /** When it was taken, epoch ms. */
  at: number;
  /** `SHOW max_connections`. */
  maxConnections: number;
  /** `superuser_reserved_connections` (+ `reserved_connections` on PostgreSQL 16+). */
  reservedConnections: number;
  /** Client backends now (they count against `max_connections`). */
  total: number;
  /** Client backends by state: `active`, `idle`, `idle in transaction`, ... (`unknown` when not visible). */
  byState: Record<string, number>;
  /** Client backends by `application_name` (`''` when unset). */
  byApplication: Record<string, number>;
  /** What each application's backends are doing (same keys as `byApplication`). */
  activityByApplication: Record<string, ApplicationActivity>;
  /** Client backends by database. */
  byDatabase: Record<string, number>;
  /** For each application with idle connections, how long its oldest one has been idle, ms. */
  oldestIdleMsByApplication: Record<string, number>;
}

/** The payload of the threshold event. */
export interface ThresholdEvent {
  readonly level: ConnectionLevel;
  readonly previous: ConnectionLevel;
  readonly sample: ConnectionSample;
  /** `total / (maxConnections - reservedConnections)` of the sample. */
  readonly usage: number;
}

/** Options of {@link monitorConnections}. */
export interface MonitorOptions {
  /** Where the sampling query runs (a SluicePool, or anything with `query`). */
  pool: Queryable;
  /** Time between the end of one sample and the start of the next, ms (250 ms is fine: one cheap query). */
  intervalMs: number;
  /** Usage (fraction of `max_connections` minus reserved) at which the level becomes `warn`. */
  warnAt: number;
  /** Usage at which the level becomes `critical`; at least `warnAt`. */
  criticalAt: number;
  /**
   * A level is left only once usage falls this far below its threshold (a fraction), so a value
   * hovering at a threshold does not flap. @default 0.05
   */
  hysteresis?: number | undefined;
  /** Count only backends connected to this database. @default every database on the server */
  database?: string | undefined;
  /** Clock for `sample.at`. @default Date.now */
  now?: (() => number) | undefined;
}

/** Events of a {@link ConnectionMonitor}. */
export interface ConnectionMonitorEvents {
  /** Every sample. */
  sample: ConnectionSample;
  /** The level changed. */
  threshold: ThresholdEvent;
  /** A sample failed (without a listener: one process warning per failing streak). */
  error: unknown;
}

/** A running connection monitor. */
export interface ConnectionMonitor extends Scheduled<ConnectionMonitorEvents> {
  /** The most recent sample, once one was taken. */
  readonly lastSample: ConnectionSample | undefined;
  /** The level after the most recent sample (`ok` before the first). */
  readonly level: ConnectionLevel;
  /** Usage of the most recent sample, or undefined before the first. */
  readonly usage: number | undefined;
  /** Takes a sample now (or joins the one in flight). @throws {PoolError} `E_POOL_CLOSED` after close() */
  sampleNow(): Promise<ConnectionSample>;
}

interface SampleRow {
  mc: number;
  rc: number;
  state: string | null;
  app: string | null;
  db: string | null;
  n: number | null;
  waiting: number | null;
  oldest_idle_ms: number | null;
}

// One pass over pg_stat_activity, grouped by (state, application, database).
const SAMPLE_SQL = `
SELECT ${BUDGET_COLUMNS},
       a.state, a.app, a.db, a.n, a.waiting, a.oldest_idle_ms
  FROM (SELECT 1) AS one
  LEFT JOIN (
    SELECT coalesce(state, 'unknown') AS state,
           coalesce(application_name, '') AS app,
           coalesce(datname, '') AS db,
           count(*)::int AS n,
           (count(*) FILTER (WHERE wait_event_type = 'Lock'))::int AS waiting,
           (max(extract(epoch FROM clock_timestamp() - state_change) * 1000)
              FILTER (WHERE state = 'idle'))::float8 AS oldest_idle_ms
      FROM pg_stat_activity
     WHERE ${clientBackendSql()}
       AND ($1::text IS NULL OR datname = $1::text)
     GROUP BY 1, 2, 3
  ) AS a ON true`;

const idleActivity = (): ApplicationActivity => ({
  total: 0,
  active: 0,
  idle: 0,
  idleInTransaction: 0,
  waiting: 0,
  busy: 0,
});

/**
 * The activity of every application in `sample` that matches one of `patterns`, summed (an
 * exact name, a prefix ending in `*` such as `'cvat:worker:*'`, or a RegExp).
 *
 * @example
 * ```ts
 * const { busy, waiting } = activityOf(monitor.lastSample!, ['cvat:server', 'cvat:worker:*']);
 * ```
 */
export function activityOf(
  sample: Pick<ConnectionSample, 'activityByApplication'>,
  patterns: ApplicationPattern | readonly ApplicationPattern[],
): ApplicationActivity {
  const matchers = (Array.isArray(patterns) ? patterns : [patterns]).map(applicationMatcher);
  const sum = idleActivity();
  for (const [app, activity] of Object.entries(sample.activityByApplication)) {
    if (!matchers.some((matches) => matches(app))) continue;
    for (const key of Object.keys(sum) as (keyof ApplicationActivity)[]) sum[key] += activity[key];
  }
  return sum;
}

/**
 * Samples `pg_stat_activity` every `intervalMs` with one query: client backends against
 * `max_connections`, counts by state, application and database, what each application's backends
 * are doing (active, idle, idle in transaction, waiting on a lock), and the oldest idle connection
 * per application. Raises `warn`/`critical` with hysteresis. The first sample is taken at once.
 * Seeing other roles' sessions in full needs `pg_monitor` (or `pg_read_all_stats`).
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using monitor = monitorConnections({ pool, intervalMs: 250, warnAt: 0.7, criticalAt: 0.9 });
 * monitor.on('threshold', ({ level, usage }) => log.warn({ level, usage }, 'postgres connections'));
 * monitor.on('sample', (s) => gate.follow(activityOf(s, 'cvat:server').busy));
 * ```
 */
export function monitorConnections(options: MonitorOptions): ConnectionMonitor {
  checkObject('options', options);
  checkObject('pool', options.pool);
  checkFunction('pool.query', options.pool.query);
  const intervalMs = checkInteger('intervalMs', options.intervalMs, 10, 86_400_000);
  const warnAt = checkNumber('warnAt', options.warnAt, 0, 10, true);
  const criticalAt = checkNumber('criticalAt', options.criticalAt, 0, 10, true);
  if (criticalAt < warnAt) {
    throw new RangeError(`criticalAt should be at least warnAt (${warnAt}), got ${criticalAt}`);
  }
  const hysteresis = optional(options.hysteresis, 0.05, (v) => checkNumber('hysteresis', v, 0, warnAt));
  const database = optional(options.database, null, (v) => checkString('database', v));
  const now = optional(options.now, Date.now, (v) => checkFunction<() => number>('now', v));
  const { pool } = options;
  let level: ConnectionLevel = 'ok';
  let usage: number | undefined;

  const sample = async (): Promise<ConnectionSample> => {
    const { rows } = await pool.query<SampleRow & Record<string, unknown>>(SAMPLE_SQL, [database]);
    const first = rows[0]!; // always one row: the LEFT JOIN above
    const s: ConnectionSample = {
      at: now(),
      maxConnections: first.mc,
      reservedConnections: first.rc,
      total: 0,
      byState: {},
      byApplication: {},
      activityByApplication: {},
      byDatabase: {},
      oldestIdleMsByApplication: {},
    };
    for (const { n, state, app, db, waiting, oldest_idle_ms } of rows) {
      if (n === null || state === null || app === null || db === null) continue;
      s.total += n;
      s.byState[state] = (s.byState[state] ?? 0) + n;
      s.byApplication[app] = (s.byApplication[app] ?? 0) + n;
      s.byDatabase[db] = (s.byDatabase[db] ?? 0) + n;
      const activity = s.activityByApplication[app] ?? idleActivity();
      s.activityByApplication[app] = activity;
      activity.total += n;
      if (state === 'active') activity.active += n;
      else if (state === 'idle') activity.idle += n;
      else if (state.startsWith('idle in transaction')) activity.idleInTransaction += n;
      activity.waiting += waiting ?? 0;
      activity.busy = activity.active + activity.idleInTransaction;
      if (oldest_idle_ms !== null) {
        const idle = Math.max(0, Math.round(oldest_idle_ms));
        s.oldestIdleMsByApplication[app] = Math.max(s.oldestIdleMsByApplication[app] ?? 0, idle);
      }
    }
    return s;
  };

  const repeater = new Repeater<ConnectionMonitorEvents, 'sample'>({
    task: sample,
    event: 'sample',
    intervalMs,
    firstRunMs: 0,
    name: 'connection monitor: sampling pg_stat_activity',
    warningCode: 'SLUICE_MONITOR_SAMPLE_FAILED',
  });
  repeater.events.on('sample', (s) => {
    usage = s.total / Math.max(1, s.maxConnections - s.reservedConnections);
    if (poolChannels.sample.hasSubscribers) poolChannels.sample.publish(s);
    const previous = level;
    level = nextLevel(previous, usage, { warnAt, criticalAt, hysteresis });
    if (level === previous) return;
    repeater.events.emit('threshold', { level, previous, sample: s, usage });
  });
  return {
    get lastSample() {
      return repeater.last;
    },
    get level() {
      return level;
    },
    get usage() {
      return usage;
    },
    sampleNow: () => repeater.runNow(),
    on: (event, listener) => repeater.events.on(event, listener),
    close: () => repeater.close(),
    [Symbol.asyncDispose]: () => repeater.close(),
  };
}
