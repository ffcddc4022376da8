import { setMaxListeners } from 'node:events';
import { Agent } from 'undici';
import { type AuthHeaders, authenticate, LoginError } from './auth.js';
import { exportTask } from './export-task.js';
import { isRequestFailure } from './http.js';
import { type BulkExportOptions, type FailureKind, resolveOptions, type TaskOutcome } from './options.js';
import { bump, type LatencySummary, Recorder, round, summarize } from './recorder.js';

/** What a run did. Plain JSON: `JSON.stringify` it as is. */
export interface BulkExportReport {
  baseUrl: string;
  tasks: number;
  concurrency: number;
  /** Wall-clock start (ISO 8601). */
  startedAt: string;
  durationMs: number;
  /** Tasks that exported and downloaded. */
  succeeded: number;
  failed: number;
  /** HTTP requests sent (answered or not). */
  requests: number;
  /** Answers by HTTP status code. */
  statusCounts: Record<string, number>;
  /** Requests with no answer, by error code (`ECONNREFUSED`, `ECONNRESET`, `UND_ERR_SOCKET`, ...). */
  connectionErrors: Record<string, number>;
  /** Requests that hit `requestTimeoutMs`. */
  timeouts: number;
  /**
   * Requests the run's deadline (or the caller's signal) stopped before an answer. Every request
   * is in exactly one of `statusCounts`, `connectionErrors`, `timeouts` and this.
   */
  interrupted: number;
  /** Failed tasks by reason. */
  failuresByKind: Partial<Record<FailureKind, number>>;
  /** Failed tasks by `stage kind[ status|code]`, e.g. `export http 500`, `poll connection ECONNRESET`. */
  failuresByStage: Record<string, number>;
  latencyMs: { request: LatencySummary; task: LatencySummary };
  throughput: { requestsPerSecond: number; tasksPerSecond: number };
  bytesDownloaded: number;
  /** Origins of the `result_url`s the server returned (the gateway's, behind it). */
  resultUrlOrigins: Record<string, number>;
  /** Up to five distinct error messages, for a first look. */
  sampleErrors: string[];
}

/**
 * Runs `cvat_sdk`'s export pattern for every task at the chosen concurrency, bounded by
 * `deadlineMs`, and reports outcomes. Never throws for what the server does (refusals, errors and
 * timeouts are counted); throws only for bad options.
 * @throws TypeError | RangeError for a bad option (see {@link resolveOptions}).
 * @example
 * const report = await runBulkExport({
 *   baseUrl: 'http://127.0.0.1:8090',
 *   credential: { kind: 'token', token: process.env.CVAT_TOKEN ?? '' },
 *   tasks: 500,
 *   concurrency: 200,
 *   pollIntervalMs: 1000,
 * });
 * console.log(formatReport(report));
 */
export async function runBulkExport(options: BulkExportOptions): Promise<BulkExportReport> {
  const o = resolveOptions(options);
  const recorder = new Recorder();
  const run = new AbortController();
  // Every request and every poll pause listens on the run's signal: one per task in flight.
  setMaxListeners(0, run.signal);
  const deadline = setTimeout(() => run.abort(new Error('deadline')), o.deadlineMs);
  deadline.unref();
  const stopFromOutside = (): void => run.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', stopFromOutside, { once: true });
  if (options.signal?.aborted) run.abort(options.signal.reason);
  const agent = new Agent({
    connections: o.concurrency + 1,
    keepAliveTimeout: 10_000,
    connect: { timeout: o.requestTimeoutMs },
  });
  const outcomes: TaskOutcome[] = [];
  const startedAt = new Date();
  const started = o.now();
  try {
    // Every credential authenticates once (logins in parallel); workers are split between those
    // that did, round-robin. With none, every task fails at the login stage.
    const logins = await Promise.all(
      o.credentials.map(async (credential): Promise<AuthHeaders | TaskOutcome> => {
        try {
          return await authenticate(agent, o, credential, recorder, run.signal);
        } catch (e) {
          if (!(e instanceof LoginError) && !isRequestFailure(e)) throw e;
          recorder.noteError(`login: ${e.message}`);
          const failure: TaskOutcome = {
            ok: false,
            taskId: 0,
            ms: 0,
            requests: 0,
            polls: 0,
            stage: 'login',
            kind: isRequestFailure(e) ? e.kind : e.status === undefined ? 'bad-response' : 'http',
            message: e.message,
          };
          if (e instanceof LoginError && e.status !== undefined) failure.status = e.status;
          if (isRequestFailure(e)) failure.code = e.code;
          return failure;
        }
      }),
    );
    const auths = logins.filter((l): l is AuthHeaders => !('ok' in l));
    const loginFailure = logins.find((l): l is TaskOutcome => 'ok' in l);
    if (auths.length === 0) {
      for (const taskId of o.taskIds) outcomes.push({ ...(loginFailure as TaskOutcome), taskId });
    } else {
      let next = 0;
      const worker = async (headers: AuthHeaders): Promise<void> => {
        for (;;) {
          const taskId = o.taskIds[next];
          if (taskId === undefined) return;
          next += 1;
          if (run.signal.aborted) {
            outcomes.push(notStarted(taskId));
            continue;
          }
          const outcome = await exportTask(taskId, agent, o, headers, recorder, run.signal);
          outcomes.push(outcome);
          options.onTaskEnd?.(outcome, { done: outcomes.length, total: o.taskIds.length });
        }
      };
      const workers = Math.min(o.concurrency, o.taskIds.length);
      await Promise.all(
        Array.from({ length: workers }, (_, i) => worker(auths[i % auths.length] as AuthHeaders)),
      );
    }
  } finally {
    clearTimeout(deadline);
    options.signal?.removeEventListener('abort', stopFromOutside);
    await agent.destroy().catch(() => undefined);
  }
  const durationMs = o.now() - started;
  return buildReport(o.baseUrl.origin, o.concurrency, startedAt, durationMs, outcomes, recorder);
}

function notStarted(taskId: number): TaskOutcome {
  return {
    ok: false,
    taskId,
    ms: 0,
    requests: 0,
    polls: 0,
    stage: 'export',
    kind: 'deadline',
    message: 'not started before the deadline',
  };
}

function buildReport(
  baseUrl: string,
  concurrency: number,
  startedAt: Date,
  durationMs: number,
  outcomes: readonly TaskOutcome[],
  r: Recorder,
): BulkExportReport {
  const failuresByKind = new Map<FailureKind, number>();
  const failuresByStage = new Map<string, number>();
  let succeeded = 0;
  for (const t of outcomes) {
    if (t.ok) {
      succeeded += 1;
      continue;
    }
    bump(failuresByKind, t.kind);
    const detail = t.status !== undefined ? ` ${t.status}` : t.code !== undefined ? ` ${t.code}` : '';
    bump(failuresByStage, `${t.stage} ${t.kind}${detail}`);
  }
  const seconds = Math.max(durationMs, 1) / 1000;
  return {
    baseUrl,
    tasks: outcomes.length,
    concurrency,
    startedAt: startedAt.toISOString(),
    durationMs: round(durationMs),
    succeeded,
    failed: outcomes.length - succeeded,
    requests: r.requests,
    statusCounts: Object.fromEntries(
      [...r.statusCounts].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v]),
    ),
    connectionErrors: Object.fromEntries(r.connectionErrors),
    timeouts: r.timeouts,
    interrupted: r.interrupted,
    failuresByKind: Object.fromEntries(failuresByKind),
    failuresByStage: Object.fromEntries([...failuresByStage].sort((a, b) => b[1] - a[1])),
    latencyMs: { request: summarize(r.requestLatencies), task: summarize(r.taskLatencies) },
    throughput: {
      requestsPerSecond: round(r.requests / seconds),
      tasksPerSecond: round(succeeded / seconds, 2),
    },
    bytesDownloaded: r.bytes,
    resultUrlOrigins: Object.fromEntries(r.resultUrlOrigins),
    sampleErrors: [...r.firstErrors],
  };
}
