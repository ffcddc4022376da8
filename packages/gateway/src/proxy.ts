import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { type RequestContext, requestContext } from './context.js';
import { type GatewayErrorCode, gatewayErrorStatus } from './errors.js';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { sendJsonError } from './json-error.js';
import { isMethodToken, isOriginFormTarget } from './request-target.js';

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
  /** HTTP status sent to the client. */
  readonly status: number;
  /** Stable error code of the JSON body. */
  readonly code: GatewayErrorCode;
  /** Human-readable message of the JSON body. */
  readonly message: string;
  /** Extra response headers (e.g. `retry-after`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Extra fields of the JSON body. */
  readonly details?: Readonly<Record<string, unknown>>;
}

function isReplacement(value: unknown): value is ProxyReplacement {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { status?: unknown }).status === 'number' &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/** Options of {@link createProxy}. */
export interface ProxyOptions {
  /** The upstream origin (`http://host:port`). */
  readonly upstream: string;
  /** The undici dispatcher (a Pool or Agent) that holds the keep-alive connections. */
  readonly dispatcher: Dispatcher;
  /** @default false */
  readonly trustProxy?: boolean;
  /** @default true */
  readonly preserveHost?: boolean;
  /** @default 120000 */
  readonly headersTimeoutMs?: number;
  /** @default 300000 */
  readonly bodyTimeoutMs?: number;
  /**
   * Called with the upstream's status and headers before they are sent to the client. When it
   * returns a promise, the response waits for it (at most `hookTimeoutMs`) before anything is
   * sent: the gateway invalidates a logged-out credential this way before the client learns of it.
   * When the promise resolves (in time) with a {@link ProxyReplacement}, the upstream's response
   * is discarded and the replacement is sent instead (the upstream request is aborted unless it
   * already ended, so undici frees or closes its connection).
   */
  readonly onResponseStart?: (
    req: IncomingMessage,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ) => Promise<unknown> | undefined;
  /** @default 1000 */
  readonly hookTimeoutMs?: number;
  /**
   * Longest silence while the client sends its request body (checked only while the proxy is
   * waiting on the client, not while the upstream holds the body back): the upstream request is
   * aborted and the client answered 408 `E_CLIENT_TIMEOUT` (or cut, if the status was sent).
   * @default 30000
   */
  readonly clientBodyTimeoutMs?: number;
}

/** The proxy handler: forwards `req` and streams the answer into `res`; resolves when done. */
export type ProxyHandler = (req: IncomingMessage, res: ServerResponse) => Promise<ProxyOutcome>;

const SAFE_TO_RETRY = new Set(['GET', 'HEAD', 'OPTIONS']);
const STALE_SOCKET_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

class ClientAbortedError extends Error {
  override readonly name = 'ClientAbortedError';
  readonly code = 'E_CLIENT_ABORTED';
}

class ClientBodyTimeoutError extends Error {
  override readonly name = 'ClientBodyTimeoutError';
  readonly code = 'E_CLIENT_TIMEOUT';
}

/** Ended the proxy call before the upstream finished (the dispatch is aborted with it). */
class CallSettledError extends Error {
  override readonly name = 'CallSettledError';
  readonly code = 'E_CALL_SETTLED';
}

function errorCodeOf(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

/** Maps an undici/socket error before response headers to the gateway's answer. */
export function classifyUpstreamError(error: Error): {
  code: GatewayErrorCode;
  status: number;
  message: string;
} {
  const code = errorCodeOf(error);
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return {
      code: 'E_UPSTREAM_TIMEOUT',
      status: gatewayErrorStatus.E_UPSTREAM_TIMEOUT ?? 504,
      message: 'The upstream server did not answer in time.',
    };
  }
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_INVALID_ARG') {
    return { code: 'E_BAD_REQUEST', status: 400, message: 'The request cannot be forwarded as sent.' };
  }
  if (
    code.startsWith('HPE_') ||
    code.startsWith('ERR_INVALID_') ||
    code === 'UND_ERR_HEADERS_OVERFLOW' ||
    code === 'UND_ERR_RESPONSE'
  ) {
    return {
      code: 'E_UPSTREAM_PROTOCOL',
      status: gatewayErrorStatus.E_UPSTREAM_PROTOCOL ?? 502,
      message: 'The upstream server sent an invalid response.',
    };
  }
  return {
    code: 'E_UPSTREAM_UNAVAILABLE',
    status: gatewayErrorStatus.E_UPSTREAM_UNAVAILABLE ?? 502,
    message: 'The upstream server is unavailable.',
  };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

interface ProxySettings {
  readonly origin: string;
  readonly dispatcher: Dispatcher;
  readonly headerOptions: { trustProxy: boolean; preserveHost: boolean };
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  readonly hookTimeoutMs: number;
  readonly clientBodyTimeoutMs: number;
  readonly onResponseStart: ProxyOptions['onResponseStart'];
}

function uncork(res: ServerResponse): void {
  res.uncork();
}

/** Where a response keeps its proxy call, so its listeners are shared functions, not closures per request. */
const kCall: unique symbol = Symbol('sluice.gateway.proxy-call');
type CallResponse = ServerResponse & { [kCall]?: ProxyCall };

function onDrain(this: ServerResponse): void {
  (this as CallResponse)[kCall]?.drained();
}

function onClientClose(this: ServerResponse): void {
  (this as CallResponse)[kCall]?.clientClosed();
}

function onBodyWatch(call: ProxyCall): void {
  call.watchBody();
}

/**
 * One proxied request: the undici dispatch handler, the client-side listeners and the outcome.
 * A class rather than closures, so a request allocates one object instead of a dozen functions.
 */
class ProxyCall implements Dispatcher.DispatchHandler {
  readonly #settings: ProxySettings;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #context: RequestContext;
  readonly #resolve: (outcome: ProxyOutcome) => void;
  readonly #headers: Record<string, string | string[]>;
  readonly #withBody: boolean;
  readonly #method: string;
  readonly #path: string;
  #controller: Dispatcher.DispatchController | undefined;
  #abortReason: Error | undefined;
  #startedAt = 0;
  #upstreamMs: number | undefined;
  #responseStarted = false;
  #settled = false;
  #waitingForDrain = false;
  #attempts = 0;
  // While an onResponseStart promise runs, the head is held back and so is the body.
  #headPending = false;
  #heldChunks: Buffer[] | undefined;
  #endHeld = false;
  #status = 0;
  #statusMessage: string | undefined;
  #upstreamHeaders: IncomingHttpHeaders | undefined;
  // The current undici dispatch ended (response end or error): nothing left to abort.
  #upstreamDone = false;
  // Client body watchdog: bytes read from the client's socket at the last check, and when they last moved.
  #bodyTimer: NodeJS.Timeout | undefined;
  #bodyBytes = -1;
  #bodyProgressAt = 0;

  /** The response's `drain`: the client took what was written, read on. */
  drained(): void {
    this.#waitingForDrain = false;
    this.#controller?.resume();
  }

  /** The response's `close`: before the end was written, the client went away. */
  clientClosed(): void {
    if (this.#res.writableFinished || this.#settled) return;
    this.#abortReason = new ClientAbortedError('the client closed the connection');
    this.#controller?.abort(this.#abortReason);
    this.#settle(499, 'E_CLIENT_ABORTED', this.#abortReason);
  }

  constructor(
    settings: ProxySettings,
    req: IncomingMessage,
    res: ServerResponse,
    resolve: (outcome: ProxyOutcome) => void,
  ) {
    this.#settings = settings;
    this.#req = req;
    this.#res = res;
    this.#resolve = resolve;
    this.#context = requestContext(req);
    const stripped = { identity: 0 };
    this.#headers = upstreamRequestHeaders(req, settings.headerOptions, stripped);
    this.#context.strippedIdentityHeaders += stripped.identity;
    this.#withBody = hasBody(req);
    this.#method = req.method ?? 'GET';
    this.#path = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
    (res as CallResponse)[kCall] = this;
    res.on('close', onClientClose);
  }

  /** Starts the call: refuses what undici would refuse, watches the client's body, dispatches. */
  start(): void {
    // undici throws on a target that is not a path; its Pool then marks the connection it had
    // picked as busy forever. Such requests never reach it.
    if (!isOriginFormTarget(this.#path) || !isMethodToken(this.#method)) {
      this.#context.errorCode = 'E_BAD_REQUEST';
      this.#context.errorCause = 'request target is not a path';
      this.#res.shouldKeepAlive = false;
      sendJsonError(this.#res, 400, 'E_BAD_REQUEST', 'The request target must be a path.', {
        connection: 'close',
      });
      this.#settle(400, 'E_BAD_REQUEST', undefined);
      return;
    }
    if (this.#withBody && !this.#req.complete) {
      this.#bodyProgressAt = performance.now();
      this.#bodyBytes = this.#req.socket?.bytesRead ?? 0;
      this.#scheduleBodyWatch();
    }
    this.dispatch();
  }

  #scheduleBodyWatch(): void {
    const every = Math.max(5, Math.min(1_000, Math.floor(this.#settings.clientBodyTimeoutMs / 4)));
    this.#bodyTimer = setTimeout(onBodyWatch, every, this);
    this.#bodyTimer.unref();
  }

  /** One watchdog tick: the client sent more, the gateway holds data back, or it timed out. */
  watchBody(): void {
    this.#bodyTimer = undefined;
    const req = this.#req;
    if (this.#settled || req.complete) return;
    const bytes = req.socket?.bytesRead ?? 0;
    const at = performance.now();
    // Data buffered and not yet read means the upstream is the slow side, not the client.
    if (bytes !== this.#bodyBytes || req.readableLength > 0 || req.isPaused()) {
      this.#bodyBytes = bytes;
      this.#bodyProgressAt = at;
    } else if (at - this.#bodyProgressAt >= this.#settings.clientBodyTimeoutMs) {
      this.#bodyTimedOut();
      return;
    }
    this.#scheduleBodyWatch();
  }

  #bodyTimedOut(): void {
    const res = this.#res;
    const error = new ClientBodyTimeoutError(
      `the client sent nothing of its request body for ${this.#settings.clientBodyTimeoutMs} ms`,
    );
    this.#abortReason = error;
    this.#context.errorCode = 'E_CLIENT_TIMEOUT';
    this.#context.errorCause = 'client body idle';
    let status = 408;
    res.shouldKeepAlive = false;
    if (res.headersSent) {
      status = res.statusCode;
      res.destroy(error);
    } else {
      sendJsonError(res, 408, 'E_CLIENT_TIMEOUT', 'The request body stopped arriving.', {
        connection: 'close',
      });
    }
    this.#settle(status, 'E_CLIENT_TIMEOUT', error);
  }

  dispatch(): void {
    this.#attempts += 1;
    this.#controller = undefined;
    this.#upstreamDone = false;
    this.#startedAt = performance.now();
    const s = this.#settings;
    try {
      s.dispatcher.dispatch(
        {
          origin: s.origin,
          path: this.#path,
          method: this.#method,
          headers: this.#headers,
          body: this.#withBody ? this.#req : null,
          headersTimeout: s.headersTimeout,
          bodyTimeout: s.bodyTimeout,
        },
        this,
      );
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortReason) controller.abort(this.#abortReason);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return;
    this.#responseStarted = true;
    this.#upstreamMs = performance.now() - this.#startedAt;
    this.#context.upstreamMs = this.#upstreamMs;
    this.#status = statusCode;
    this.#statusMessage = statusMessage;
    this.#upstreamHeaders = headers;
    let pending: Promise<unknown> | undefined;
    try {
      pending = this.#settings.onResponseStart?.(this.#req, statusCode, headers);
    } catch {
      pending = undefined;
    }
    if (pending === undefined || typeof pending.then !== 'function') {
      this.#writeHead(controller);
      return;
    }
    this.#headPending = true;
    controller.pause();
    let timer: NodeJS.Timeout | undefined;
    const bounded = new Promise<unknown>((resolve) => {
      timer = setTimeout(resolve, this.#settings.hookTimeoutMs);
      timer.unref();
      pending.then(
        (value) => resolve(value),
        () => resolve(undefined),
      );
    });
    void bounded.then((verdict) => {
      clearTimeout(timer);
      this.#headPending = false;
      if (this.#settled || this.#abortReason) return;
      if (isReplacement(verdict)) {
        this.#replace(verdict);
        return;
      }
      if (!this.#writeHead(controller)) return;
      const chunks = this.#heldChunks ?? [];
      this.#heldChunks = undefined;
      for (const chunk of chunks) this.onResponseData(controller, chunk);
      if (this.#endHeld) this.onResponseEnd();
      else if (!this.#waitingForDrain) controller.resume();
    });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    if (this.#headPending) {
      if (this.#heldChunks === undefined) this.#heldChunks = [];
      this.#heldChunks.push(chunk);
      return;
    }
    if (!this.#res.write(chunk) && !this.#waitingForDrain) {
      this.#waitingForDrain = true;
      controller.pause();
      this.#res.once('drain', onDrain);
    }
  }

  onResponseEnd(): void {
    this.#upstreamDone = true;
    if (this.#headPending) {
      this.#endHeld = true;
      return;
    }
    this.#res.end();
    this.#settle(this.#res.statusCode, undefined, undefined);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#upstreamDone = true;
    this.#fail(error);
  }

  /** Sends the status line and headers; corked until the next tick so a small body goes out in the same write. */
  #writeHead(controller: Dispatcher.DispatchController): boolean {
    const res = this.#res;
    try {
      const outgoing = clientResponseHeaders(this.#upstreamHeaders ?? {});
      if (this.#statusMessage) res.writeHead(this.#status, this.#statusMessage, outgoing);
      else res.writeHead(this.#status, outgoing);
    } catch (error) {
      // Node refuses a header value the upstream sent: answer 502 instead of half a response.
      controller.abort(error instanceof Error ? error : new Error(String(error)));
      return false;
    }
    res.cork();
    process.nextTick(uncork, res);
    return true;
  }

  /** Answers `replacement` instead of the upstream's response, whose body is dropped. */
  #replace(replacement: ProxyReplacement): void {
    this.#heldChunks = undefined;
    this.#endHeld = false;
    this.#context.errorCode = replacement.code;
    this.#context.errorCause = `upstream answered ${this.#status}`;
    sendJsonError(
      this.#res,
      replacement.status,
      replacement.code,
      replacement.message,
      replacement.headers,
      replacement.details,
    );
    // #settle aborts the dispatch if the upstream body is still coming: undici closes that connection.
    this.#settle(replacement.status, replacement.code, undefined);
  }

  #fail(error: Error): void {
    const res = this.#res;
    const req = this.#req;
    if (
      this.#abortReason ||
      this.#settled ||
      res.destroyed ||
      (this.#withBody && req.destroyed && !req.complete)
    ) {
      this.#settle(499, 'E_CLIENT_ABORTED', this.#abortReason ?? error);
      return;
    }
    if (res.headersSent) {
      // The status line is gone already: all that is left is to cut the connection.
      this.#context.errorCode = 'E_UPSTREAM_UNAVAILABLE';
      this.#context.errorCause = errorCodeOf(error) || error.message;
      res.destroy(error);
      this.#settle(res.statusCode, 'E_UPSTREAM_UNAVAILABLE', error);
      return;
    }
    const code = errorCodeOf(error);
    if (
      !this.#responseStarted &&
      this.#attempts === 1 &&
      !this.#withBody &&
      SAFE_TO_RETRY.has(this.#method) &&
      STALE_SOCKET_CODES.has(code)
    ) {
      this.dispatch();
      return;
    }
    const answer = classifyUpstreamError(error);
    this.#context.errorCode = answer.code;
    this.#context.errorCause = code || error.message;
    sendJsonError(res, answer.status, answer.code, answer.message);
    this.#settle(answer.status, answer.code, error);
  }

  #settle(status: number, errorCode: ProxyOutcome['errorCode'], error: Error | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#bodyTimer !== undefined) {
      clearTimeout(this.#bodyTimer);
      this.#bodyTimer = undefined;
    }
    // Whatever ended the call, an unfinished dispatch is aborted so undici frees its connection.
    const controller = this.#controller;
    if (controller !== undefined && !this.#upstreamDone && !controller.aborted) {
      this.#upstreamDone = true;
      controller.abort(this.#abortReason ?? error ?? new CallSettledError('the proxy call ended early'));
    }
    if (errorCode) this.#context.errorCode = errorCode;
    this.#res.off('close', onClientClose);
    this.#res.off('drain', onDrain);
    this.#resolve({ status, upstreamMs: this.#upstreamMs, errorCode, error });
  }
}

/**
 * Builds the streaming reverse proxy. Request and response bodies flow through with
 * backpressure (the upstream read pauses while the client's socket is full, and the client's
 * upload is read only as fast as the upstream takes it), so memory stays bounded whatever the
 * size. Hop-by-hop and identity headers are removed and X-Forwarded-* set. A client that goes
 * away aborts the upstream request. Errors before the upstream's headers become a JSON answer
 * (502, or 504 on a headers timeout); errors after them cut the client connection, as the
 * status is already sent. A GET/HEAD/OPTIONS that fails on a stale keep-alive socket is retried
 * once.
 *
 * @example
 * ```ts
 * const proxy = createProxy({ upstream: 'http://127.0.0.1:8080', dispatcher: new Pool(origin) });
 * app.use((req, res) => void proxy(req, res));
 * ```
 */
export function createProxy(options: ProxyOptions): ProxyHandler {
  const settings: ProxySettings = {
    origin: new URL(options.upstream).origin,
    dispatcher: options.dispatcher,
    headerOptions: { trustProxy: options.trustProxy ?? false, preserveHost: options.preserveHost ?? true },
    headersTimeout: options.headersTimeoutMs ?? 120_000,
    bodyTimeout: options.bodyTimeoutMs ?? 300_000,
    hookTimeoutMs: options.hookTimeoutMs ?? 1_000,
    clientBodyTimeoutMs: options.clientBodyTimeoutMs ?? 30_000,
    onResponseStart: options.onResponseStart,
  };
  return function proxy(req, res) {
    return new Promise<ProxyOutcome>((resolve) => {
      new ProxyCall(settings, req, res, resolve).start();
    });
  };
}
