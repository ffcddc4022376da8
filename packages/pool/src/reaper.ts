import {
  checkBoolean,
  checkChoice,
  checkFunction,
  checkInteger,
  checkObject,
  checkString,
  optional,
  show,
} from '@sluice/kit';
import pg from 'pg';
import { type ApplicationPattern, applicationMatcher, likeApplication } from './application-pattern.js';
import { poolChannels } from './channels.js';
import { PoolError } from './errors.js';
import { Repeater, type Scheduled } from './repeater.js';
import { clientBackendSql } from './server-budget.js';
import type { SluicePool } from './types.js';

/** The pool a reaper works through: it runs its queries there and never touches its backends. */
export type ReaperPool = Pick<SluicePool, 'query' | 'backendPids' | 'applicationName'>;

/** Options of {@link reapIdleConnections}. */
export interface ReapOptions {
  /** Where the reaper's queries run; this pool's backends (and its application name) are never reaped. */
  pool: ReaperPool;
  /**
   * Whose connections: an exact `application_name` (`'cvat:server'`), a prefix ending in `*`
   * (`'cvat:worker:*'`) or a RegExp. `''` (connections that set none, Django's default) and `'*'`
   * require `database`.
   */
  applicationName: ApplicationPattern;
  /** Only connections idle at least this long (since `pg_stat_activity.state_change`), ms. */
  idleForMs: number;
  /** Only connections to this database. @default every database */
  database?: string | undefined;
  /**
   * Only connections whose last statement (`pg_stat_activity.query`) matches: a SQL `LIKE`
   * pattern (`'%FROM "django_session"%'`) or a RegExp. Seeing other roles' statements needs
   * `pg_read_all_stats`. @default any statement
   */
  lastQuery?: string | RegExp | undefined;
  /**
   * How many idle connections of the application to leave alone, asked before every run: the most
   * recently active ones are kept, whatever their idle time. The gateway passes its requests in
   * flight, so a connection serving one between two statements is never the one reaped. @default () => 0
   */
  keep?: (() => number) | undefined;
  /** Report what would be terminated, terminate nothing. @default false */
  dryRun?: boolean | undefined;
  /** At most this many terminations per run (oldest idle first). @default 10 */
  maxPerRun?: number | undefined;
  /**
   * What to do when matching connections could not be seen or signalled for lack of privilege:
   * `'throw'` a {@link ReapPrivilegeError} (after reaping what it could), or only `'report'` them
   * in `result.denied`. @default 'throw'
   */
  onDenied?: 'throw' | 'report' | undefined;
}

/** One connection the reaper terminated (or, in a dry run, would have). */
export interface ReapedBackend {
  readonly pid: number;
  readonly applicationName: string;
  readonly database: string;
  readonly user: string;
  /** Always `'idle'`: nothing else is ever reaped. */
  readonly state: string;
  /** How long it had been idle when reaped, ms. */
  readonly idleMs: number;
}

/** A matching connection the reaper's role may not inspect or terminate. */
export interface DeniedBackend extends Pick<ReapedBackend, 'pid' | 'applicationName' | 'database' | 'user'> {
  /** `not-visible`: its state is hidden (needs `pg_read_all_stats`); `not-permitted`: may not signal it. */
  readonly reason: 'not-visible' | 'not-permitted';
}

/** What one reaper run did. */
export interface ReapResult {
  readonly dryRun: boolean;
  /** Terminated connections (in a dry run: those that would have been). */
  readonly reaped: ReapedBackend[];
  /** Idle connections left alone because of `keep`. */
  readonly kept: number;
  /** Eligible connections left for a later run because of `maxPerRun`. */
  readonly deferred: number;
  /** Matching connections this role could not see or signal. */
  readonly denied: DeniedBackend[];
}

/**
 * Thrown when matching connections could not be inspected or terminated for lack of privilege
 * (`pg_signal_backend`, `pg_read_all_stats`, or superuser for superuser-owned sessions). `result`
 * says what the run did manage.
 */
export class ReapPrivilegeError extends PoolError {
  override readonly name = 'ReapPrivilegeError';
  readonly result: ReapResult;

  constructor(message: string, result: ReapResult, cause?: unknown) {
    super('E_REAP_PRIVILEGE', message, cause === undefined ? undefined : { cause });
    this.result = result;
  }
}

/** True when `e` is a {@link ReapPrivilegeError}. */
export function isReapPrivilegeError(e: unknown): e is ReapPrivilegeError {
  return e instanceof ReapPrivilegeError;
}

interface CandidateRow {
  pid: number;
  app: string;
  db: string;
  usr: string;
  state: string | null;
  since: string | null;
  started: string | null;
  idle_ms: number | null;
  query: string | null;
  query_matches: boolean | null;
  may_signal: boolean;
  me: string;
}

const CANDIDATES_SQL = `
SELECT a.pid, a.application_name AS app, coalesce(a.datname, '') AS db, coalesce(a.usename, '') AS usr, a.state,
       a.state_change::text AS since, a.backend_start::text AS started,
       (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::float8 AS idle_ms,
       a.query, ($5::text IS NULL OR a.query LIKE $5::text) AS query_matches,
       CASE WHEN me.rolsuper THEN true
            WHEN coalesce(r.rolsuper, false) THEN false
            ELSE coalesce(pg_has_role(current_user, a.usesysid, 'USAGE'), false)
                 OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
       END AS may_signal,
       current_user::text AS me
  FROM pg_stat_activity AS a
  LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
 CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS me
 WHERE a.pid <> pg_backend_pid()
   AND ${clientBackendSql('a')}
   AND NOT (a.pid = ANY($1::int[]))
   AND a.application_name IS DISTINCT FROM $2::text
   AND ($3::text IS NULL OR a.application_name LIKE $3::text)
   AND ($4::text IS NULL OR a.datname = $4::text)`;

// Terminates only a backend still idle since the very moment the candidate query saw: one that ran
// anything in between (a request picked it up) has a newer state_change and is left alone.
const TERMINATE_SQL = `
SELECT a.pid, pg_terminate_backend(a.pid) AS ok
  FROM pg_stat_activity AS a
  JOIN unnest($1::int[], $2::text[]) AS seen(pid, since) ON seen.pid = a.pid
 WHERE a.state = 'idle' AND a.state_change = seen.since::timestamptz`;

type ResolvedReap = ReturnType<typeof resolveReap>;
const keepNone = (): number => 0;
const backendOf = (r: CandidateRow) => ({ pid: r.pid, applicationName: r.app, database: r.db, user: r.usr });

function resolveReap(o: ReapOptions) {
  checkObject('options', o);
  checkObject('pool', o.pool);
  const name = o.applicationName;
  const matches = applicationMatcher(name);
  if (name === o.pool.applicationName) {
    throw new RangeError(
      `applicationName should not be the pool's own application name (its connections are never reaped), got ${show(name)}`,
    );
  }
  const database = optional(o.database, null, (v) => checkString('database', v));
  if ((name === '' || name === '*') && database === null) {
    throw new RangeError(
      `applicationName ${show(name)} needs a database, or it would reach every such client on the server`,
    );
  }
  const lastQuery = o.lastQuery;
  if (lastQuery !== undefined && !(lastQuery instanceof RegExp)) checkString('lastQuery', lastQuery);
  return {
    pool: o.pool,
    like: typeof name === 'string' ? likeApplication(name) : null,
    matches,
    idleForMs: checkInteger('idleForMs', o.idleForMs, 0, 31 * 86_400_000),
    database,
    lastQueryLike: typeof lastQuery === 'string' ? lastQuery : null,
    lastQuery:
      lastQuery instanceof RegExp
        ? new RegExp(lastQuery.source, lastQuery.flags.replace(/[gy]/g, ''))
        : undefined,
    keep: optional(o.keep, keepNone, (v) => checkFunction<() => number>('keep', v)),
    dryRun: optional(o.dryRun, false, (v) => checkBoolean('dryRun', v)),
    maxPerRun: optional(o.maxPerRun, 10, (v) => checkInteger('maxPerRun', v, 1, 10_000)),
    onDenied: optional(o.onDenied, 'throw' as const, (v) =>
      checkChoice('onDenied', v, ['throw', 'report'] as const),
    ),
  };
}

/**
 * Terminates leaked idle connections of another application: only `state = 'idle'` (never active,
 * never idle in transaction), idle at least `idleForMs`, beyond the `keep()` most recently active
 * idle ones, optionally only those whose last statement matches `lastQuery`; never the pool's own
 * connections. Each termination re-checks, in the same statement, that the backend is still idle
 * since the moment it was seen. Returns (and publishes on `sluice:pool:reap`) what it did.
 *
 * @throws {ReapPrivilegeError} `E_REAP_PRIVILEGE` when matching connections could not be seen or signalled (unless `onDenied: 'report'`)
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * const { reaped } = await reapIdleConnections({
 *   pool, applicationName: 'cvat:server', database: 'cvat', idleForMs: 60_000,
 *   lastQuery: '%FROM "django_session"%', keep: () => requestsInFlight,
 * });
 * ```
 */
export async function reapIdleConnections(options: ReapOptions): Promise<ReapResult> {
  return reap(resolveReap(options), undefined);
}

/** Backends a scheduled reaper signalled (`pid@backend_start` -> when), still listed while they exit. */
interface Signalled {
  readonly at: Map<string, number>;
  readonly now: () => number;
}

const REMEMBER_MS = 10 * 60_000;

async function reap(o: ResolvedReap, signalled: Signalled | undefined): Promise<ReapResult> {
  const { rows } = await o.pool.query<CandidateRow & pg.QueryResultRow>(CANDIDATES_SQL, [
    o.pool.backendPids(),
    o.pool.applicationName,
    o.like,
    o.database,
    o.lastQueryLike,
  ]);
  const keep = checkInteger('keep()', o.keep(), 0);
  const role = rows[0]?.me ?? 'the current role';
  const identity = (row: CandidateRow): string => `${row.pid}@${row.started}`;
  const denied: DeniedBackend[] = [];
  const deny = (row: CandidateRow, reason: DeniedBackend['reason']): void => {
    denied.push({ ...backendOf(row), reason });
  };
  const idle: CandidateRow[] = [];
  for (const row of rows) {
    if (!o.matches(row.app)) continue;
    if (row.state === null) deny(row, 'not-visible');
    else if (row.state === 'idle' && row.idle_ms !== null) idle.push(row);
  }
  idle.sort((a, b) => (a.idle_ms ?? 0) - (b.idle_ms ?? 0)); // most recently active first
  const eligible: CandidateRow[] = [];
  for (const row of idle.slice(keep)) {
    if ((row.idle_ms ?? 0) < o.idleForMs || !row.query_matches) continue;
    if (o.lastQuery && !o.lastQuery.test(row.query ?? '')) continue;
    if (signalled?.at.has(identity(row))) continue; // signalled by an earlier run, still exiting
    if (row.may_signal) eligible.push(row);
    else deny(row, 'not-permitted');
  }
  const chosen = eligible.reverse().slice(0, o.maxPerRun); // oldest idle first
  const deferred = eligible.length - chosen.length;
  const kept = Math.min(keep, idle.length);
  let terminated = new Set(chosen.map((row) => row.pid));
  if (!o.dryRun && chosen.length > 0) {
    try {
      const result = await o.pool.query<{ pid: number; ok: boolean }>(TERMINATE_SQL, [
        chosen.map((row) => row.pid),
        chosen.map((row) => row.since),
      ]);
      terminated = new Set(result.rows.filter((r) => r.ok).map((r) => r.pid));
    } catch (error) {
      if (error instanceof pg.DatabaseError && error.code === '42501') {
        const partial = { dryRun: o.dryRun, reaped: [], kept, deferred, denied };
        throw new ReapPrivilegeError(
          `${role} may not terminate these connections: ${error.message}`,
          partial,
          error,
        );
      }
      throw error;
    }
  }
  const reaped = chosen
    .filter((row) => terminated.has(row.pid))
    .map((row) => ({ ...backendOf(row), state: 'idle', idleMs: Math.round(row.idle_ms ?? 0) }));
  if (signalled && !o.dryRun) {
    const now = signalled.now();
    for (const [key, at] of signalled.at) if (at < now - REMEMBER_MS) signalled.at.delete(key);
    for (const row of chosen) if (terminated.has(row.pid)) signalled.at.set(identity(row), now);
  }
  const result: ReapResult = { dryRun: o.dryRun, reaped, kept, deferred, denied };
  if (poolChannels.reap.hasSubscribers) poolChannels.reap.publish(result);
  if (denied.length > 0 && o.onDenied === 'throw') {
    throw new ReapPrivilegeError(deniedMessage(role, denied), result);
  }
  return result;
}

function deniedMessage(role: string, denied: readonly DeniedBackend[]): string {
  const hidden = denied.filter((d) => d.reason === 'not-visible').length;
  const refused = denied.length - hidden;
  const parts: string[] = [];
  if (hidden > 0) {
    parts.push(
      `cannot see the state of ${hidden} matching connection(s) of other roles (GRANT pg_read_all_stats TO ${role})`,
    );
  }
  if (refused > 0) {
    parts.push(
      `may not terminate ${refused} idle matching connection(s) (GRANT pg_signal_backend TO ${role}; ` +
        'superuser-owned sessions need a superuser)',
    );
  }
  return `idle-connection reaper: role ${role} ${parts.join(' and ')}`;
}

/** Options of {@link scheduleReaper}: a reaper run every `intervalMs`. */
export interface ScheduledReapOptions extends ReapOptions {
  /** Time between the end of one run and the start of the next, ms. */
  intervalMs: number;
  /** Clock (epoch ms) for how long terminated backends are remembered while they exit. @default Date.now */
  now?: (() => number) | undefined;
}

/** Events of a {@link Reaper}. */
export interface ReaperEvents {
  /** After every run (also with the partial result of a run denied by privilege). */
  reap: ReapResult;
  /** A run failed (without a listener: one process warning per failing streak). */
  error: unknown;
}

/** A reaper running on a timer. */
export interface Reaper extends Scheduled<ReaperEvents> {
  /** The result of the most recent run. */
  readonly lastResult: ReapResult | undefined;
  /** Runs now (or joins the run in flight). @throws {PoolError} `E_POOL_CLOSED` after close() */
  runNow(): Promise<ReapResult>;
}

/**
 * {@link reapIdleConnections} every `intervalMs` on an unref'd timer (first run after one
 * interval; `runNow()` for one at once). It remembers the backends it signalled for a while, so a
 * backend still exiting is neither signalled nor reported twice.
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using reaper = scheduleReaper({ pool, applicationName: 'cvat:server', idleForMs: 60_000, intervalMs: 30_000 });
 * reaper.on('reap', (r) => metrics.reaped.inc(r.reaped.length));
 * ```
 */
export function scheduleReaper(options: ScheduledReapOptions): Reaper {
  const resolved = resolveReap(options);
  const intervalMs = checkInteger('intervalMs', options.intervalMs, 10, 86_400_000);
  const signalled: Signalled = {
    at: new Map(),
    now: optional(options.now, Date.now, (v) => checkFunction<() => number>('now', v)),
  };
  const repeater: Repeater<ReaperEvents, 'reap'> = new Repeater({
    event: 'reap',
    task: () =>
      reap(resolved, signalled).catch((error: unknown) => {
        if (error instanceof ReapPrivilegeError) repeater.report(error.result);
        throw error;
      }),
    intervalMs,
    firstRunMs: intervalMs,
    name: 'idle-connection reaper',
    warningCode: 'SLUICE_REAPER_FAILED',
  });
  return {
    get lastResult() {
      return repeater.last;
    },
    runNow: () => repeater.runNow(),
    on: (event, listener) => repeater.events.on(event, listener),
    close: () => repeater.close(),
    [Symbol.asyncDispose]: () => repeater.close(),
  };
}
