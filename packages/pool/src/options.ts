import { checkFunction, checkInteger, checkObject, describe } from './validate.js';

/** Options of {@link createPool} and {@link sharedPool}. */
export interface PoolOptions {
  /** `postgres://user:password@host:port/database?...`, as `pg` understands it. */
  connectionString: string;
  /** Hard ceiling of server connections this pool opens. Required. */
  max: number;
  /**
   * How many acquires may wait for a connection; one more fails at once with `E_POOL_EXHAUSTED`.
   * @default 1000
   */
  maxWaiting?: number;
  /**
   * How long an acquire may take in all (queue plus connect) before it fails with `E_POOL_TIMEOUT`.
   * @default 10000
   */
  acquireTimeoutMs?: number;
  /**
   * `application_name` of every connection, what `pg_stat_activity` shows (at most 63 bytes).
   * @default 'sluice'
   */
  applicationName?: string;
  /** Server-side `statement_timeout` of every connection, ms; 0 turns it off. Unset: the server's. */
  statementTimeoutMs?: number;
  /** Server-side `idle_in_transaction_session_timeout`, ms; 0 turns it off. Unset: the server's. */
  idleInTransactionTimeoutMs?: number;
  /**
   * An idle connection is closed after this long; 0 keeps idle connections open.
   * @default 10000
   */
  idleTimeoutMs?: number;
  /**
   * A connection is closed (when next idle) once it is this old; 0 turns it off.
   * @default 1800
   */
  maxLifetimeSeconds?: number;
  /**
   * A client checked out longer than this fires `leak` (once per checkout); 0 turns it off.
   * @default 60000
   */
  leakDetectionMs?: number;
  /**
   * How long opening one server connection may take (`pg`'s `connectionTimeoutMillis`, set on
   * each client); at most `acquireTimeoutMs`.
   * @default acquireTimeoutMs
   */
  connectTimeoutMs?: number;
  /**
   * `close()` waits this long for checked-out clients, then closes their connections anyway.
   * @default 5000
   */
  closeTimeoutMs?: number;
  /** Clock for leak timing and event timestamps (epoch ms). @default Date.now */
  now?: () => number;
}

/** {@link PoolOptions} with every default filled in. */
export interface ResolvedPoolOptions {
  readonly connectionString: string;
  readonly max: number;
  readonly maxWaiting: number;
  readonly acquireTimeoutMs: number;
  readonly applicationName: string;
  readonly statementTimeoutMs: number | undefined;
  readonly idleInTransactionTimeoutMs: number | undefined;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeSeconds: number;
  readonly leakDetectionMs: number;
  readonly connectTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly now: () => number;
}

const WHERE = 'createPool';
const DAY_MS = 86_400_000;

/** Validates options and resolves defaults; throws TypeError/RangeError naming the option. */
export function resolvePoolOptions(options: PoolOptions, where = WHERE): ResolvedPoolOptions {
  checkObject(where, 'options', options);
  const { connectionString } = options;
  if (typeof connectionString !== 'string' || connectionString.trim() === '') {
    throw new TypeError(
      `${where}: connectionString should be a non-empty string, got ${describe(connectionString)}`,
    );
  }
  if (options.max === undefined) {
    throw new TypeError(`${where}: max is required (the hard ceiling of server connections), got undefined`);
  }
  const max = checkInteger(where, 'max', options.max, 1, 10_000);
  const maxWaiting = checkInteger(where, 'maxWaiting', options.maxWaiting ?? 1000, 0, 1_000_000);
  const acquireTimeoutMs = checkInteger(
    where,
    'acquireTimeoutMs',
    options.acquireTimeoutMs ?? 10_000,
    1,
    DAY_MS,
  );
  const applicationName = options.applicationName ?? 'sluice';
  if (typeof applicationName !== 'string' || applicationName === '') {
    throw new TypeError(
      `${where}: applicationName should be a non-empty string, got ${describe(applicationName)}`,
    );
  }
  if (Buffer.byteLength(applicationName) > 63 || !/^[\x20-\x7e]+$/.test(applicationName)) {
    throw new RangeError(
      `${where}: applicationName should be at most 63 printable ASCII characters (PostgreSQL truncates longer names), got ${describe(applicationName)}`,
    );
  }
  const statementTimeoutMs =
    options.statementTimeoutMs === undefined
      ? undefined
      : checkInteger(where, 'statementTimeoutMs', options.statementTimeoutMs, 0, 2_147_483_647);
  const idleInTransactionTimeoutMs =
    options.idleInTransactionTimeoutMs === undefined
      ? undefined
      : checkInteger(
          where,
          'idleInTransactionTimeoutMs',
          options.idleInTransactionTimeoutMs,
          0,
          2_147_483_647,
        );
  const idleTimeoutMs = checkInteger(where, 'idleTimeoutMs', options.idleTimeoutMs ?? 10_000, 0, DAY_MS);
  const maxLifetimeSeconds = checkInteger(
    where,
    'maxLifetimeSeconds',
    options.maxLifetimeSeconds ?? 1800,
    0,
    DAY_MS / 1000,
  );
  const leakDetectionMs = checkInteger(
    where,
    'leakDetectionMs',
    options.leakDetectionMs ?? 60_000,
    0,
    DAY_MS,
  );
  // An acquire that finds a free slot waits only for the connect: keeping connectTimeoutMs within
  // acquireTimeoutMs keeps every acquire within acquireTimeoutMs.
  const connectTimeoutMs = checkInteger(
    where,
    'connectTimeoutMs',
    options.connectTimeoutMs ?? acquireTimeoutMs,
    1,
    acquireTimeoutMs,
  );
  const closeTimeoutMs = checkInteger(where, 'closeTimeoutMs', options.closeTimeoutMs ?? 5000, 0, DAY_MS);
  const now = options.now ?? Date.now;
  checkFunction(where, 'now', now);
  return {
    connectionString,
    max,
    maxWaiting,
    acquireTimeoutMs,
    applicationName,
    statementTimeoutMs,
    idleInTransactionTimeoutMs,
    idleTimeoutMs,
    maxLifetimeSeconds,
    leakDetectionMs,
    connectTimeoutMs,
    closeTimeoutMs,
    now,
  };
}
