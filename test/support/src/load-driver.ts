import http, { type IncomingHttpHeaders } from 'node:http';

/** One request the driver sends. */
export interface LoadRequest {
  /** @default 'GET' */
  method?: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers?: Readonly<Record<string, string | string[]>>;
  body?: string | Uint8Array;
}

/** Options for {@link startLoad} and {@link runLoad}. Every run is bounded in count and in time. */
export interface LoadOptions {
  /** Base URL of the server under test. Only loopback hosts (127.0.0.1, ::1, localhost) are allowed. */
  target: string;
  /** Requests in flight at once. */
  concurrency: number;
  /** Hard cap on requests sent. */
  maxRequests: number;
  /** Hard cap on the time spent starting new requests. */
  durationMs: number;
  /** Paces the run to this many requests per second overall. Unpaced (closed loop) when absent. */
  ratePerSecond?: number;
  /** The request to send as number `index`. @default GET / */
  request?: (index: number) => LoadRequest;
  /** A request unanswered after this long is destroyed and counted as error `CLIENT_TIMEOUT`. @default 15000 */
  timeoutMs?: number;
  /** Reuse connections. @default true */
  keepAlive?: boolean;
}

/**
 * How one request ended: a 2xx, a 401, a well-formed 503 (JSON body with a string `code` and a
 * `Retry-After` header), any other answer, or no answer at all (connection error, reset, timeout).
 */
export type OutcomeKind = 'ok' | 'unauthorized' | 'shed' | 'other' | 'error';

/** One request as the driver saw it. Times are epoch milliseconds (fractional). */
export interface RequestRecord {
  readonly index: number;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly kind: OutcomeKind;
  /** HTTP status, 0 when there was no answer. */
  readonly status: number;
  /** The 503's `code`, the error code, or why an answer counts as `other`. */
  readonly detail: string;
}

/** Percentiles in milliseconds; all 0 when there is nothing to measure. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** The accounting of a run (or of a window of it): every request sent lands in exactly one bucket. */
export interface LoadReport {
  readonly sent: number;
  /** Sent and not finished yet (0 once the run is over). */
  readonly inFlight: number;
  readonly ok: number;
  readonly unauthorized: number;
  readonly shed: number;
  readonly other: number;
  readonly errors: number;
  /** Sent, not in flight and in no bucket. Always 0 unless the driver itself is broken. */
  readonly lost: number;
  readonly byStatus: Readonly<Record<string, number>>;
  /** `code` of the well-formed 503s. */
  readonly byShedCode: Readonly<Record<string, number>>;
  /** Error codes of the requests that got no answer. */
  readonly byError: Readonly<Record<string, number>>;
  /** Why answers counted as `other` (status and reason). */
  readonly byOther: Readonly<Record<string, number>>;
  readonly durationMs: number;
  /** Finished requests per second over `durationMs`. */
  readonly ratePerSecond: number;
  readonly latencyMs: LatencySummary;
  /** Latency of the well-formed 503s alone (fast rejection). */
  readonly shedLatencyMs: LatencySummary;
}

/** A run in progress. */
export interface LoadRun {
  /** Settles when the run ends by itself (count or time reached) or after `stop()`. */
  readonly done: Promise<LoadReport>;
  /** Stops starting requests, waits for those in flight (each bounded by `timeoutMs`). */
  stop(): Promise<LoadReport>;
  /** The accounting so far. */
  snapshot(): LoadReport;
  /** The accounting of the requests started in [from, to] (epoch ms). */
  window(from: number, to: number): LoadReport;
  /** Every finished request so far (bounded by `maxRequests`). */
  records(): readonly RequestRecord[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const BODY_CAP = 64 * 1024;

function clock(): number {
  return performance.timeOrigin + performance.now();
}

/** Whether a 503 or 429 is the clean kind: `Retry-After` (seconds or a date) and a JSON body with a string `code`. */
export function wellFormed503(
  headers: IncomingHttpHeaders,
  body: string,
): { ok: true; code: string } | { ok: false; reason: string } {
  const retryAfter = headers['retry-after'];
  if (typeof retryAfter !== 'string' || retryAfter === '') return { ok: false, reason: 'no Retry-After' };
  if (!/^\d+$/.test(retryAfter) && Number.isNaN(Date.parse(retryAfter))) {
    return { ok: false, reason: `bad Retry-After ${JSON.stringify(retryAfter.slice(0, 40))}` };
  }
  if (!/json/i.test(String(headers['content-type'] ?? ''))) return { ok: false, reason: 'not JSON' };
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed && typeof parsed === 'object' && typeof (parsed as { code?: unknown }).code === 'string') {
      return { ok: true, code: (parsed as { code: string }).code };
    }
    return { ok: false, reason: 'JSON without a string code' };
  } catch {
    return { ok: false, reason: 'body is not JSON' };
  }
}

/** Sorts an answer into the driver's buckets. */
export function classifyResponse(
  status: number,
  headers: IncomingHttpHeaders,
  body: string,
): { kind: Exclude<OutcomeKind, 'error'>; detail: string } {
  if (status >= 200 && status < 300) return { kind: 'ok', detail: String(status) };
  if (status === 401) return { kind: 'unauthorized', detail: '401' };
  // A shed request: 503, or 429 (what the gateway answers by default, which browsers' retry
  // libraries honour), both with Retry-After and a JSON code.
  if (status === 503 || status === 429) {
    const verdict = wellFormed503(headers, body);
    if (verdict.ok) return { kind: 'shed', detail: verdict.code };
    return { kind: 'other', detail: `${status} ${verdict.reason}` };
  }
  return { kind: 'other', detail: String(status) };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? 0;
}

function summarize(latencies: number[]): LatencySummary {
  const sorted = latencies.sort((a, b) => a - b);
  const round = (n: number): number => Math.round(n * 100) / 100;
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? 0),
  };
}

function bump(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

/** Builds the accounting for a set of finished records plus how many were sent. */
export function account(
  records: readonly RequestRecord[],
  sent: number,
  inFlight: number,
  durationMs: number,
): LoadReport {
  const counts = { ok: 0, unauthorized: 0, shed: 0, other: 0, error: 0 };
  const byStatus: Record<string, number> = {};
  const byShedCode: Record<string, number> = {};
  const byError: Record<string, number> = {};
  const byOther: Record<string, number> = {};
  const latencies: number[] = [];
  const shedLatencies: number[] = [];
  for (const r of records) {
    counts[r.kind] += 1;
    const latency = r.endedAt - r.startedAt;
    latencies.push(latency);
    if (r.kind === 'error') {
      bump(byError, r.detail);
      continue;
    }
    bump(byStatus, String(r.status));
    if (r.kind === 'shed') {
      bump(byShedCode, r.detail);
      shedLatencies.push(latency);
    } else if (r.kind === 'other') {
      bump(byOther, r.detail);
    }
  }
  const finished = records.length;
  return {
    sent,
    inFlight,
    ok: counts.ok,
    unauthorized: counts.unauthorized,
    shed: counts.shed,
    other: counts.other,
    errors: counts.error,
    lost: sent - inFlight - finished,
    byStatus,
    byShedCode,
    byError,
    byOther,
    durationMs: Math.round(durationMs),
    ratePerSecond: durationMs > 0 ? Math.round((finished / durationMs) * 1000 * 10) / 10 : 0,
    latencyMs: summarize(latencies),
    shedLatencyMs: summarize(shedLatencies),
  };
}

function validate(o: LoadOptions): URL {
  let url: URL;
  try {
    url = new URL(o.target);
  } catch {
    throw new TypeError(`target should be an http URL, got ${JSON.stringify(o.target)}`);
  }
  if (url.protocol !== 'http:') throw new TypeError(`target should be an http URL, got ${o.target}`);
  if (!LOOPBACK.has(url.hostname)) {
    throw new RangeError(`target should be a loopback address (127.0.0.1), got ${url.hostname}`);
  }
  const positiveInt = (name: string, v: number, max: number): void => {
    if (!Number.isInteger(v) || v < 1 || v > max) {
      throw new RangeError(`${name} should be an integer in [1, ${max}], got ${String(v)}`);
    }
  };
  positiveInt('concurrency', o.concurrency, 10_000);
  positiveInt('maxRequests', o.maxRequests, 5_000_000);
  positiveInt('durationMs', o.durationMs, 24 * 3600 * 1000);
  if (o.timeoutMs !== undefined) positiveInt('timeoutMs', o.timeoutMs, 600_000);
  if (o.ratePerSecond !== undefined && !(o.ratePerSecond > 0 && Number.isFinite(o.ratePerSecond))) {
    throw new RangeError(`ratePerSecond should be a positive number, got ${String(o.ratePerSecond)}`);
  }
  return url;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function send(
  agent: http.Agent,
  url: URL,
  r: LoadRequest,
  timeoutMs: number,
): Promise<Answer | { error: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (v: Answer | { error: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const req = http.request({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || 80,
      method: r.method ?? 'GET',
      path: r.path,
      headers: r.headers,
      agent,
    });
    const timer = setTimeout(() => {
      finish({ error: 'CLIENT_TIMEOUT' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.name }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < BODY_CAP) chunks.push(chunk);
        size += chunk.length;
      });
      res.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? 'RESPONSE_ERROR' }));
      res.on('close', () => {
        if (!res.complete) {
          finish({ error: 'RESPONSE_ABORTED' });
          return;
        }
        finish({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        });
      });
    });
    req.end(r.body);
  });
}

/**
 * Starts a bounded load run against a local server and accounts for every request: 2xx, 401,
 * well-formed 503, anything else, or no answer (with its error code). Nothing goes unaccounted:
 * `lost` in the report must be 0.
 *
 * @throws {TypeError|RangeError} for a target that is not a loopback http URL or bad bounds.
 * @example
 * const run = startLoad({ target: 'http://127.0.0.1:8090', concurrency: 20, maxRequests: 10_000, durationMs: 10_000 });
 * const report = await run.stop();
 */
export function startLoad(options: LoadOptions): LoadRun {
  const url = validate(options);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const makeRequest = options.request ?? ((): LoadRequest => ({ path: '/' }));
  const agent = new http.Agent({
    keepAlive: options.keepAlive ?? true,
    maxSockets: options.concurrency,
    maxFreeSockets: options.concurrency,
  });
  const startedAt = clock();
  const deadline = startedAt + options.durationMs;
  const records: RequestRecord[] = [];
  let next = 0;
  let sent = 0;
  let stopping = false;
  let endedAt: number | undefined;
  const sleepers = new Set<() => void>();

  const pause = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const wakeUp = (): void => {
        clearTimeout(timer);
        sleepers.delete(wakeUp);
        resolve();
      };
      const timer = setTimeout(wakeUp, ms);
      sleepers.add(wakeUp);
    });

  const worker = async (): Promise<void> => {
    for (;;) {
      if (stopping || next >= options.maxRequests || clock() >= deadline) return;
      const index = next;
      next += 1;
      if (options.ratePerSecond !== undefined) {
        const due = startedAt + (index * 1000) / options.ratePerSecond;
        const wait = due - clock();
        if (wait > 0) await pause(wait);
        if (stopping || clock() >= deadline) return;
      }
      const request = makeRequest(index);
      const began = clock();
      sent += 1;
      const answer = await send(agent, url, request, timeoutMs);
      const ended = clock();
      if ('error' in answer) {
        records.push({
          index,
          startedAt: began,
          endedAt: ended,
          kind: 'error',
          status: 0,
          detail: answer.error,
        });
      } else {
        const { kind, detail } = classifyResponse(answer.status, answer.headers, answer.body);
        records.push({ index, startedAt: began, endedAt: ended, kind, status: answer.status, detail });
      }
    }
  };

  const workers = Array.from({ length: options.concurrency }, () => worker());
  const report = (): LoadReport =>
    account(records, sent, sent - records.length, (endedAt ?? clock()) - startedAt);
  const done = Promise.all(workers).then(() => {
    endedAt = clock();
    agent.destroy();
    return report();
  });

  return {
    done,
    stop: async () => {
      stopping = true;
      for (const wakeUp of [...sleepers]) wakeUp();
      return done;
    },
    snapshot: report,
    window: (from, to) => {
      const inside = records.filter((r) => r.startedAt >= from && r.startedAt <= to);
      return account(inside, inside.length, 0, to - from);
    },
    records: () => records,
  };
}

/**
 * Adds up the accounting of runs that went on side by side (one per target). Percentiles cannot
 * be added: the merged report keeps the worst p99 of the inputs.
 */
export function mergeReports(...reports: readonly LoadReport[]): LoadReport {
  const sum = (
    k: 'sent' | 'ok' | 'unauthorized' | 'shed' | 'other' | 'errors' | 'lost' | 'inFlight',
  ): number => reports.reduce((n, r) => n + r[k], 0);
  const merge = (pick: (r: LoadReport) => Readonly<Record<string, number>>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const r of reports) for (const [k, v] of Object.entries(pick(r))) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const worst = (pick: (r: LoadReport) => LatencySummary): LatencySummary =>
    reports.map(pick).reduce((w, l) => (l.p99 > w.p99 ? l : w), { count: 0, p50: 0, p99: 0, max: 0 });
  const durationMs = Math.max(0, ...reports.map((r) => r.durationMs));
  const finished = sum('sent') - sum('inFlight');
  return {
    sent: sum('sent'),
    inFlight: sum('inFlight'),
    ok: sum('ok'),
    unauthorized: sum('unauthorized'),
    shed: sum('shed'),
    other: sum('other'),
    errors: sum('errors'),
    lost: sum('lost'),
    byStatus: merge((r) => r.byStatus),
    byShedCode: merge((r) => r.byShedCode),
    byError: merge((r) => r.byError),
    byOther: merge((r) => r.byOther),
    durationMs,
    ratePerSecond: durationMs > 0 ? Math.round((finished / durationMs) * 10_000) / 10 : 0,
    latencyMs: worst((r) => r.latencyMs),
    shedLatencyMs: worst((r) => r.shedLatencyMs),
  };
}

/** Runs a bounded load to its end (count or time) and returns the accounting. */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  return startLoad(options).done;
}
