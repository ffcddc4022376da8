import { TypedEvents } from '@sluice/kit';
import { poolChannels } from './channels.js';
import { PoolError } from './errors.js';
import { Repeater } from './repeater.js';
import { clientBackendSql, type Queryable } from './server-budget.js';
import { type ConnectionLevel, nextLevel } from './thresholds.js';
import { checkFunction, checkInteger, checkNumber, checkObject, describe } from './validate.js';

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
  /** Time between the end of one sample and the start of the next, ms. */
  intervalMs: number;
  /** Usage (fraction of `max_connections` minus reserved) at which the level becomes `warn`. */
  warnAt: number;
  /** Usage at which the level becomes `critical`; at least `warnAt`. */
  criticalAt: number;
  /**
   * A level is left only once usage falls this far below its threshold (a fraction), so a value
   * hovering at a threshold does not flap.
   * @default 0.05
   */
  hysteresis?: number;
  /** Count only backends connected to this database. @default every database on the server */
  database?: string;
  /** Clock for `sample.at`. @default Date.now */
  now?: () => number;
}

/** A running connection monitor. */
export interface ConnectionMonitor {
  /** The most recent sample, once one was taken. */
  readonly lastSample: ConnectionSample | undefined;
  /** The level after the most recent sample (`ok` before the first). */
  readonly level: ConnectionLevel;
  /** Usage of the most recent sample, or undefined before the first. */
  readonly usage: number | undefined;
  /** Takes a sample now (or joins the one in flight). @throws {PoolError} `E_POOL_CLOSED` after close() */
  sampleNow(): Promise<ConnectionSample>;
  /** Called with every sample; returns the unsubscribe function. */
  onSample(listener: (sample: ConnectionSample) => void): () => void;
  /** Called when the level changes; returns the unsubscribe function. */
  onThreshold(listener: (event: ThresholdEvent) => void): () => void;
  /** Called when a sample fails; returns the unsubscribe function. */
  onError(listener: (error: unknown) => void): () => void;
  /** Stops sampling (waits for a sample in flight). Idempotent. Does not close the pool. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface MonitorEvents {
  sample: ConnectionSample;
  threshold: ThresholdEvent;
  error: unknown;
}

interface SampleRow {
  mc: number;
  rc: number;
  state: string | null;
  app: string | null;
  db: string | null;
  n: number | null;
  oldest_idle_ms: number | null;
}

const SAMPLE_SQL = `
SELECT current_setting('max_connections')::int AS mc,
       (current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int) AS rc,
       a.state, a.app, a.db, a.n, a.oldest_idle_ms
  FROM (SELECT 1) AS one
  LEFT JOIN (
    SELECT coalesce(state, 'unknown') AS state,
           coalesce(application_name, '') AS app,
           coalesce(datname, '') AS db,
           count(*)::int AS n,
           (max(extract(epoch FROM clock_timestamp() - state_change) * 1000)
              FILTER (WHERE state = 'idle'))::float8 AS oldest_idle_ms
      FROM pg_stat_activity
     WHERE ${clientBackendSql()}
       AND ($1::text IS NULL OR datname = $1::text)
     GROUP BY 1, 2, 3
  ) AS a ON true`;

/**
 * Samples `pg_stat_activity` every `intervalMs` with one query: client backends against
 * `max_connections`, counts by state, application and database, and the oldest idle connection
 * per application. Raises `warn`/`critical` with hysteresis. The first sample is taken at once.
 * Seeing other roles' sessions in full needs `pg_monitor` (or `pg_read_all_stats`).
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using monitor = monitorConnections({ pool, intervalMs: 5000, warnAt: 0.7, criticalAt: 0.9 });
 * monitor.onThreshold(({ level, usage }) => log.warn({ level, usage }, 'postgres connections'));
 * ```
 */
export function monitorConnections(options: MonitorOptions): ConnectionMonitor {
  return new Monitor(options);
}

class Monitor implements ConnectionMonitor {
  readonly #pool: Queryable;
  readonly #database: string | null;
  readonly #now: () => number;
  readonly #thresholds: { warnAt: number; criticalAt: number; hysteresis: number };
  readonly #events = new TypedEvents<MonitorEvents>();
  readonly #repeater: Repeater<ConnectionSample>;
  #closing: Promise<void> | undefined;
  #last: ConnectionSample | undefined;
  #usage: number | undefined;
  #level: ConnectionLevel = 'ok';
  #failing = false;

  constructor(o: MonitorOptions) {
    const where = 'monitorConnections';
    checkObject(where, 'options', o);
    checkObject(where, 'pool', o.pool);
    checkFunction(where, 'pool.query', o.pool.query);
    const intervalMs = checkInteger(where, 'intervalMs', o.intervalMs, 10, 86_400_000);
    const warnAt = checkNumber(where, 'warnAt', o.warnAt, Number.MIN_VALUE, 10);
    const criticalAt = checkNumber(where, 'criticalAt', o.criticalAt, Number.MIN_VALUE, 10);
    if (criticalAt < warnAt) {
      throw new RangeError(`${where}: criticalAt should be at least warnAt (${warnAt}), got ${criticalAt}`);
    }
    const hysteresis = checkNumber(where, 'hysteresis', o.hysteresis ?? 0.05, 0, warnAt);
    if (o.database !== undefined && (typeof o.database !== 'string' || o.database === '')) {
      throw new TypeError(`${where}: database should be a non-empty string, got ${describe(o.database)}`);
    }
    if (o.now !== undefined) checkFunction(where, 'now', o.now);
    this.#pool = o.pool;
    this.#database = o.database ?? null;
    this.#now = o.now ?? Date.now;
    this.#thresholds = { warnAt, criticalAt, hysteresis };
    this.#repeater = new Repeater(
      () => this.#sample(),
      intervalMs,
      (sample) => this.#observe(sample),
      (error) => this.#fail(error),
    );
    this.#repeater.start(0);
  }

  get lastSample(): ConnectionSample | undefined {
    return this.#last;
  }
  get level(): ConnectionLevel {
    return this.#level;
  }
  get usage(): number | undefined {
    return this.#usage;
  }

  async sampleNow(): Promise<ConnectionSample> {
    if (this.#closing) throw new PoolError('E_POOL_CLOSED', 'the connection monitor is closed');
    return this.#repeater.runNow();
  }

  onSample(listener: (sample: ConnectionSample) => void): () => void {
    return this.#events.on('sample', listener);
  }
  onThreshold(listener: (event: ThresholdEvent) => void): () => void {
    return this.#events.on('threshold', listener);
  }
  onError(listener: (error: unknown) => void): () => void {
    return this.#events.on('error', listener);
  }

  close(): Promise<void> {
    this.#closing ??= this.#repeater.close();
    return this.#closing;
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #sample(): Promise<ConnectionSample> {
    const { rows } = await this.#pool.query<SampleRow & Record<string, unknown>>(SAMPLE_SQL, [
      this.#database,
    ]);
    const first = rows[0];
    if (!first) throw new Error('the pg_stat_activity sample returned no row');
    const sample: ConnectionSample = {
      at: this.#now(),
      maxConnections: first.mc,
      reservedConnections: first.rc,
      total: 0,
      byState: {},
      byApplication: {},
      byDatabase: {},
      oldestIdleMsByApplication: {},
    };
    for (const row of rows) {
      if (row.n === null || row.state === null || row.app === null || row.db === null) continue;
      sample.total += row.n;
      sample.byState[row.state] = (sample.byState[row.state] ?? 0) + row.n;
      sample.byApplication[row.app] = (sample.byApplication[row.app] ?? 0) + row.n;
      sample.byDatabase[row.db] = (sample.byDatabase[row.db] ?? 0) + row.n;
      if (row.oldest_idle_ms !== null) {
        const idle = Math.max(0, Math.round(row.oldest_idle_ms));
        sample.oldestIdleMsByApplication[row.app] = Math.max(
          sample.oldestIdleMsByApplication[row.app] ?? 0,
          idle,
        );
      }
    }
    return sample;
  }

  #observe(sample: ConnectionSample): void {
    this.#failing = false;
    const budget = Math.max(1, sample.maxConnections - sample.reservedConnections);
    const usage = sample.total / budget;
    this.#last = sample;
    this.#usage = usage;
    if (poolChannels.sample.hasSubscribers) poolChannels.sample.publish(sample);
    this.#events.emit('sample', sample);
    const previous = this.#level;
    const level = nextLevel(previous, usage, this.#thresholds);
    if (level !== previous) {
      this.#level = level;
      this.#events.emit('threshold', { level, previous, sample, usage });
    }
  }

  #fail(error: unknown): void {
    if (this.#events.has('error')) {
      this.#events.emit('error', error);
    } else if (!this.#failing) {
      const reason = error instanceof Error ? error.message : String(error);
      process.emitWarning(`connection monitor: sampling pg_stat_activity failed: ${reason}`, {
        code: 'SLUICE_MONITOR_SAMPLE_FAILED',
      });
    }
    this.#failing = true;
  }
}
