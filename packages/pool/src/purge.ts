import { TypedEvents } from '@sluice/kit';
import { poolChannels } from './channels.js';
import { PoolError } from './errors.js';
import { Repeater } from './repeater.js';
import { quoteColumn, quoteTable } from './sql-identifier.js';
import type { SluicePool } from './types.js';
import { checkFunction, checkInteger, checkObject } from './validate.js';

/** The pool a purge works through. */
export type PurgePool = Pick<SluicePool, 'withTransaction'>;

/** One purge batch, as reported to `onBatch`. */
export interface PurgeBatch {
  /** 1-based batch number within the run. */
  readonly batch: number;
  /** Rows this batch deleted (at most `batchSize`). */
  readonly deleted: number;
  /** How long its transaction took, ms. */
  readonly ms: number;
}

/** Options of {@link purgeExpiredSessions}. */
export interface PurgeOptions {
  /** Where the deletes run. */
  pool: PurgePool;
  /** The session table, optionally schema-qualified. @default 'django_session' */
  table?: string;
  /** The expiry column (timestamp with time zone). @default 'expire_date' */
  expireColumn?: string;
  /** Rows per batch; each batch is its own short transaction. @default 1000 */
  batchSize?: number;
  /** At most this many batches per run. @default 100 */
  maxBatches?: number;
  /** `lock_timeout` of each batch transaction, ms. @default 1000 */
  lockTimeoutMs?: number;
  /** `statement_timeout` of each batch transaction, ms. @default 30000 */
  statementTimeoutMs?: number;
  /** Pause between batches, ms, to leave room for other work. @default 0 */
  pauseMs?: number;
  /** Stops between batches when aborted; resolves with what was deleted so far. */
  signal?: AbortSignal;
  /** Called after every batch. */
  onBatch?: (batch: PurgeBatch) => void;
}

interface ResolvedPurge {
  readonly pool: PurgePool;
  readonly table: string;
  readonly sql: string;
  readonly batchSize: number;
  readonly maxBatches: number;
  readonly lockTimeoutMs: number;
  readonly statementTimeoutMs: number;
  readonly pauseMs: number;
  readonly onBatch: ((batch: PurgeBatch) => void) | undefined;
}

function resolvePurge(o: PurgeOptions, where: string): ResolvedPurge {
  checkObject(where, 'options', o);
  checkObject(where, 'pool', o.pool);
  checkFunction(where, 'pool.withTransaction', o.pool.withTransaction);
  const table = o.table ?? 'django_session';
  const qTable = quoteTable(where, 'table', table);
  const qColumn = quoteColumn(where, 'expireColumn', o.expireColumn ?? 'expire_date');
  if (o.onBatch !== undefined) checkFunction(where, 'onBatch', o.onBatch);
  return {
    pool: o.pool,
    table,
    // ctid of at most $1 expired rows, locked (SKIP LOCKED: rows another transaction holds are
    // left for the next run), then deleted by ctid: a TID scan, no long lock on the table.
    sql:
      `DELETE FROM ${qTable} WHERE ctid = ANY(ARRAY(` +
      `SELECT ctid FROM ${qTable} WHERE ${qColumn} < now() LIMIT $1 FOR UPDATE SKIP LOCKED)) ` +
      `AND ${qColumn} < now()`,
    batchSize: checkInteger(where, 'batchSize', o.batchSize ?? 1000, 1, 100_000),
    maxBatches: checkInteger(where, 'maxBatches', o.maxBatches ?? 100, 1, 1_000_000),
    lockTimeoutMs: checkInteger(where, 'lockTimeoutMs', o.lockTimeoutMs ?? 1000, 1, 3_600_000),
    statementTimeoutMs: checkInteger(
      where,
      'statementTimeoutMs',
      o.statementTimeoutMs ?? 30_000,
      1,
      3_600_000,
    ),
    pauseMs: checkInteger(where, 'pauseMs', o.pauseMs ?? 0, 0, 3_600_000),
    onBatch: o.onBatch,
  };
}

/**
 * Deletes expired rows of Django's session table in batches of `batchSize`, each batch its own
 * short transaction (with `lock_timeout` and `statement_timeout`), until a batch comes back
 * short or `maxBatches` ran. Returns how many rows it deleted.
 *
 * @throws {TypeError | RangeError} on invalid options (including a table or column name that is not a plain identifier)
 * @example
 * ```ts
 * const deleted = await purgeExpiredSessions({ pool, batchSize: 500, maxBatches: 20 });
 * ```
 */
export async function purgeExpiredSessions(options: PurgeOptions): Promise<number> {
  return purge(resolvePurge(options, 'purgeExpiredSessions'), options.signal);
}

async function purge(o: ResolvedPurge, signal: AbortSignal | undefined): Promise<number> {
  let deleted = 0;
  let batches = 0;
  while (batches < o.maxBatches && !signal?.aborted) {
    const started = performance.now();
    const count = await o.pool.withTransaction(async (client) => {
      await client.query(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
        [`${o.lockTimeoutMs}ms`, `${o.statementTimeoutMs}ms`],
      );
      const result = await client.query(o.sql, [o.batchSize]);
      return result.rowCount ?? 0;
    });
    batches += 1;
    deleted += count;
    o.onBatch?.({ batch: batches, deleted: count, ms: performance.now() - started });
    if (count < o.batchSize) break;
    if (o.pauseMs > 0 && batches < o.maxBatches) await pause(o.pauseMs, signal);
  }
  if (poolChannels.purge.hasSubscribers) poolChannels.purge.publish({ table: o.table, deleted, batches });
  return deleted;
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Options of {@link schedulePurge}: a purge run every `intervalMs`. */
export interface ScheduledPurgeOptions extends Omit<PurgeOptions, 'signal'> {
  /** Time between the end of one run and the start of the next, ms. */
  intervalMs: number;
}

/** What one scheduled purge run did. */
export interface PurgeRun {
  readonly deleted: number;
  readonly ms: number;
}

/** A purge running on a timer. */
export interface SessionPurger {
  /** Rows deleted by the most recent run. */
  readonly lastDeleted: number | undefined;
  /** Runs now (or joins the run in flight); resolves with the rows deleted. */
  runNow(): Promise<number>;
  /** Called after every run. */
  onPurge(listener: (run: PurgeRun) => void): () => void;
  /** Called when a run fails. */
  onError(listener: (error: unknown) => void): () => void;
  /** Stops the timer, stops a run in flight after its current batch, and waits for it. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * {@link purgeExpiredSessions} every `intervalMs` on an unref'd timer (first run after one
 * interval; `runNow()` for one at once).
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using purger = schedulePurge({ pool, intervalMs: 15 * 60_000, batchSize: 1000 });
 * purger.onPurge(({ deleted }) => log.info({ deleted }, 'expired sessions purged'));
 * ```
 */
export function schedulePurge(options: ScheduledPurgeOptions): SessionPurger {
  const resolved = resolvePurge(options, 'schedulePurge');
  const intervalMs = checkInteger('schedulePurge', 'intervalMs', options.intervalMs, 10, 86_400_000);
  const events = new TypedEvents<{ purge: PurgeRun; error: unknown }>();
  const stop = new AbortController();
  let last: number | undefined;
  let closing: Promise<void> | undefined;
  let started = 0;
  const repeater = new Repeater(
    () => {
      started = performance.now();
      return purge(resolved, stop.signal);
    },
    intervalMs,
    (deleted) => {
      last = deleted;
      events.emit('purge', { deleted, ms: performance.now() - started });
    },
    (error) => {
      if (events.has('error')) events.emit('error', error);
      else
        process.emitWarning(error instanceof Error ? error.message : String(error), {
          code: 'SLUICE_PURGE_FAILED',
        });
    },
  );
  repeater.start(intervalMs);
  return {
    get lastDeleted() {
      return last;
    },
    async runNow() {
      if (closing) throw new PoolError('E_POOL_CLOSED', 'the session purger is closed');
      return repeater.runNow();
    },
    onPurge: (listener) => events.on('purge', listener),
    onError: (listener) => events.on('error', listener),
    close() {
      if (!closing) {
        stop.abort();
        closing = repeater.close();
      }
      return closing;
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
}
