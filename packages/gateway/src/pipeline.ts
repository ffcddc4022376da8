// The request pipeline: what happens to one request, in order. The edge decides on the request
// (canonical path, Host, client; refused when ambiguous); the gateway's health endpoint answers;
// identity headers go; the credential is validated where the path needs one (the session cache);
// the body is received in full; a slot is taken (admission by class and client); the proxy
// forwards it and gives the slot back once the upstream has answered. It also keeps the
// per-request figures the status page and metrics read.
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { admission } from '@sluice/admission';
import { extractCredentials } from '@sluice/django';
import { pathMatcher, type TypedEvents } from '@sluice/kit';
import { type SluiceContext, sessionCache } from '@sluice/session-cache';
import type { Activity, Seat } from './activity/activity.js';
import type { GatewayConfig } from './config/settings.js';
import { type RequestContext, requestContext } from './context.js';
import {
  CVAT_LOGOUT_PATH,
  CVAT_PASSWORD_CHANGE_PATH,
  type RequestClass,
  type RequestClassifier,
} from './cvat-profile.js';
import { inspectRequest, proxyAddresses } from './edge.js';
import { isIdentityHeader } from './headers.js';
import { CLOSE, sendJsonError } from './json-error.js';
import type { GatewayLogger } from './logger.js';
import type { GatewayMetrics } from './metrics.js';
import type { GatewayEvents, GatewayParts } from './parts.js';
import { createProxy, type ProxyReplacement } from './proxy/forward.js';
import { BodyError, declaredTooLarge, hasBody, receiveBody } from './proxy/request-body.js';
import type { Spool } from './proxy/spool.js';

/** One line of the access log (what `request` events carry). Never holds a credential. */
export interface AccessLogEntry {
  readonly reqId: string;
  /** The upstream's own request id (its `X-Request-Id` answer header), to find its log lines. */
  readonly upstreamReqId: string | undefined;
  readonly method: string;
  /** The path with ids replaced by `:id`; the query string is never logged. */
  readonly route: string;
  readonly status: number;
  readonly class: RequestClass | 'gateway';
  readonly queueWaitMs: number | undefined;
  readonly upstreamMs: number | undefined;
  readonly cacheTier: string | undefined;
  readonly durationMs: number;
  readonly userId: number | undefined;
  readonly client: string;
  readonly error: string | undefined;
  /** The underlying error's code (`ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`, ...), if any. */
  readonly cause: string | undefined;
}

/**
 * `node:diagnostics_channel` channel `sluice:gateway:request`: one message per finished request,
 * the {@link AccessLogEntry}.
 */
export const gatewayChannels = {
  request: diagnosticsChannel.channel('sluice:gateway:request'),
} as const;

/** A request as the Sluice middleware leave it (`req.sluice` set by the session cache). */
type SluiceRequest = IncomingMessage & { sluice?: SluiceContext };
/** A continuation: called with an error, or with nothing to go on. */
type Next = (error?: unknown) => void;

/** The request pipeline of a gateway. */
export type Pipeline = ReturnType<typeof createPipeline>;

/** What the pipeline needs from the gateway around it. */
export interface PipelineOptions {
  readonly config: GatewayConfig;
  readonly parts: GatewayParts;
  readonly logger: GatewayLogger;
  readonly metrics: GatewayMetrics;
  readonly events: TypedEvents<GatewayEvents>;
  /** Who holds slots and who waits (the status page's figures). */
  readonly activity: Activity;
  readonly classify: RequestClassifier;
  /** Whether the gateway still takes requests. */
  readonly running: () => boolean;
  /** Called when a request ends while the gateway drains. */
  readonly onIdleWhileDraining: () => void;
  /** The public port's own endpoints (`/healthz`): true when it answered. */
  readonly serveOwn: (pathname: string, req: IncomingMessage, res: ServerResponse) => boolean;
}

/** DRF's answer when no credential was accepted, and the header it sends with it (CVAT's first authenticator is `Token`). */
const NOT_PROVIDED = 'Authentication credentials were not provided.';
const UNAUTHENTICATED_HEADERS = { 'www-authenticate': 'Token' } as const;
const INVALID_DETAIL: Readonly<Record<string, string>> = {
  token: 'Invalid token.',
  bearer: 'Invalid token.',
  basic: 'Invalid username/password.',
};

/** Sends `100 Continue` when the client waits for it (the server leaves that to the gateway). */
function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
  const expect = req.headers.expect;
  if (typeof expect === 'string' && expect.toLowerCase() === '100-continue' && !res.headersSent)
    res.writeContinue();
}

/** A CORS preflight: answered by the upstream's CORS middleware, never with a credential. */
function isPreflight(req: IncomingMessage): boolean {
  return req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
}

/** True when `path` is `endpoint`, with or without a trailing slash. */
const isEndpoint = (path: string, endpoint: string): boolean => path === endpoint || path === `${endpoint}/`;

/** One decimal place (for the access log). */
const tenth = (ms: number | undefined): number | undefined =>
  ms === undefined ? undefined : Math.round(ms * 10) / 10;

/** The `detail` of a small JSON error body, if it has one. */
function detailOf(body: Buffer | undefined): string | undefined {
  if (!body || body.length > 4096) return undefined;
  try {
    const detail = (JSON.parse(body.toString('utf8')) as { detail?: unknown }).detail;
    return typeof detail === 'string' ? detail : undefined;
  } catch {
    return undefined;
  }
}

/** Builds the pipeline. */
export function createPipeline(o: PipelineOptions) {
  const { config, parts, logger, metrics, events } = o;
  const { cache, databaseHealth } = parts;
  const publicPaths = pathMatcher(config.publicPaths, 'publicPaths');
  const protectedPaths = pathMatcher(config.protectedPaths, 'protectedPaths');
  const trusted = proxyAddresses(config.trustProxy);
  const credentialOptions = { cookieName: config.sessionCookieName, maxHeaderBytes: 32 * 1024 };
  /** `Retry-After` of `E_DATABASE_UNAVAILABLE`: about one probe interval, at least 1 s. */
  const databaseRetryAfterSeconds = Math.max(1, Math.ceil(config.databaseProbeIntervalMs / 1000));
  /** The answer while the database is down, up front or in place of an upstream 5xx. */
  const databaseUnavailable = {
    status: 503,
    code: 'E_DATABASE_UNAVAILABLE',
    message: 'The database is unreachable; retry shortly.',
    headers: { 'retry-after': String(databaseRetryAfterSeconds) },
    details: { retryAfterSeconds: databaseRetryAfterSeconds },
  } as const satisfies ProxyReplacement;
  const bodyLimits = {
    memoryBytes: config.bufferMemory,
    maxBytes: config.maxBodySize,
    tempDir: config.tempDir,
    idleMs: config.clientBodyTimeoutMs,
    minRate: config.clientMinRate,
  };

  const tally = {
    total: 0,
    byClass: { interactive: 0, bulk: 0, gateway: 0 } as Record<RequestClass | 'gateway', number>,
    byStatus: {} as Record<string, number>,
    upstreamErrors: 0,
    rejected: 0,
  };
  let active = 0;
  const idleWaiters = new Set<(idle: boolean) => void>();

  // The gateway answers 401 itself (DRF's shape), so the middleware only records what it found.
  const cacheMiddleware = sessionCache({
    cache,
    cookieName: config.sessionCookieName,
    maxHeaderBytes: credentialOptions.maxHeaderBytes,
    onUnauthenticated: 'next',
  });
  const admissionMiddleware = admission({
    gate: parts.gate,
    breaker: parts.breaker,
    shedStatus: config.shedStatus === 503 ? 503 : 429,
    // Bulk clients (export scripts) often do not retry: they wait out a short upstream outage.
    openCircuitWaitMs: { bulk: config.bulkQueueTimeoutMs },
    // A database outage is the database guard's business: the breaker judges the upstream only.
    isFailure: (status, res) =>
      status >= 500 && requestContext(res.req).errorCode !== 'E_DATABASE_UNAVAILABLE',
    classify: (req) => (requestContext(req).requestClass === 'bulk' ? 'bulk' : 'interactive'),
    key: (req) => {
      const identity = (req as SluiceRequest).sluice?.identity;
      return identity ? `user:${identity.userId}` : `ip:${requestContext(req).client}`;
    },
  });
  admissionMiddleware.on('reject', ({ code, res }) => {
    if (code === 'E_ABORTED') return;
    requestContext(res.req).errorCode = code;
    tally.rejected += 1;
    metrics.rejected(code);
  });

  /** Answers 503 `E_DATABASE_UNAVAILABLE` when the database is known down; true when it did. */
  function refuseWhileDatabaseDown(res: ServerResponse, ctx: RequestContext): boolean {
    if (databaseHealth?.state !== 'down') return false;
    const d = databaseUnavailable;
    ctx.errorCode = d.code;
    sendJsonError(res, d.status, d.code, d.message, d.headers, d.details);
    return true;
  }

  /** Evicts the credential of `req`; with `revalidate`, validates it again (cached if it holds). */
  async function recheck(req: SluiceRequest, revalidate: boolean): Promise<void> {
    await cache.invalidateRequest(req);
    if (!revalidate) return;
    const kind = req.sluice?.identity?.credentialKind;
    const credential = extractCredentials(req.headers, credentialOptions).find((c) => c.kind === kind);
    if (credential && credential.kind !== 'malformed') await cache.lookup(credential);
  }

  /** After a 2xx logout or password change, every credential of the user the caches know goes. */
  async function forgetUser(req: SluiceRequest): Promise<void> {
    try {
      const identity = req.sluice?.identity;
      if (identity) await cache.invalidateUser(identity.userId);
      else await cache.invalidateRequest(req);
    } catch (error) {
      logger.warn({ err: error }, 'could not invalidate the credentials of a logged-out user');
    }
  }

  const proxy = createProxy({
    upstream: config.upstream,
    dispatcher: parts.dispatcher,
    preserveHost: config.preserveHost,
    headersTimeoutMs: config.upstreamHeadersTimeoutMs,
    bodyTimeoutMs: config.upstreamBodyTimeoutMs,
    clientBodyTimeoutMs: config.clientBodyTimeoutMs,
    clientSendTimeoutMs: config.clientSendTimeoutMs,
    clientMinRate: config.clientMinRate,
    responseBuffering: config.responseBuffering
      ? { memoryBytes: config.bufferMemory, maxBytes: config.maxResponseBuffer, tempDir: config.tempDir }
      : false,
    // The upstream is done with the request: its slot goes back, whatever the client still reads.
    onUpstreamDone: (req) => requestContext(req).releaseSlot?.(),
    onResponseStart(req, statusCode, headers, body) {
      const r = req as SluiceRequest;
      const ctx = requestContext(req);
      const upstreamId = headers['x-request-id'];
      if (typeof upstreamId === 'string') ctx.upstreamRequestId = upstreamId.slice(0, 128);
      // A 5xx may be the upstream failing on its database: check it (at most once per probe interval).
      if (statusCode >= 500 && databaseHealth) {
        const error = new Error(`upstream answered ${statusCode}`);
        if (statusCode <= 504 && ctx.needsDatabase) {
          // The database may have died under this very request: wait for the verdict (the proxy
          // bounds the wait) and answer as the up-front guard would if it is down.
          return databaseHealth
            .check(error)
            .then((verdict) => (verdict === 'down' ? databaseUnavailable : undefined));
        }
        databaseHealth.suspect(error);
      }
      // The upstream refused a credential the cache called valid: forget it. DRF's "not provided"
      // is ambiguous (a session Django no longer has, or a view that takes another kind of
      // credential: a session on /api/auth/access_tokens/self, a Bearer token on a password
      // change): then the credential is validated again, and stays cached if it still holds.
      if (statusCode === 401 && r.sluice?.identity) {
        return recheck(r, detailOf(body) === NOT_PROVIDED).catch((error: unknown) => {
          logger.warn({ err: error }, 'could not evict a credential the upstream refused');
        });
      }
      const path = ctx.edge?.path ?? '';
      const credentialsChanged =
        isEndpoint(path, CVAT_LOGOUT_PATH) || isEndpoint(path, CVAT_PASSWORD_CHANGE_PATH);
      if (statusCode >= 200 && statusCode < 300 && req.method === 'POST' && credentialsChanged)
        return forgetUser(r);
      return undefined;
    },
  });

  /** Counts, logs and publishes a request that ended; `tracked`: it counted as active. */
  function finishRequest(req: IncomingMessage, res: ServerResponse, tracked: boolean): void {
    const ctx = requestContext(req);
    const durationMs = performance.now() - ctx.startedAt;
    const aborted = !res.writableFinished;
    const status = aborted && !res.headersSent ? 499 : res.statusCode;
    const sluice = (req as SluiceRequest).sluice;
    const entry: AccessLogEntry = {
      reqId: ctx.id,
      upstreamReqId: ctx.upstreamRequestId,
      method: req.method ?? 'GET',
      route: ctx.route,
      status,
      class: ctx.requestClass,
      queueWaitMs: tenth(ctx.queueWaitMs),
      upstreamMs: tenth(ctx.upstreamMs),
      cacheTier: sluice?.cache?.tier === 'none' ? ctx.cacheTier : (sluice?.cache?.tier ?? ctx.cacheTier),
      durationMs: tenth(durationMs) ?? 0,
      userId: sluice?.identity?.userId,
      client: ctx.client,
      error: ctx.errorCode ?? (aborted ? 'E_CLIENT_ABORTED' : undefined),
      cause: ctx.errorCause,
    };
    tally.total += 1;
    tally.byClass[ctx.requestClass] += 1;
    const sc = `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx`; // 499 counts as 4xx
    tally.byStatus[sc] = (tally.byStatus[sc] ?? 0) + 1;
    if (ctx.errorCode?.startsWith('E_UPSTREAM_')) tally.upstreamErrors += 1;
    metrics.observe(ctx, status, durationMs);
    if (ctx.requestClass !== 'gateway' || logger.isLevelEnabled('debug')) {
      logger[status >= 500 ? 'warn' : ctx.requestClass === 'gateway' ? 'debug' : 'info'](entry, 'request');
    }
    if (gatewayChannels.request.hasSubscribers) gatewayChannels.request.publish(entry);
    events.emit('request', entry);
    if (tracked) {
      active -= 1;
      if (active === 0) for (const wake of [...idleWaiters]) wake(true);
      if (!o.running()) o.onIdleWhileDraining();
    }
  }

  /** Answers a body the gateway would not take (413, 408) and closes the connection; nothing for a client gone. */
  function refuseBody(res: ServerResponse, ctx: RequestContext, error: BodyError): void {
    ctx.errorCode = error.code;
    if (error.code === 'E_CLIENT_ABORTED') return;
    ctx.errorCause = error.message;
    res.shouldKeepAlive = false;
    const tooLarge = `The request body is larger than ${config.maxBodySize} bytes.`;
    if (error.code === 'E_BODY_TOO_LARGE') sendJsonError(res, 413, error.code, tooLarge, CLOSE);
    else if (res.headersSent) res.destroy();
    else sendJsonError(res, 408, 'E_CLIENT_TIMEOUT', 'The request body stopped arriving.', CLOSE);
  }

  /** DRF's 401: `{ detail }` and `WWW-Authenticate`. */
  function unauthenticated(res: ServerResponse, ctx: RequestContext, detail: string): void {
    ctx.errorCode = 'E_UNAUTHENTICATED';
    sendJsonError(res, 401, 'E_UNAUTHENTICATED', detail, UNAUTHENTICATED_HEADERS);
  }

  function pipeline(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = requestContext(req);
    const view = inspectRequest(req, config.trustProxy, trusted);
    if ('refused' in view) {
      // Answered at the edge, with no slot involved, and the connection closed.
      ctx.client = ctx.client || (req.socket?.remoteAddress ?? '');
      ctx.requestClass = 'gateway';
      ctx.errorCode = 'E_BAD_REQUEST';
      res.once('close', () => finishRequest(req, res, false));
      res.shouldKeepAlive = false;
      sendJsonError(res, 400, 'E_BAD_REQUEST', view.refused, CLOSE);
      return;
    }
    ctx.client = view.client;
    ctx.edge = view;
    if (o.serveOwn(view.path, req, res)) {
      ctx.requestClass = 'gateway';
      res.once('close', () => finishRequest(req, res, false));
      return;
    }
    const headers: IncomingHttpHeaders = req.headers;
    for (const name in headers) {
      if (isIdentityHeader(name)) {
        delete headers[name];
        ctx.strippedIdentityHeaders += 1;
      }
    }
    const requestClass = o.classify({
      method: req.method ?? 'GET',
      pathname: view.path,
      search: view.search,
      headers,
    });
    ctx.requestClass = requestClass;
    let seat: Seat | undefined;
    active += 1;
    res.once('close', () => {
      seat?.left();
      ctx.releaseSlot = undefined;
      finishRequest(req, res, true);
    });
    if (!o.running()) {
      ctx.errorCode = 'E_SHUTTING_DOWN';
      res.shouldKeepAlive = false;
      const message = 'The gateway is shutting down; retry shortly.';
      sendJsonError(res, 503, 'E_SHUTTING_DOWN', message, { 'retry-after': '1', ...CLOSE });
      return;
    }

    const path = view.path;
    const api = path.startsWith('/api/');
    const open = !api || isPreflight(req) || publicPaths.matches(path);
    ctx.needsDatabase = api && !open;
    const bufferBody = config.requestBuffering && hasBody(req);
    let spool: Spool | undefined;

    const admit = (): void => {
      const identity = (req as SluiceRequest).sluice?.identity;
      seat = o.activity.seat(requestClass, identity?.userId, identity?.username, ctx.client);
      const queuedAt = performance.now();
      admissionMiddleware(req, res, (admitError?: unknown) => {
        if (seat?.admitted()) {
          ctx.releaseSlot = () => {
            ctx.releaseSlot = undefined;
            if (seat?.left()) admissionMiddleware.release(res);
          };
        }
        if (admitError !== undefined) {
          next(admitError);
          return;
        }
        ctx.queueWaitMs = performance.now() - queuedAt;
        // The database may have gone while the request was queued.
        if (ctx.needsDatabase && refuseWhileDatabaseDown(res, ctx)) return;
        if (!o.running()) res.shouldKeepAlive = false;
        if (!bufferBody) continueIfExpected(req, res);
        proxy(req, res, spool).then((outcome) => {
          if (outcome.error && outcome.errorCode !== 'E_CLIENT_ABORTED') {
            logger.debug(
              { reqId: ctx.id, route: ctx.route, code: outcome.errorCode, cause: ctx.errorCause },
              'upstream request failed',
            );
          }
        }, next);
      });
    };

    const receive = (): void => {
      if (!bufferBody) {
        admit();
        return;
      }
      if (declaredTooLarge(req, config.maxBodySize)) {
        refuseBody(res, ctx, new BodyError('E_BODY_TOO_LARGE', 'declared too large'));
        return;
      }
      // Only now, with the credential checked, does the client get to send its body.
      continueIfExpected(req, res);
      receiveBody(req, bodyLimits).then(
        (received) => {
          if (res.destroyed) {
            void received.destroy();
            return;
          }
          spool = received;
          admit();
        },
        (error: unknown) => {
          if (error instanceof BodyError) refuseBody(res, ctx, error);
          else next(error);
        },
      );
    };

    if (open) {
      ctx.cacheTier = 'public';
      // Logout is public (CVAT answers it even for an expired session), but who logs out matters:
      // every credential of that user is forgotten once it succeeds.
      if (isEndpoint(path, CVAT_LOGOUT_PATH) && extractCredentials(headers, credentialOptions).length > 0) {
        cacheMiddleware(req, res, (error?: unknown) => (error === undefined ? receive() : next(error)));
        return;
      }
      receive();
      return;
    }
    if (refuseWhileDatabaseDown(res, ctx)) return;
    if (extractCredentials(headers, credentialOptions).length === 0) {
      if (protectedPaths.matches(path) || config.anonymous === 'reject') {
        ctx.cacheTier = 'none';
        unauthenticated(res, ctx, NOT_PROVIDED);
        return;
      }
      // A path the gateway is not sure about: the upstream answers an anonymous request itself.
      ctx.cacheTier = 'anonymous';
      receive();
      return;
    }
    // The middleware records the tier that answered as `req.sluice.cache` (read when the request ends).
    ctx.cacheTier = 'none';
    cacheMiddleware(req, res, (error?: unknown) => {
      if (error !== undefined) {
        next(error);
        return;
      }
      const sluice = (req as SluiceRequest).sluice;
      if (sluice?.identity) {
        receive();
        return;
      }
      if (res.headersSent) return; // the middleware answered (503 while the validator is down)
      const kind = sluice?.cache?.kind;
      unauthenticated(res, ctx, (kind && INVALID_DETAIL[kind]) ?? NOT_PROVIDED);
    });
  }

  function gatewayError(error: unknown, req: IncomingMessage, res: ServerResponse): void {
    const ctx = requestContext(req);
    ctx.errorCode = 'E_INTERNAL';
    logger.error({ reqId: ctx.id, err: error }, 'gateway error');
    if (res.headersSent) res.destroy();
    else sendJsonError(res, 500, 'E_INTERNAL', 'The gateway failed to handle the request.');
  }

  return {
    /** Handles one request (a Node `request` listener). */
    handle(req: IncomingMessage, res: ServerResponse): void {
      try {
        pipeline(req, res, (error?: unknown) => {
          if (error !== undefined) gatewayError(error, req, res);
        });
      } catch (error) {
        gatewayError(error, req, res);
      }
    },
    /** Requests being handled now (not the gateway's own endpoints). */
    get active() {
      return active;
    },
    admission: admissionMiddleware,
    /** Live per-request figures since start: request counters and rejections. */
    counts: () => structuredClone(tally),
    /** Resolves true when no request is active, false after `graceMs`. */
    waitForIdle(graceMs: number): Promise<boolean> {
      if (active === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const wake = (idle: boolean): void => {
          clearTimeout(timer);
          idleWaiters.delete(wake);
          resolve(idle);
        };
        const timer = setTimeout(wake, graceMs, false);
        idleWaiters.add(wake);
      });
    },
    /** Stops admitting: queued requests are answered at once. */
    async close() {
      await Promise.allSettled([admissionMiddleware.close(), cacheMiddleware.close()]);
    },
  };
}
