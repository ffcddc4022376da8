import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from 'undici';
import type { AuthHeaders } from './auth.js';
import { type Answer, isRequestFailure, send } from './http.js';
import type { FailureKind, ResolvedOptions, Stage, TaskOutcome } from './options.js';
import type { Recorder } from './recorder.js';

/** Ends a task early with a reason; caught by {@link exportTask}. */
class TaskFailure extends Error {
  constructor(
    readonly stage: Stage,
    readonly kind: FailureKind,
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * One task through `cvat_sdk`'s export pattern:
 * 1. `POST /api/tasks/{id}/dataset/export?format=...&save_images=false`, expecting `202 {rq_id}`;
 * 2. `GET /api/requests/{rq_id}` every `pollIntervalMs` until `status` is `finished` (or `failed`),
 *    at most `maxPolls` times;
 * 3. `GET result_url` (absolute, as the server built it), body streamed and counted.
 */
export async function exportTask(
  taskId: number,
  agent: Agent,
  o: ResolvedOptions,
  auth: AuthHeaders,
  recorder: Recorder,
  signal: AbortSignal,
): Promise<TaskOutcome> {
  const started = o.now();
  let requests = 0;
  let polls = 0;
  const call = async (stage: Stage, method: 'GET' | 'POST', url: URL, read: 'text' | 'discard') => {
    requests += 1;
    try {
      return await send(agent, o, recorder, signal, {
        method,
        url,
        headers: method === 'POST' ? auth.unsafe : auth.safe,
        read,
      });
    } catch (e) {
      if (isRequestFailure(e)) throw new TaskFailure(stage, e.kind, e.message, undefined, e.code);
      throw e;
    }
  };
  try {
    const exportUrl = new URL(`/api/tasks/${taskId}/dataset/export`, o.baseUrl);
    exportUrl.searchParams.set('format', o.format);
    exportUrl.searchParams.set('save_images', 'false');
    const started202 = await call('export', 'POST', exportUrl, 'text');
    expectStatus('export', started202, [200, 201, 202]);
    const rqId = field(started202, 'export', 'rq_id');

    let resultUrl: string | undefined;
    while (resultUrl === undefined) {
      if (polls >= o.maxPolls) {
        throw new TaskFailure('poll', 'poll-exhausted', `not finished after ${polls} polls`);
      }
      try {
        await sleep(o.pollIntervalMs, undefined, { signal });
      } catch {
        throw new TaskFailure('poll', 'deadline', 'the run stopped while polling');
      }
      polls += 1;
      const poll = await call(
        'poll',
        'GET',
        new URL(`/api/requests/${encodeURIComponent(rqId)}`, o.baseUrl),
        'text',
      );
      expectStatus('poll', poll, [200]);
      const status = field(poll, 'poll', 'status');
      if (status === 'failed') {
        throw new TaskFailure('poll', 'export-failed', `export failed: ${optionalField(poll, 'message')}`);
      }
      if (status === 'finished') resultUrl = field(poll, 'poll', 'result_url');
    }

    let bytes = 0;
    if (o.download) {
      let url: URL;
      try {
        url = new URL(resultUrl, o.baseUrl);
      } catch {
        throw new TaskFailure(
          'download',
          'bad-response',
          `result_url is not a URL: ${resultUrl.slice(0, 100)}`,
        );
      }
      recorder.resultOrigin(url.origin);
      const file = await call('download', 'GET', url, 'discard');
      expectStatus('download', file, [200]);
      bytes = file.bytes;
      recorder.bytes += bytes;
    }
    const ms = o.now() - started;
    recorder.taskLatencies.push(ms);
    return { ok: true, taskId, ms, requests, polls, bytes };
  } catch (e) {
    if (!(e instanceof TaskFailure)) throw e;
    const failed: TaskOutcome = {
      ok: false,
      taskId,
      ms: o.now() - started,
      requests,
      polls,
      stage: e.stage,
      kind: e.kind,
      message: e.message,
    };
    if (e.status !== undefined) failed.status = e.status;
    if (e.code !== undefined) failed.code = e.code;
    if (e.kind !== 'connection' && e.kind !== 'timeout' && e.kind !== 'deadline') {
      recorder.noteError(`${e.stage}: ${e.message}`);
    }
    return failed;
  }
}

function expectStatus(stage: Stage, a: Answer, ok: readonly number[]): void {
  if (!ok.includes(a.status)) {
    throw new TaskFailure(stage, 'http', `${stage} answered ${a.status}: ${a.text.slice(0, 160)}`, a.status);
  }
}

function parse(a: Answer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(a.text);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function field(a: Answer, stage: Stage, name: string): string {
  const v = parse(a)?.[name];
  if (typeof v !== 'string' || v.length === 0) {
    throw new TaskFailure(stage, 'bad-response', `answer has no ${name}: ${a.text.slice(0, 160)}`, a.status);
  }
  return v;
}

function optionalField(a: Answer, name: string): string {
  const v = parse(a)?.[name];
  return typeof v === 'string' ? v : '';
}
