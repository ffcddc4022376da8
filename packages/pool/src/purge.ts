import { setTimeout as sleep } from 'node:timers/promises';
import { checkFunction, checkInteger, checkObject, optional, sqlName } from '@sluice/kit';
import { poolChannels } from './channels.js';
import { Repeater, type Scheduled } from './repeater.js';
import type { SluicePool } from './types.js';

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
  table?: string | undefined;
  /** The expiry column (timestamp with time zone). @default 'expire_date' */
  expireColumn?: string | undefined;
  /** Rows per batch; each batch is its own short transaction. @default 1000 */
  batchSize?: number | undefined;
  /** At most this many batches per run. @default 100 */
  maxBatches?: number | undefined;
  /** `lock_timeout` of each batch transaction, ms. @default 1000 */
  lockTimeoutMs?: number | undefined;
  /** `statement_timeout` of each batch transaction, ms. @default 30000 */
  statementTimeoutMs?: number | undefined;
  /** Pause between batches, ms, to leave room for other work. @default 0 */
  pauseMs?: number | undefined;
  /** Stops between batches when aborted; resolves with what was deleted so far. */
  signal?: AbortSignal | undefined;
  /** Called after every batch. */
  onBatch?: ((batch: PurgeBatch) => void) | undefined;
}

type ResolvedPurge = ReturnType<typeof resolvePurge>;

function resolvePurge(o: PurgeOptions) {
  checkObject('options', o);
  checkObject('pool', o.pool);
  checkFunction('pool.withTransaction', o.pool.withTransaction);
  const table = o.table ?? 'django_session';
  const qTable = sqlName('table', table, true);
  const qColumn = sqlName('expireColumn', o.expireColumn ?? 'expire_date');
  const ms = (name: 'lockTimeoutMs' | 'statementTimeoutMs' | 'pauseMs', fallback: number, min: number) =>
    optional(o[name], fallback, (v) => checkInteger(name, v, min, 3_600_000));
  return {
    pool: o.pool,
    table,
    // ctid of at most $1 expired rows, locked (SKIP LOCKED: rows another transaction holds are
    // left for the next run), then deleted by ctid: a TID scan, no long lock on the table.
    sql:
      `DELETE FROM ${qTable} WHERE ctid = ANY(ARRAY(` +
      `SELECT ctid FROM ${qTable} WHERE ${qColumn} < now() LIMIT $1 FOR UPDATE SKIP LOCKED)) ` +
      `AND ${qColumn} < now()`,
    batchSize: optional(o.batchSize, 1000, (v) => checkInteger('batchSize', v, 1, 100_000)),
    maxBatches: optional(o.maxBatches, 100, (v) => checkInteger('maxBatches', v, 1, 1_000_000)),
    lockTimeoutMs: ms('lockTimeoutMs', 1000, 1),
    statementTimeoutMs: ms('statementTimeoutMs', 30_000, 1),
    pauseMs: ms('pauseMs', 0, 0),
    onBatch: optional(o.onBatch, undefined, (v) => checkFunction<(b: PurgeBatch) => void>('onBatch', v)),
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
  return purge(resolvePurge(options), options.signal);
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
    if (o.pauseMs > 0 && batches < o.maxBatches) {
      await sleep(o.pauseMs, undefined, { signal }).catch(() => undefined); // an abort ends the pause
    }
  }
  if (poolChannels.purge.hasSubscribers) poolChannels.purge.publish({ table: o.table, deleted, batches });
  return deleted;
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

/** Events of a {@link SessionPurger}. */
export interface SessionPurgerEvents {
  /** After every run. */
  purge: PurgeRun;
  /** A run failed (without a listener: one process warning per failing streak). */
  error: unknown;
}

/** A purge running on a timer; `close()` stops a run in flight after its current batch. */
export interface SessionPurger extends Scheduled<SessionPurgerEvents> {
  /** Rows deleted by the most recent run. */
  readonly lastDeleted: number | undefined;
  /** Runs now (or joins the run in flight); resolves with the rows deleted. @throws {PoolError} `E_POOL_CLOSED` after close() */
  runNow(): Promise<number>;
}

/**
 * {@link purgeExpiredSessions} every `intervalMs` on an unref'd timer (first run after one
 * interval; `runNow()` for one at once).
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using purger = schedulePurge({ pool, intervalMs: 15 * 60_000, batchSize: 1000 });
 * purger.on('purge', ({ deleted }) => log.info({ deleted }, 'expired sessions purged'));
 * ```
 */
export function schedulePurge(options: ScheduledPurgeOptions): SessionPurger {
  const resolved = resolvePurge(options);
  const intervalMs = checkInteger('intervalMs', options.intervalMs, 10, 86_400_000);
  const repeater = new Repeater<SessionPurgerEvents, 'purge'>({
    event: 'purge',
    task: async (signal) => {
      const started = performance.now();
      const deleted = await purge(resolved, signal);
      return { deleted, ms: performance.now() - started };
    },
    intervalMs,
    firstRunMs: intervalMs,
    name: 'session purge',
    warningCode: 'SLUICE_PURGE_FAILED',
  });
  return {
    get lastDeleted() {
      return repeater.last?.deleted;
    },
    runNow: async () => (await repeater.runNow()).deleted,
    on: (event, listener) => repeater.events.on(event, listener),
    close: () => repeater.close(),
    [Symbol.asyncDispose]: () => repeater.close(),
  };
}
