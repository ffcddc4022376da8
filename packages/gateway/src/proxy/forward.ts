// The proxy: one request forwarded with undici's `request()`, its answer sent back. The request
// body comes from a spool (received in full beforehand) or streams from the client; the response
// goes through a spool, so the upstream finishes (and the caller releases its slot) at the
// upstream's pace while the client reads at its own, within the client deadlines.
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { withTimeout } from '@sluice/kit';
import type { Dispatcher } from 'undici';
import { requestContext } from '../context.js';
import { inspectRequest, isMethodToken, isOriginFormTarget } from '../edge.js';
import { type GatewayErrorCode, gatewayErrorStatus } from '../errors.js';
import { clientResponseHeaders, upstreamRequestHeaders } from '../headers.js';
import { CLOSE, sendJsonError } from '../json-error.js';
import { hasBody } from './request-body.js';
import { Spool, type SpoolOptions } from './spool.js';
import { type StallReason, watchTransfer } from './transfer-watch.js';

/** How one proxied request ended. */
export interface ProxyOutcome {
  /** Status sent to the client, or 499 when the client went away first. */
  readonly status: number;
  /** Milliseconds from dispatch to the upstream's response headers (undefined if none came). */
  readonly upstreamMs: number | undefined;
  /** The error code when the gateway answered in the upstream's place or the transfer broke. */
  readonly errorCode: GatewayErrorCode | 'E_CLIENT_ABORTED' | undefined;
  /** The underlying error, if any. */
  readonly error: Error | undefined;
}

/**
 * What an `onResponseStart` hook may resolve with to answer in the upstream's place: the
 * upstream's status, headers and body are discarded and the client gets this JSON error instead.
 */
export interface ProxyReplacement {
  readonly status: number;
  readonly code: GatewayErrorCode;
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** Response buffering: memory, then a temp file, up to `maxBytes` held per response. */
export type ResponseBuffering = Omit<SpoolOptions, 'whenFull'>;

/** Options of {@link createProxy}. */
export interface ProxyOptions {
  /** The upstream origin (`http://host:port`). */
  readonly upstream: string;
  /** The undici dispatcher (a Pool or Agent) that holds the keep-alive connections. */
  readonly dispatcher: Dispatcher;
  /** @default true */
  readonly preserveHost?: boolean | undefined;
  /** @default 120000 */
  readonly headersTimeoutMs?: number | undefined;
  /** @default 300000 */
  readonly bodyTimeoutMs?: number | undefined;
  /**
   * Called with the upstream's status, headers and (when it fits in memory) body before anything
   * is sent to the client. When it
   * returns a promise, the response waits for it (at most `hookTimeoutMs`); a
   * {@link ProxyReplacement} it resolves with is answered instead of the upstream's response.
   */
  readonly onResponseStart?:
    | ((
        req: IncomingMessage,
        statusCode: number,
        headers: IncomingHttpHeaders,
        body: Buffer | undefined,
      ) => Promise<unknown> | undefined)
    | undefined;
  /** @default 1000 */
  readonly hookTimeoutMs?: number | undefined;
  /** The upstream has finished with the request (answered in full, failed, or was cut off). */
  readonly onUpstreamDone?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** Longest silence of a client sending a streamed request body. @default 30000 */
  readonly clientBodyTimeoutMs?: number | undefined;
  /** Longest a client may leave the answer unread while data waits for it. @default 60000 */
  readonly clientSendTimeoutMs?: number | undefined;
  /** Slowest average a client transfer may have once its timeout has passed, bytes/s; 0: none. @default 0 */
  readonly clientMinRate?: number | undefined;
  /** Response buffering; `false` streams with backpressure through a small buffer. @default 64 KiB in memory, nothing on disk */
  readonly responseBuffering?: ResponseBuffering | false | undefined;
}

/** The proxy handler: forwards `req` (its body from `body` when given) and answers `res`. */
export type ProxyHandler = (req: IncomingMessage, res: ServerResponse, body?: Spool) => Promise<ProxyOutcome>;

const SAFE_TO_RETRY = new Set(['GET', 'HEAD', 'OPTIONS']);
const STALE_SOCKET_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/**
 * The abort signal of one upstream request: undici takes an EventEmitter with `aborted`, `reason`
 * and an `abort` event, which costs far less per request than an AbortController.
 */
class Abort extends EventEmitter {
  aborted = false;
  reason: Error | undefined;
  abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort', reason);
  }
}

class ClientGoneError extends Error {
  override readonly name = 'ClientGoneError';
  readonly code = 'E_CLIENT_ABORTED';
}

class ClientStallError extends Error {
  override readonly name = 'ClientStallError';
  readonly code = 'E_CLIENT_TIMEOUT';
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : '';
}

function isReplacement(value: unknown): value is ProxyReplacement {
  const v = value as Partial<ProxyReplacement> | null | undefined;
  return typeof v === 'object' && v !== null && typeof v.status === 'number' && typeof v.code === 'string';
}

/** Drops an upstream body the client will not get: destroying it emits an abort error, handled here. */
function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads `body` until it ends or holds more than `max` bytes. */
async function readUpTo(
  body: AsyncIterator<Buffer>,
  max: number,
): Promise<{ chunks: Buffer[]; done: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size <= max) {
    const next = await body.next();
    if (next.done) return { chunks, done: true };
    chunks.push(next.value);
    size += next.value.length;
  }
  return { chunks, done: false };
}

/** The gateway's answer to an undici/socket error before the response head: its code and message. */
function classifyUpstreamError(
  error: unknown,
): [
  code: 'E_UPSTREAM_TIMEOUT' | 'E_BAD_REQUEST' | 'E_UPSTREAM_PROTOCOL' | 'E_UPSTREAM_UNAVAILABLE',
  message: string,
] {
  const code = codeOf(error);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT')
    return ['E_UPSTREAM_TIMEOUT', 'The upstream server did not answer in time.'];
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_INVALID_ARG')
    return ['E_BAD_REQUEST', 'The request cannot be forwarded as sent.'];
  if (/^(HPE_|ERR_INVALID_)/.test(code) || code === 'UND_ERR_HEADERS_OVERFLOW' || code === 'UND_ERR_RESPONSE')
    return ['E_UPSTREAM_PROTOCOL', 'The upstream server sent an invalid response.'];
  return ['E_UPSTREAM_UNAVAILABLE', 'The upstream server is unavailable.'];
}

/**
 * Builds the reverse proxy. Hop-by-hop and identity headers are removed and X-Forwarded-* set.
 * A client that goes away aborts the upstream request; errors before the upstream's headers become
 * a JSON answer (502, or 504 on a timeout), errors after them cut the client connection. A
 * GET/HEAD/OPTIONS that fails on a stale keep-alive socket is retried once.
 *
 * @example
 * ```ts
 * const proxy = createProxy({ upstream: 'http://127.0.0.1:8080', dispatcher: new Pool(origin) });
 * server.on('request', (req, res) => void proxy(req, res));
 * ```
 */
export function createProxy(options: ProxyOptions): ProxyHandler {
  const origin = new URL(options.upstream).origin;
  const preserveHost = options.preserveHost ?? true;
  const headersTimeout = options.headersTimeoutMs ?? 120_000;
  const bodyTimeout = options.bodyTimeoutMs ?? 300_000;
  const hookTimeoutMs = options.hookTimeoutMs ?? 1_000;
  const receiveIdleMs = options.clientBodyTimeoutMs ?? 30_000;
  const sendIdleMs = options.clientSendTimeoutMs ?? 60_000;
  const minRate = options.clientMinRate ?? 0;
  const buffering = options.responseBuffering;
  const memoryBytes = buffering ? buffering.memoryBytes : 64 * 1024;
  const { dispatcher, onResponseStart, onUpstreamDone } = options;

  return async function proxy(req, res, body) {
    const ctx = requestContext(req);
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const started = performance.now();
    let upstreamMs: number | undefined;
    let finished = false;
    const upstreamFinished = (): void => {
      if (finished) return;
      finished = true;
      onUpstreamDone?.(req, res);
    };
    const outcome = (status: number, errorCode?: ProxyOutcome['errorCode'], error?: Error): ProxyOutcome => {
      if (errorCode) ctx.errorCode = errorCode;
      return { status, upstreamMs, errorCode, error };
    };
    // undici throws on a target that is not a path; such requests never reach it.
    const notPath = !isOriginFormTarget(path) || !isMethodToken(method);
    const view = notPath
      ? { refused: 'The request target must be a path.' }
      : (ctx.edge ?? inspectRequest(req, false, undefined));
    if ('refused' in view) {
      if (notPath) ctx.errorCause = 'request target is not a path';
      res.shouldKeepAlive = false;
      sendJsonError(res, 400, 'E_BAD_REQUEST', view.refused, CLOSE);
      upstreamFinished();
      return outcome(400, 'E_BAD_REQUEST');
    }
    const controller = new Abort();
    const stops: (() => void)[] = [];
    const cut = (error: Error): void => controller.abort(error);
    const onClose = (): void => {
      if (!res.writableFinished) cut(new ClientGoneError('the client closed the connection'));
    };
    res.on('close', onClose);
    const stall = (direction: string) => (reason: StallReason) => {
      ctx.errorCode = 'E_CLIENT_TIMEOUT';
      ctx.errorCause = `client ${direction} ${reason}`;
      const error = new ClientStallError(
        `the client stopped ${direction === 'send' ? 'sending' : 'reading'}`,
      );
      cut(error);
      if (res.headersSent) res.destroy(error);
      else {
        res.shouldKeepAlive = false;
        sendJsonError(res, 408, 'E_CLIENT_TIMEOUT', 'The request body stopped arriving.', CLOSE);
      }
    };
    const headers = upstreamRequestHeaders(req, view, preserveHost);
    let requestBody: Dispatcher.DispatchOptions['body'] = null;
    if (body) {
      headers['content-length'] = String(body.written);
      requestBody = body.inMemory() ?? body.stream();
    } else if (hasBody(req)) {
      requestBody = req;
      stops.push(
        watchTransfer({
          progress: () => req.socket?.bytesRead ?? 0,
          gatewayWaiting: () => req.readableLength > 0 || req.isPaused() || req.complete,
          idleMs: receiveIdleMs,
          minRate,
          onStall: stall('send'),
        }),
      );
    }
    try {
      let response: Dispatcher.ResponseData | undefined;
      for (let attempt = 1; response === undefined; attempt++) {
        try {
          response = await dispatcher.request({
            origin,
            path,
            method: method as Dispatcher.HttpMethod,
            headers,
            body: requestBody,
            headersTimeout,
            bodyTimeout,
            signal: controller,
          });
        } catch (error) {
          const retry =
            attempt === 1 &&
            requestBody === null &&
            SAFE_TO_RETRY.has(method) &&
            STALE_SOCKET_CODES.has(codeOf(error));
          if (!retry || controller.aborted) throw error;
        }
      }
      upstreamMs = performance.now() - started;
      ctx.upstreamMs = upstreamMs;
      // Small answers (most of an API's, and error answers sent chunked) are read in one piece:
      // the hook sees them, one write sends them. A larger one streams on from where it got.
      const body = response.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      const length = Number(response.headers['content-length']);
      const head =
        (Number.isFinite(length) && length <= memoryBytes) ||
        (!Number.isFinite(length) && response.statusCode >= 400)
          ? await readUpTo(body, memoryBytes)
          : { chunks: [], done: false };
      const bytes = head.done ? Buffer.concat(head.chunks) : undefined;
      if (head.done) upstreamFinished();
      const verdict = await hook(req, response.statusCode, response.headers as IncomingHttpHeaders, bytes);
      if (isReplacement(verdict)) {
        discard(response.body);
        upstreamFinished();
        ctx.errorCode = verdict.code;
        ctx.errorCause = `upstream answered ${response.statusCode}`;
        sendJsonError(res, verdict.status, verdict.code, verdict.message, verdict.headers, verdict.details);
        return outcome(verdict.status, verdict.code);
      }
      try {
        res.writeHead(response.statusCode, clientResponseHeaders(response.headers as IncomingHttpHeaders));
      } catch (error) {
        // Node refuses a header value the upstream sent: answer 502 instead of half a response.
        discard(response.body);
        throw Object.assign(error as Error, { code: 'UND_ERR_RESPONSE' });
      }
      // A small answer goes to the socket in one write: the slot is already back, and a client that
      // never reads it holds only kernel buffers until its connection times out.
      if (bytes) res.end(bytes);
      else {
        stops.push(
          watchTransfer({
            progress: () => res.socket?.bytesWritten ?? 0,
            gatewayWaiting: () => res.writableLength === 0,
            idleMs: sendIdleMs,
            minRate,
            onStall: stall('read'),
          }),
        );
        await deliver(head.chunks, body, response.body, res, upstreamFinished);
      }
      return outcome(res.statusCode);
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      const reason = controller.reason;
      if (reason instanceof ClientStallError)
        return outcome(res.headersSent ? res.statusCode : 408, 'E_CLIENT_TIMEOUT', reason);
      if (reason instanceof ClientGoneError || res.destroyed)
        return outcome(499, 'E_CLIENT_ABORTED', reason ?? e);
      if (res.headersSent) {
        // The status line is gone already: all that is left is to cut the connection.
        ctx.errorCause = codeOf(e) || e.message;
        res.destroy(e);
        return outcome(res.statusCode, 'E_UPSTREAM_UNAVAILABLE', e);
      }
      const [code, message] = classifyUpstreamError(e);
      ctx.errorCause = codeOf(e) || e.message;
      sendJsonError(res, gatewayErrorStatus[code], code, message);
      return outcome(gatewayErrorStatus[code], code, e);
    } finally {
      upstreamFinished();
      for (const stop of stops) stop();
      res.off('close', onClose);
      void body?.destroy();
    }
  };

  function hook(
    req: IncomingMessage,
    status: number,
    headers: IncomingHttpHeaders,
    body: Buffer | undefined,
  ): Promise<unknown> | undefined {
    let pending: Promise<unknown> | undefined;
    try {
      pending = onResponseStart?.(req, status, headers, body);
    } catch {
      return undefined;
    }
    if (pending === undefined) return undefined;
    return withTimeout(() => pending, hookTimeoutMs).catch(() => undefined);
  }

  /** Upstream body -> spool -> client; `upstreamFinished` once the upstream has sent it all. */
  async function deliver(
    already: readonly Buffer[],
    rest: AsyncIterator<Buffer>,
    upstream: Readable,
    res: ServerResponse,
    upstreamFinished: () => void,
  ): Promise<void> {
    const spool = new Spool(
      buffering
        ? { ...buffering, whenFull: 'wait' }
        : { memoryBytes, maxBytes: memoryBytes, whenFull: 'wait', tempDir: '' },
    );
    const sending = send(spool.stream(), res);
    // Awaited once the upstream is done; a client that goes away meanwhile must not leave it unhandled.
    sending.catch(() => undefined);
    try {
      for (const chunk of already) await spool.write(chunk);
      for (let next = await rest.next(); !next.done; next = await rest.next()) await spool.write(next.value);
      spool.end();
    } catch (error) {
      discard(upstream);
      await spool.destroy();
      await sending.catch(() => undefined);
      throw error;
    }
    upstreamFinished();
    await sending;
  }
}

/**
 * `source` piped into `res`; settles when `res` has finished, rejects (and destroys `source`) when
 * either side fails or the client leaves first. Lighter than `stream.pipeline`, whose end-of-stream
 * watchers put seven `close` listeners on the response (over Node's warning threshold of ten with
 * the gateway's own).
 */
function send(source: Readable, res: ServerResponse): Promise<void> {
  if (res.destroyed || res.closed) {
    source.destroy();
    return Promise.reject(new Error('the client closed the connection'));
  }
  return new Promise((resolve, reject) => {
    const done = (error?: Error): void => {
      res.off('finish', onFinish);
      res.off('close', onClose);
      source.off('error', onError);
      if (!error) {
        resolve();
        return;
      }
      source.unpipe(res);
      source.destroy();
      reject(error);
    };
    const onFinish = (): void => done();
    const onClose = (): void =>
      done(res.writableFinished ? undefined : new Error('the client closed the connection'));
    const onError = (error: Error): void => {
      res.destroy(error);
      done(error);
    };
    res.once('finish', onFinish);
    res.once('close', onClose);
    // Kept after settling: a late write error on the response must not become an uncaught one.
    res.on('error', (error) => done(error));
    source.once('error', onError);
    source.pipe(res);
  });
}
