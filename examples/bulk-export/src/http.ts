import { setTimeout as sleep } from 'node:timers/promises';
import { type Agent, request } from 'undici';
import type { ResolvedOptions } from './options.js';
import type { Recorder } from './recorder.js';

/** A request that got no HTTP answer: refused, reset, timed out, or stopped by the deadline. */
export class RequestFailure extends Error {
  override readonly name = 'RequestFailure';
  constructor(
    readonly kind: 'connection' | 'timeout' | 'deadline',
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isRequestFailure(e: unknown): e is RequestFailure {
  return e instanceof RequestFailure;
}

/** An HTTP answer, its body read as asked. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body as text (`read: 'text'`), else empty. */
  text: string;
  /** Bytes of body read. */
  bytes: number;
}

export interface SendOptions {
  method: 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: string;
  /** `text` keeps the body (small JSON answers); `discard` counts and drops it (downloads). */
  read: 'text' | 'discard';
}

/**
 * One HTTP exchange through `agent`, timed and recorded. Retries 429/503 up to `o.retries`
 * times after `Retry-After`. Never throws for an HTTP status; throws {@link RequestFailure}
 * when there is no answer.
 */
export async function send(
  agent: Agent,
  o: ResolvedOptions,
  recorder: Recorder,
  runSignal: AbortSignal,
  s: SendOptions,
): Promise<Answer> {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await sendOnce(agent, o, recorder, runSignal, s);
    if ((answer.status !== 503 && answer.status !== 429) || attempt >= o.retries) return answer;
    const wait = Math.min(o.maxRetryDelayMs, retryAfterMs(answer.headers['retry-after']) ?? 1000);
    try {
      await sleep(wait, undefined, { signal: runSignal });
    } catch (cause) {
      throw new RequestFailure('deadline', 'DEADLINE', 'the run stopped while waiting to retry', { cause });
    }
  }
}

async function sendOnce(
  agent: Agent,
  o: ResolvedOptions,
  recorder: Recorder,
  runSignal: AbortSignal,
  s: SendOptions,
): Promise<Answer> {
  if (runSignal.aborted) throw new RequestFailure('deadline', 'DEADLINE', 'the run stopped');
  const timeout = AbortSignal.timeout(o.requestTimeoutMs);
  const signal = AbortSignal.any([runSignal, timeout]);
  const started = o.now();
  try {
    const res = await request(s.url, {
      dispatcher: agent,
      method: s.method,
      headers: s.headers,
      body: s.body ?? null,
      signal,
      headersTimeout: o.requestTimeoutMs,
      bodyTimeout: o.requestTimeoutMs,
    });
    let text = '';
    let bytes = 0;
    if (s.read === 'text') {
      text = await res.body.text();
      bytes = Buffer.byteLength(text);
    } else {
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
    }
    recorder.answered(res.statusCode, o.now() - started);
    return { status: res.statusCode, headers: res.headers, text, bytes };
  } catch (cause) {
    const ms = o.now() - started;
    const failure = classify(cause, runSignal, timeout);
    recorder.failed(failure.kind, failure.code, ms, failure.message);
    throw failure;
  }
}

/** Turns an undici or abort error into a {@link RequestFailure} with a stable code. */
export function classify(cause: unknown, runSignal: AbortSignal, timeout: AbortSignal): RequestFailure {
  if (runSignal.aborted) return new RequestFailure('deadline', 'DEADLINE', 'the run stopped', { cause });
  const code = errorCode(cause);
  const message = cause instanceof Error ? cause.message : String(cause);
  if (
    timeout.aborted ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  ) {
    return new RequestFailure('timeout', code === 'ABORT_ERR' ? 'TIMEOUT' : code, message, { cause });
  }
  return new RequestFailure('connection', code, message, { cause });
}

function errorCode(e: unknown): string {
  if (e && typeof e === 'object') {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (e as { cause?: unknown }).cause;
    if (inner && inner !== e) return errorCode(inner);
    const name = (e as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  }
  return 'UNKNOWN';
}

/** `Retry-After` in seconds or as an HTTP date, in milliseconds; undefined when absent or bad. */
export function retryAfterMs(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const raw = Array.isArray(v) ? v[0] : v;
  if (raw === undefined || raw.trim() === '') return undefined;
  if (/^\d+$/.test(raw.trim())) return Number(raw.trim()) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
