import { checkInteger, checkNumber, checkObject, optional, settableValue, show } from '@sluice/kit';
import type { LimitSource } from './limit-source.js';

/** What a connection sample must carry (a `@sluice/pool` `ConnectionSample` fits). */
export interface ConnectionSampleLike {
  /** `max_connections`. */
  readonly maxConnections: number;
  /** `superuser_reserved_connections`. */
  readonly reservedConnections: number;
  /** Client backends counted against `max_connections` now. */
  readonly total: number;
  /** Client backends per `application_name`. */
  readonly byApplication: Readonly<Record<string, number>>;
}

/** What a connection monitor must offer (a `@sluice/pool` `ConnectionMonitor` fits). */
export interface ConnectionMonitorLike {
  /** Calls `listener` with every sample; returns the unsubscribe function. */
  on(event: 'sample', listener: (sample: ConnectionSampleLike) => void): () => void;
  /** The last sample taken, when there is one. */
  readonly lastSample?: ConnectionSampleLike | undefined;
}

/** Options of {@link databaseBudget}. */
export interface DatabaseBudgetOptions {
  /** The connection monitor to follow. */
  monitor: ConnectionMonitorLike;
  /** `application_name`s whose connections are ours (not "held by others"). @default ['sluice'] */
  applicationNames?: readonly string[] | undefined;
  /** Connections to leave free beyond `superuser_reserved_connections` (migrations, psql, cron). @default 0 */
  reserve?: number | undefined;
  /** Lowest limit ever published. @default 1 */
  floor?: number | undefined;
  /** Highest limit ever published (e.g. the pool's size). @default unlimited */
  ceiling?: number | undefined;
  /**
   * Weight of a new sample when the budget grows, in (0, 1]: growth is smoothed, shrinking is
   * applied at once so the gate never admits more than the server can take. @default 0.3
   */
  smoothing?: number | undefined;
  /** Limit before the first sample (which then replaces it). @default the monitor's last sample, else `floor` */
  initial?: number | undefined;
}

/** A {@link LimitSource} that follows a database's connection budget; `close()` stops following. */
export interface DatabaseBudget extends LimitSource {
  /** The unclamped budget of the last sample: `max - reserved - reserve - heldByOthers`. */
  readonly raw: number | undefined;
  /** Connections the last sample showed held by other applications. */
  readonly heldByOthers: number | undefined;
  /** Stops following the monitor. Idempotent. */
  close(): void;
  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The number of connections the database can still give this service:
 * `max_connections - superuser_reserved_connections - reserve - (connections held by others)`,
 * refreshed from every monitor sample, growth smoothed, clamped to `[floor, ceiling]`. Connections
 * leaked idle by another application shrink the gate; once reaped, it grows back.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const monitor = monitorConnections({ pool, intervalMs: 5000, warnAt: 0.8, criticalAt: 0.95 });
 * const limit = databaseBudget({ monitor, reserve: 5, floor: 2, ceiling: pool.max });
 * app.use(admission({ limit }));
 * ```
 */
export function databaseBudget(options: DatabaseBudgetOptions): DatabaseBudget {
  checkObject('options', options);
  const { monitor } = options;
  if (typeof monitor !== 'object' || monitor === null || typeof monitor.on !== 'function') {
    throw new TypeError(`monitor should have an on('sample', listener) method, got ${show(monitor)}`);
  }
  const names = options.applicationNames ?? ['sluice'];
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) {
    throw new TypeError(`applicationNames should be an array of strings, got ${show(names)}`);
  }
  const reserve = optional(options.reserve, 0, (v) => checkInteger('reserve', v, 0));
  const floor = optional(options.floor, 1, (v) => checkInteger('floor', v, 0));
  const ceiling = optional(options.ceiling, Number.POSITIVE_INFINITY, (v) =>
    checkInteger('ceiling', v, Math.max(1, floor)),
  );
  const smoothing = optional(options.smoothing, 0.3, (v) => checkNumber('smoothing', v, 0, 1, true));
  const clamp = (n: number): number => Math.min(ceiling, Math.max(floor, n));

  let raw: number | undefined;
  let heldByOthers: number | undefined;
  let sampled = false;
  let smoothed = optional(options.initial, floor, (v) => clamp(checkInteger('initial', v, 0)));
  const limit = settableValue(Math.round(smoothed));

  const onSample = (s: ConnectionSampleLike): void => {
    let ours = 0;
    for (const name of names) ours += s.byApplication[name] ?? 0;
    heldByOthers = Math.max(0, s.total - ours);
    raw = s.maxConnections - s.reservedConnections - reserve - heldByOthers;
    const target = clamp(raw);
    // The first sample replaces the initial guess; after it, growth is smoothed.
    smoothed = !sampled || target <= smoothed ? target : smoothed + smoothing * (target - smoothed);
    sampled = true;
    limit.set(Math.round(smoothed));
  };
  // Without an `initial`, the monitor's last sample is the first (nobody listens yet).
  if (options.initial === undefined && monitor.lastSample) onSample(monitor.lastSample);
  let unsubscribe: (() => void) | undefined = monitor.on('sample', onSample);

  return {
    get current() {
      return limit.current;
    },
    get raw() {
      return raw;
    },
    get heldByOthers() {
      return heldByOthers;
    },
    onChange: limit.onChange,
    close() {
      unsubscribe?.();
      unsubscribe = undefined;
      limit.clear();
    },
    async [Symbol.asyncDispose]() {
      this.close();
    },
  };
}
