import { TypedEvents } from '@sluice/kit';
import pg from 'pg';
import { poolChannels } from './channels.js';
import { PoolError } from './errors.js';
import { processBackendPids } from './registry.js';
import { Repeater } from './repeater.js';
import { clientBackendSql } from './server-budget.js';
import type { SluicePool } from './types.js';
import { checkInteger, checkObject, describe } from './validate.js';

/** The pool a reaper works through: it runs its queries there and never touches its backends. */
export type ReaperPool = Pick<SluicePool, 'query' | 'backendPids' | 'applicationName'>;

/** Options of {@link reapIdleConnections}. */
export interface ReapOptions {
  /** Where the reaper's queries run; this pool's (and every Sluice pool's in this process) backends are never reaped. */
  pool: ReaperPool;
  /**
   * Whose connections: an exact `application_name` (e.g. `'cvat:server'`) or a pattern. `''`
   * matches connections that set none (Django's default) and then requires `database`.
   */
  applicationName: string | RegExp;
  /** Only connections idle at least this long, ms. */
  idleForMs: number;
  /** Report what would be terminated, terminate nothing. @default false */
  dryRun?: boolean;
  /** At most this many terminations per run (oldest idle first). @default 10 */
  maxPerRun?: number;
  /** Also reap `idle in transaction` sessions (their transaction is rolled back). @default false */
  includeIdleInTransaction?: boolean;
  /** Only connections to this database. @default every database */
  database?: string;
  /**
   * What to do when matching connections could not be seen or signalled for lack of privilege:
   * `'throw'` a {@link ReapPrivilegeError} (after reaping what it could), or only `'report'` them
   * in `result.denied`.
   * @default 'throw'
   */
  onDenied?: 'throw' | 'report';
}

/** One connection the reaper terminated (or, in a dry run, would have). */
export interface ReapedBackend {
  readonly pid: number;
  readonly applicationName: string;
  readonly database: string;
  readonly user: string;
  readonly state: string;
  /** How long it had been in its state when reaped, ms. */
  readonly idleMs: number;
}

/** A matching connection the reaper's role may not inspect or terminate. */
export interface DeniedBackend {
  readonly pid: number;
  readonly applicationName: string;
  readonly database: string;
  readonly user: string;
  /** `not-visible`: its state is hidden (needs `pg_read_all_stats`); `not-permitted`: may not signal it. */
  readonly reason: 'not-visible' | 'not-permitted';
}

/** What one reaper run did. */
export interface ReapResult {
  readonly dryRun: boolean;
  /** Terminated connections (in a dry run: those that would have been). */
  readonly reaped: ReapedBackend[];
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
  idle_ms: number | null;
  started: string | null;
  may_signal: boolean;
  me: string;
}

const CANDIDATES_SQL = `
SELECT a.pid, a.application_name AS app, coalesce(a.datname, '') AS db, coalesce(a.usename, '') AS usr, a.state,
       (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::float8 AS idle_ms,
       a.backend_start::text AS started,
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
   AND ($3::text IS NULL OR a.application_name = $3::text)
   AND ($4::text IS NULL OR a.datname = $4::text)`;

const TERMINATE_SQL = `
SELECT a.pid, pg_terminate_backend(a.pid) AS ok
  FROM pg_stat_activity AS a
 WHERE a.pid = ANY($1::int[])
   AND a.state = ANY($2::text[])
   AND a.state_change <= clock_timestamp() - make_interval(secs => $3::float8 / 1000)`;

interface ResolvedReap {
  readonly pool: ReaperPool;
  readonly exact: string | null;
  readonly pattern: RegExp | null;
  readonly idleForMs: number;
  readonly dryRun: boolean;
  readonly maxPerRun: number;
  readonly states: string[];
  readonly database: string | null;
  readonly onDenied: 'throw' | 'report';
}

function resolveReap(o: ReapOptions, where: string): ResolvedReap {
  checkObject(where, 'options', o);
  checkObject(where, 'pool', o.pool);
  const name = o.applicationName;
  if (!(name instanceof RegExp) && typeof name !== 'string') {
    throw new TypeError(`${where}: applicationName should be a string or a RegExp, got ${describe(name)}`);
  }
  if (name === o.pool.applicationName) {
    throw new RangeError(
      `${where}: applicationName ${describe(name)} is the pool's own application name; its connections are never reaped`,
    );
  }
  const idleForMs = checkInteger(where, 'idleForMs', o.idleForMs, 0, 31 * 86_400_000);
  const maxPerRun = checkInteger(where, 'maxPerRun', o.maxPerRun ?? 10, 1, 10_000);
  for (const flag of ['dryRun', 'includeIdleInTransaction'] as const) {
    if (o[flag] !== undefined && typeof o[flag] !== 'boolean') {
      throw new TypeError(`${where}: ${flag} should be a boolean, got ${describe(o[flag])}`);
    }
  }
  if (o.database !== undefined && (typeof o.database !== 'string' || o.database === '')) {
    throw new TypeError(`${where}: database should be a non-empty string, got ${describe(o.database)}`);
  }
  if (name === '' && o.database === undefined) {
    throw new RangeError(
      `${where}: applicationName '' (connections that set no name) needs a database, or it would reach every unnamed client on the server`,
    );
  }
  const onDenied = o.onDenied ?? 'throw';
  if (onDenied !== 'throw' && onDenied !== 'report') {
    throw new TypeError(`${where}: onDenied should be one of throw, report, got ${describe(onDenied)}`);
  }
  return {
    pool: o.pool,
    exact: typeof name === 'string' ? name : null,
    pattern: name instanceof RegExp ? new RegExp(name.source, name.flags.replace(/[gy]/g, '')) : null,
    idleForMs,
    dryRun: o.dryRun ?? false,
    maxPerRun,
    states: o.includeIdleInTransaction
      ? ['idle', 'idle in transaction', 'idle in transaction (aborted)']
      : ['idle'],
    database: o.database ?? null,
    onDenied,
  };
}

/**
 * Backends this process terminated (`pid@backend_start`, unique per backend) and when.
 * `pg_terminate_backend` only signals: a busy server may list the backend, still `idle`, for a
 * moment after, and a second run must neither signal nor report it again.
 */
const recentlyTerminated = new Map<string, number>();
const REMEMBER_MS = 10 * 60_000;
const REMEMBER_MAX = 10_000;

function rememberTermination(key: string, at: number): void {
  recentlyTerminated.set(key, at);
  if (recentlyTerminated.size > REMEMBER_MAX) {
    const oldest = recentlyTerminated.keys().next();
    if (!oldest.done) recentlyTerminated.delete(oldest.value);
  }
}

function forgetOldTerminations(): void {
  const cutoff = Date.now() - REMEMBER_MS;
  for (const [key, at] of recentlyTerminated) {
    if (at >= cutoff) break; // insertion order is time order
    recentlyTerminated.delete(key);
  }
}

/**
 * Terminates connections of another application (exact `application_name` or a pattern) that
 * have sat idle at least `idleForMs`: never this process's pool connections, never other
 * applications', never `idle in transaction` unless asked. Returns (and publishes on
 * `sluice:pool:reap`) what it did.
 *
 * @throws {ReapPrivilegeError} `E_REAP_PRIVILEGE` when matching connections could not be seen or signalled (unless `onDenied: 'report'`)
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * const { reaped } = await reapIdleConnections({ pool, applicationName: 'cvat:server', idleForMs: 60_000 });
 * for (const b of reaped) log.warn(b, 'terminated a leaked idle connection');
 * ```
 */
export async function reapIdleConnections(options: ReapOptions): Promise<ReapResult> {
  return reap(resolveReap(options, 'reapIdleConnections'));
}

async function reap(o: ResolvedReap): Promise<ReapResult> {
  const ownPids = [...new Set([...o.pool.backendPids(), ...processBackendPids()])];
  const { rows } = await o.pool.query<CandidateRow & pg.QueryResultRow>(CANDIDATES_SQL, [
    ownPids,
    o.pool.applicationName,
    o.exact,
    o.database,
  ]);
  const role = rows[0]?.me ?? 'the current role';
  const eligible: ReapedBackend[] = [];
  const identity = new Map<number, string>();
  forgetOldTerminations();
  const denied: DeniedBackend[] = [];
  for (const row of rows) {
    if (o.pattern && !o.pattern.test(row.app)) continue;
    if (recentlyTerminated.has(`${row.pid}@${row.started}`)) continue; // signalled, still exiting
    const who = { pid: row.pid, applicationName: row.app, database: row.db, user: row.usr };
    if (row.state === null) {
      denied.push({ ...who, reason: 'not-visible' });
      continue;
    }
    if (!o.states.includes(row.state) || row.idle_ms === null || row.idle_ms < o.idleForMs) continue;
    if (!row.may_signal) {
      denied.push({ ...who, reason: 'not-permitted' });
      continue;
    }
    eligible.push({ ...who, state: row.state, idleMs: Math.round(row.idle_ms) });
    identity.set(row.pid, `${row.pid}@${row.started}`);
  }
  eligible.sort((a, b) => b.idleMs - a.idleMs);
  const chosen = eligible.slice(0, o.maxPerRun);
  const deferred = eligible.length - chosen.length;
  let reaped = chosen;
  if (!o.dryRun && chosen.length > 0) {
    let terminated: Set<number>;
    try {
      const result = await o.pool.query<{ pid: number; ok: boolean }>(TERMINATE_SQL, [
        chosen.map((b) => b.pid),
        o.states,
        o.idleForMs,
      ]);
      terminated = new Set(result.rows.filter((r) => r.ok).map((r) => r.pid));
    } catch (error) {
      if (error instanceof pg.DatabaseError && error.code === '42501') {
        const partial = { dryRun: o.dryRun, reaped: [], deferred, denied };
        throw new ReapPrivilegeError(
          `${role} may not terminate these connections: ${error.message}`,
          partial,
          error,
        );
      }
      throw error;
    }
    reaped = chosen.filter((b) => terminated.has(b.pid));
    const at = Date.now();
    for (const b of reaped) rememberTermination(identity.get(b.pid) ?? String(b.pid), at);
  }
  const result: ReapResult = { dryRun: o.dryRun, reaped, deferred, denied };
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
}

/** A reaper running on a timer. */
export interface Reaper {
  /** The result of the most recent run. */
  readonly lastResult: ReapResult | undefined;
  /** Runs now (or joins the run in flight). */
  runNow(): Promise<ReapResult>;
  /** Called after every run (also with the partial result of a run denied by privilege). */
  onReap(listener: (result: ReapResult) => void): () => void;
  /** Called when a run fails. */
  onError(listener: (error: unknown) => void): () => void;
  /** Stops the timer and waits for a run in flight. Idempotent. Does not close the pool. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * {@link reapIdleConnections} every `intervalMs` on an unref'd timer (first run after one
 * interval; `runNow()` for one at once).
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * await using reaper = scheduleReaper({ pool, applicationName: 'cvat:server', idleForMs: 60_000, intervalMs: 30_000 });
 * reaper.onReap((r) => metrics.reaped.inc(r.reaped.length));
 * ```
 */
export function scheduleReaper(options: ScheduledReapOptions): Reaper {
  const resolved = resolveReap(options, 'scheduleReaper');
  const intervalMs = checkInteger('scheduleReaper', 'intervalMs', options.intervalMs, 10, 86_400_000);
  const events = new TypedEvents<{ reap: ReapResult; error: unknown }>();
  let last: ReapResult | undefined;
  let closing: Promise<void> | undefined;
  const repeater = new Repeater(
    () => reap(resolved),
    intervalMs,
    (result) => {
      last = result;
      events.emit('reap', result);
    },
    (error) => {
      if (error instanceof ReapPrivilegeError) {
        last = error.result;
        events.emit('reap', error.result);
      }
      if (events.has('error')) events.emit('error', error);
      else
        process.emitWarning(error instanceof Error ? error.message : String(error), {
          code: 'SLUICE_REAPER_FAILED',
        });
    },
  );
  repeater.start(intervalMs);
  return {
    get lastResult() {
      return last;
    },
    async runNow() {
      if (closing) throw new PoolError('E_POOL_CLOSED', 'the reaper is closed');
      return repeater.runNow();
    },
    onReap: (listener) => events.on('reap', listener),
    onError: (listener) => events.on('error', listener),
    close() {
      closing ??= repeater.close();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
}
