/**
 * How the client authenticates, as a `cvat_sdk` script would:
 * - `token`: `Authorization: Token <key>` (DRF / CVAT API key),
 * - `bearer`: `Authorization: Bearer <token>` (CVAT personal access token),
 * - `session`: the `sessionid` cookie (plus `csrftoken` for unsafe methods, and CVAT's
 *   `sessionfresh` marker when `sessionFresh`, as a cookie jar keeps it),
 * - `login`: `POST /api/auth/login` once, then, with `use: 'token'` (the default, `cvat_sdk`
 *   before 2.41), the returned `key` as a token (the session cookie when there is no key); with
 *   `use: 'session'` (`cvat_sdk` 2.41 and later), the cookies it set: `sessionid`, `csrftoken`
 *   (sent as `X-CSRFToken` on POST) and `sessionfresh`.
 */
export type BulkExportCredential =
  | { kind: 'token'; token: string }
  | { kind: 'bearer'; token: string }
  | { kind: 'session'; sessionId: string; csrfToken?: string; sessionFresh?: boolean }
  | { kind: 'login'; username: string; password: string; use?: 'token' | 'session' };

/** Options of {@link runBulkExport}. Every count and wait is bounded. */
export interface BulkExportOptions {
  /** Base URL of the server (CVAT, the Django fixture, or `sluice-gateway` in front of them). */
  baseUrl: string;
  /**
   * How to authenticate. Several credentials (e.g. several logins) split the workers between
   * them round-robin, as that many scripts would; each login happens once, before the run.
   */
  credential: BulkExportCredential | readonly BulkExportCredential[];
  /** Task ids to export. Give either this or `tasks`. */
  taskIds?: readonly number[];
  /** Export tasks `firstTaskId .. firstTaskId + tasks - 1`. @default 100 (when `taskIds` is absent) */
  tasks?: number;
  /** First id when `tasks` is given. @default 1 */
  firstTaskId?: number;
  /** Tasks in flight at once (each holds at most one request at a time). @default 10 */
  concurrency?: number;
  /** Export format, as CVAT names it. @default 'CVAT for images 1.1' */
  format?: string;
  /** Pause between two polls of `GET /api/requests/{rq_id}`. @default 1000 */
  pollIntervalMs?: number;
  /** Polls before a task gives up with `poll-exhausted`. @default 60 */
  maxPolls?: number;
  /** Per-request timeout (headers and body). @default 30000 */
  requestTimeoutMs?: number;
  /** The whole run stops by then: no new task starts, requests in flight are aborted. @default 120000 */
  deadlineMs?: number;
  /**
   * Retries of a request answered 429 or 503, after its `Retry-After` (capped by
   * `maxRetryDelayMs`). `cvat_sdk` scripts do not retry, so neither does the default.
   * @default 0
   */
  retries?: number;
  /** Cap of one retry's wait. @default 5000 */
  maxRetryDelayMs?: number;
  /** Download `result_url` (else stop once the export finished). @default true */
  download?: boolean;
  /** Extra headers on every request (for instance a `Host`). */
  headers?: Readonly<Record<string, string>>;
  /** Aborts the run from outside. */
  signal?: AbortSignal;
  /** Called after each finished task. */
  onTaskEnd?: (outcome: TaskOutcome, progress: { done: number; total: number }) => void;
  /** Clock, for tests. @default performance.now */
  now?: () => number;
}

/** Where in the export pattern a task failed. */
export type Stage = 'login' | 'export' | 'poll' | 'download';

/**
 * Why a task failed:
 * - `http`: an unexpected status (`status` says which),
 * - `connection`: refused, reset or closed before an answer (`code` says which),
 * - `timeout`: no answer within `requestTimeoutMs`,
 * - `export-failed`: the server reported the export `failed`,
 * - `poll-exhausted`: still not finished after `maxPolls` polls,
 * - `bad-response`: an answer that does not fit CVAT's API,
 * - `deadline`: the run's deadline or the caller's signal stopped it.
 */
export type FailureKind =
  | 'http'
  | 'connection'
  | 'timeout'
  | 'export-failed'
  | 'poll-exhausted'
  | 'bad-response'
  | 'deadline';

/** One task's end: finished, or failed at a stage for a reason. */
export type TaskOutcome =
  | { ok: true; taskId: number; ms: number; requests: number; polls: number; bytes: number }
  | {
      ok: false;
      taskId: number;
      ms: number;
      requests: number;
      polls: number;
      stage: Stage;
      kind: FailureKind;
      status?: number;
      code?: string;
      message: string;
    };

/** The options with defaults applied and checked. */
export interface ResolvedOptions {
  baseUrl: URL;
  /** At least one. */
  credentials: readonly BulkExportCredential[];
  taskIds: readonly number[];
  concurrency: number;
  format: string;
  pollIntervalMs: number;
  maxPolls: number;
  requestTimeoutMs: number;
  deadlineMs: number;
  retries: number;
  maxRetryDelayMs: number;
  download: boolean;
  headers: Readonly<Record<string, string>>;
  now: () => number;
}

/**
 * Applies defaults and refuses what is unbounded or malformed.
 * @throws TypeError or RangeError naming the option and the bad value.
 */
export function resolveOptions(o: BulkExportOptions): ResolvedOptions {
  let baseUrl: URL;
  try {
    baseUrl = new URL(o.baseUrl);
  } catch (cause) {
    throw new TypeError(`baseUrl must be an absolute http(s) URL, got ${JSON.stringify(o.baseUrl)}`, {
      cause,
    });
  }
  if (baseUrl.protocol !== 'http:' && baseUrl.protocol !== 'https:') {
    throw new TypeError(`baseUrl must be an http(s) URL, got ${JSON.stringify(o.baseUrl)}`);
  }
  const credentials: readonly BulkExportCredential[] = Array.isArray(o.credential)
    ? o.credential
    : [o.credential as BulkExportCredential];
  if (credentials.length === 0 || credentials.length > 10_000) {
    throw new RangeError(`credential must list from 1 to 10000 credentials, got ${credentials.length}`);
  }
  for (const c of credentials) checkCredential(c);
  let taskIds: readonly number[];
  if (o.taskIds !== undefined) {
    if (o.tasks !== undefined) throw new TypeError('give either taskIds or tasks, not both');
    if (o.taskIds.length === 0) throw new RangeError('taskIds must not be empty');
    for (const id of o.taskIds) positiveInt('taskIds[]', id);
    taskIds = [...o.taskIds];
  } else {
    const count = positiveInt('tasks', o.tasks ?? 100, 100_000);
    const first = positiveInt('firstTaskId', o.firstTaskId ?? 1);
    taskIds = Array.from({ length: count }, (_, i) => first + i);
  }
  return {
    baseUrl,
    credentials,
    taskIds,
    concurrency: positiveInt('concurrency', o.concurrency ?? 10, 10_000),
    format: nonEmpty('format', o.format ?? 'CVAT for images 1.1'),
    pollIntervalMs: nonNegativeInt('pollIntervalMs', o.pollIntervalMs ?? 1000, 600_000),
    maxPolls: positiveInt('maxPolls', o.maxPolls ?? 60, 100_000),
    requestTimeoutMs: positiveInt('requestTimeoutMs', o.requestTimeoutMs ?? 30_000, 3_600_000),
    deadlineMs: positiveInt('deadlineMs', o.deadlineMs ?? 120_000, 86_400_000),
    retries: nonNegativeInt('retries', o.retries ?? 0, 100),
    maxRetryDelayMs: nonNegativeInt('maxRetryDelayMs', o.maxRetryDelayMs ?? 5000, 600_000),
    download: o.download ?? true,
    headers: { ...(o.headers ?? {}) },
    now: o.now ?? (() => performance.now()),
  };
}

function checkCredential(c: BulkExportCredential | undefined): void {
  if (c === null || typeof c !== 'object') {
    throw new TypeError(`credential must be an object, got ${JSON.stringify(c)}`);
  }
  switch (c.kind) {
    case 'token':
    case 'bearer':
      nonEmpty('credential.token', c.token);
      return;
    case 'session':
      nonEmpty('credential.sessionId', c.sessionId);
      return;
    case 'login':
      nonEmpty('credential.username', c.username);
      nonEmpty('credential.password', c.password);
      if (c.use !== undefined && c.use !== 'token' && c.use !== 'session') {
        throw new TypeError(`credential.use must be token or session, got ${JSON.stringify(c.use)}`);
      }
      return;
    default: {
      const kind: unknown = (c as { kind?: unknown }).kind;
      throw new TypeError(
        `credential.kind must be token, bearer, session or login, got ${JSON.stringify(kind)}`,
      );
    }
  }
}

function positiveInt(name: string, v: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < 1 || v > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${v}`);
  }
  return v;
}

function nonNegativeInt(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${name} must be an integer from 0 to ${max}, got ${v}`);
  }
  return v;
}

function nonEmpty(name: string, v: string): string {
  if (typeof v !== 'string' || v.length === 0) {
    throw new TypeError(`${name} must be a non-empty string, got ${JSON.stringify(v)}`);
  }
  return v;
}
