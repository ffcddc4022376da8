// The request pipeline: what happens to one request, in order: the target is checked, the
// gateway's own endpoints answered, identity headers stripped, the credential validated (the
// session cache, on paths that need the database), a slot taken (admission by class and client),
// then the proxy. It also keeps the per-request figures the status page and metrics read.
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AdmissionMiddleware, admission } from '@sluice/admission';
import { extractCredential } from '@sluice/django';
import type { TypedEvents } from '@sluice/kit';
import { pathMatcher } from '@sluice/kit';
import { type SessionCacheMiddleware, type SluiceContext, sessionCache } from '@sluice/session-cache';
import type { GatewayConfig } from './config/settings.js';
import { type RequestContext, requestContext } from './context.js';
import { clientAddress, isIdentityHeader } from './headers.js';
import { sendJsonError } from './json-error.js';
import type { GatewayLogger } from './logger.js';
import type { GatewayMetrics } from './metrics.js';
import type { GatewayEvents, GatewayParts } from './parts.js';
import { createProxy, type ProxyReplacement } from './proxy/forward.js';
import { BodyError, declaredTooLarge, hasBody, receiveBody } from './proxy/request-body.js';
import type { Spool } from './proxy/spool.js';
import type { RequestClass, RequestClassifier } from './request-class.js';
import { canonicalPath, isOriginFormTarget } from './request-target.js';

/** CVAT's logout endpoint: a 2xx answer to a POST there invalidates the request's credential. */
export const CVAT_LOGOUT_PATH = '/api/auth/logout';

/** One line of the access log (what `request` events carry). Never holds a credential. */
export interface AccessLogEntry {
  readonly reqId: string;
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

/** Live per-request figures since start. */
export interface PipelineCounts {
  readonly byClassNow: Record<RequestClass, { inFlight: number; queued: number }>;
  readonly total: number;
  readonly byClass: Record<RequestClass | 'gateway', number>;
  readonly byStatus: Record<string, number>;
  readonly upstreamErrors: number;
  readonly rejected: number;
}

/** The request pipeline of a gateway. */
export interface Pipeline {
  /** Handles one request (a Node `request` listener). */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Requests being handled now (not the gateway's own endpoints). */
  readonly active: number;
  readonly admission: AdmissionMiddleware;
  readonly cacheMiddleware: SessionCacheMiddleware;
  counts(): PipelineCounts;
  /** Resolves true when no request is active, false after `graceMs`. */
  waitForIdle(graceMs: number): Promise<boolean>;
  /** Stops admitting: queued requests are answered 503 at once. */
  close(): Promise<void>;
}

/** What the pipeline needs from the gateway around it. */
export interface PipelineOptions {
  readonly config: GatewayConfig;
  readonly parts: GatewayParts;
  readonly logger: GatewayLogger;
  readonly metrics: GatewayMetrics;
  readonly events: TypedEvents<GatewayEvents>;
  readonly classify: RequestClassifier;
  /** Whether the gateway still takes requests (`running`), and the server to nudge while draining. */
  readonly running: () => boolean;
  readonly onIdleWhileDraining: () => void;
  /** The gateway's own endpoints: true when it answered `pathname`. */
  readonly serveOwn: (pathname: string, req: IncomingMessage, res: ServerResponse, next: Next) => boolean;
}

/** Sends `100 Continue` when the client waits for it (the server leaves that to the gateway). */
function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
  const expect = req.headers.expect;
  if (typeof expect === 'string' && expect.toLowerCase() === '100-continue' && !res.headersSent)
    res.writeContinue();
}

/** Classifies the status for counters: '2xx' ... '5xx' (499 counts as '4xx'). */
function statusClass(status: number): string {
  return `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx`;
}

/** Builds the pipeline. */
export function createPipeline(o: PipelineOptions): Pipeline {
  const { config, parts, logger, metrics, events } = o;
  const { cache, databaseHealth } = parts;
  const publicPaths = pathMatcher(config.publicPaths);
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

  const byClassNow: PipelineCounts['byClassNow'] = {
    interactive: { inFlight: 0, queued: 0 },
    bulk: { inFlight: 0, queued: 0 },
  };
  const tally = {
    total: 0,
    byClass: { interactive: 0, bulk: 0, gateway: 0 } as Record<RequestClass | 'gateway', number>,
    byStatus: {} as Record<string, number>,
    upstreamErrors: 0,
    rejected: 0,
  };
  let active = 0;
  const idleWaiters = new Set<() => void>();

  const cacheMiddleware = sessionCache({ cache, cookieName: config.sessionCookieName });
  const admissionMiddleware = admission({
    gate: parts.gate,
    breaker: parts.breaker,
    classify: (req) => (requestContext(req).requestClass === 'bulk' ? 'bulk' : 'interactive'),
    key: (req) => {
      const identity = (req as SluiceRequest).sluice?.identity;
      return identity ? `user:${identity.userId}` : `ip:${requestContext(req).client}`;
    },
  });
  admissionMiddleware.on('reject', ({ code }) => {
    if (code === 'E_ABORTED') return;
    tally.rejected += 1;
    metrics.rejected(code);
  });

  /** Whether the upstream needs its database to answer `pathname`: `/api/*` except public paths. */
  function needsDatabase(pathname: string): boolean {
    if (!pathname.startsWith('/api/')) return false;
    const path = canonicalPath(pathname);
    return !(path !== undefined && publicPaths.matches(path));
  }

  /** Answers 503 `E_DATABASE_UNAVAILABLE` when the database is known down; true when it did. */
  function refuseWhileDatabaseDown(res: ServerResponse, ctx: RequestContext): boolean {
    if (databaseHealth?.state !== 'down') return false;
    ctx.errorCode = databaseUnavailable.code;
    const d = databaseUnavailable;
    sendJsonError(res, d.status, d.code, d.message, d.headers, d.details);
    return true;
  }

  async function invalidateLogout(req: SluiceRequest): Promise<void> {
    try {
      const done = await cache.invalidateRequest(req);
      if (done) return;
      const credential = extractCredential(req.headers, { cookieName: config.sessionCookieName });
      if (credential !== null && credential.kind !== 'malformed') await cache.invalidate(credential);
    } catch (error) {
      logger.warn({ err: error }, 'could not invalidate a logged-out credential');
    }
  }

  const proxy = createProxy({
    upstream: config.upstream,
    dispatcher: parts.dispatcher,
    trustProxy: config.trustProxy,
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
    onResponseStart(req, statusCode) {
      const r = req as SluiceRequest;
      // A 5xx may be the upstream failing on its database: check it (at most once per probe interval).
      if (statusCode >= 500 && databaseHealth) {
        const error = new Error(`upstream answered ${statusCode}`);
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        if (statusCode <= 504 && needsDatabase(q === -1 ? url : url.slice(0, q))) {
          // The database may have died under this very request: wait for the verdict (the proxy
          // bounds the wait) and answer as the up-front guard would if it is down.
          return databaseHealth
            .check(error)
            .then((verdict) => (verdict === 'down' ? databaseUnavailable : undefined));
        }
        databaseHealth.suspect(error);
      }
      if (statusCode === 401 && r.sluice?.identity) {
        // The cache called this credential valid and the upstream disagrees: forget it.
        return cache.invalidateRequest(r).catch((error: unknown) => {
          logger.warn({ err: error }, 'could not evict a credential the upstream refused');
        });
      }
      if (statusCode >= 200 && statusCode < 300 && req.method === 'POST') {
        const path = canonicalPath((req.url ?? '/').split('?')[0] ?? '/');
        if (path === CVAT_LOGOUT_PATH || path === `${CVAT_LOGOUT_PATH}/`) return invalidateLogout(r);
      }
      return undefined;
    },
  });

  function finishRequest(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    tracked: boolean,
  ): void {
    const durationMs = performance.now() - ctx.startedAt;
    const aborted = !res.writableFinished;
    const status = aborted && !res.headersSent ? 499 : res.statusCode;
    const sluice = (req as SluiceRequest).sluice;
    const entry: AccessLogEntry = {
      reqId: ctx.id,
      method: req.method ?? 'GET',
      route: ctx.route,
      status,
      class: ctx.requestClass,
      queueWaitMs: ctx.queueWaitMs === undefined ? undefined : Math.round(ctx.queueWaitMs * 10) / 10,
      upstreamMs: ctx.upstreamMs === undefined ? undefined : Math.round(ctx.upstreamMs * 10) / 10,
      cacheTier: sluice?.cache?.tier ?? ctx.cacheTier,
      durationMs: Math.round(durationMs * 10) / 10,
      userId: sluice?.identity?.userId,
      client: ctx.client,
      error: ctx.errorCode ?? (aborted ? 'E_CLIENT_ABORTED' : undefined),
      cause: ctx.errorCause,
    };
    tally.total += 1;
    tally.byClass[ctx.requestClass] += 1;
    const sc = statusClass(status);
    tally.byStatus[sc] = (tally.byStatus[sc] ?? 0) + 1;
    if (ctx.errorCode?.startsWith('E_UPSTREAM_')) tally.upstreamErrors += 1;
    metrics.observe({
      requestClass: ctx.requestClass,
      status,
      durationMs,
      queueWaitMs: ctx.queueWaitMs,
      upstreamMs: ctx.upstreamMs,
      errorCode: ctx.errorCode,
      strippedIdentityHeaders: ctx.strippedIdentityHeaders,
    });
    if (ctx.requestClass !== 'gateway' || logger.isLevelEnabled('debug')) {
      logger[status >= 500 ? 'warn' : ctx.requestClass === 'gateway' ? 'debug' : 'info'](entry, 'request');
    }
    if (gatewayChannels.request.hasSubscribers) gatewayChannels.request.publish(entry);
    events.emit('request', entry);
    if (tracked) {
      active -= 1;
      if (active === 0) for (const wake of [...idleWaiters]) wake();
      if (!o.running()) o.onIdleWhileDraining();
    }
  }

  const bodyLimits = {
    memoryBytes: config.bufferMemory,
    maxBytes: config.maxBodySize,
    tempDir: config.tempDir,
    idleMs: config.clientBodyTimeoutMs,
    minRate: config.clientMinRate,
  };

  /** Answers a body the gateway would not take (413, 408) and closes the connection; nothing for a client gone. */
  function refuseBody(res: ServerResponse, ctx: RequestContext, error: BodyError): void {
    ctx.errorCode = error.code;
    if (error.code === 'E_CLIENT_ABORTED') return;
    ctx.errorCause = error.message;
    res.shouldKeepAlive = false;
    if (error.code === 'E_BODY_TOO_LARGE') {
      sendJsonError(res, 413, error.code, `The request body is larger than ${config.maxBodySize} bytes.`, {
        connection: 'close',
      });
    } else if (res.headersSent) {
      res.destroy();
    } else {
      sendJsonError(res, 408, 'E_CLIENT_TIMEOUT', 'The request body stopped arriving.', {
        connection: 'close',
      });
    }
  }

  function refuse(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    status: number,
    code: string,
    message: string,
  ): void {
    ctx.requestClass = 'gateway';
    ctx.errorCode = code;
    res.once('close', () => finishRequest(req, res, ctx, false));
    res.shouldKeepAlive = false;
    sendJsonError(res, status, code, message, { connection: 'close' });
  }

  function pipeline(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = requestContext(req);
    ctx.client = clientAddress(req, config.trustProxy);
    const url = req.url ?? '/';
    if (!isOriginFormTarget(url)) {
      // `OPTIONS *`, `M-SEARCH *`, absolute or authority form: refused before admission and the proxy.
      refuse(req, res, ctx, 400, 'E_BAD_REQUEST', 'The request target must be a path.');
      return;
    }
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    if (o.serveOwn(pathname, req, res, next)) {
      ctx.requestClass = 'gateway';
      res.once('close', () => finishRequest(req, res, ctx, false));
      return;
    }
    ctx.requestClass = o.classify({
      method: req.method ?? 'GET',
      pathname: canonicalPath(pathname) ?? pathname,
      search: q === -1 ? '' : url.slice(q + 1),
    });
    const counts = byClassNow[ctx.requestClass];
    let phase: 'before' | 'queued' | 'admitted' | 'released' = 'before';
    active += 1;
    res.once('close', () => {
      if (phase === 'queued') counts.queued -= 1;
      else if (phase === 'admitted') counts.inFlight -= 1;
      ctx.releaseSlot = undefined;
      finishRequest(req, res, ctx, true);
    });
    if (!o.running()) {
      ctx.errorCode = 'E_SHUTTING_DOWN';
      res.shouldKeepAlive = false;
      sendJsonError(res, 503, 'E_SHUTTING_DOWN', 'The gateway is shutting down; retry shortly.', {
        'retry-after': '1',
        connection: 'close',
      });
      return;
    }
    const headers = req.headers;
    for (const name in headers) {
      if (isIdentityHeader(name)) {
        delete headers[name];
        ctx.strippedIdentityHeaders += 1;
      }
    }

    const needsDb = needsDatabase(pathname);
    const bufferBody = config.requestBuffering && hasBody(req);
    let spool: Spool | undefined;
    const admit = (): void => {
      phase = 'queued';
      counts.queued += 1;
      const queuedAt = performance.now();
      admissionMiddleware(req, res, (admitError?: unknown) => {
        if (phase === 'queued') {
          counts.queued -= 1;
          counts.inFlight += 1;
          phase = 'admitted';
          ctx.releaseSlot = () => {
            ctx.releaseSlot = undefined;
            if (phase !== 'admitted') return;
            phase = 'released';
            counts.inFlight -= 1;
            admissionMiddleware.release(res);
          };
        }
        if (admitError !== undefined) {
          next(admitError);
          return;
        }
        ctx.queueWaitMs = performance.now() - queuedAt;
        // The database may have gone while the request was queued.
        if (needsDb && refuseWhileDatabaseDown(res, ctx)) return;
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
    const receive = (authError?: unknown): void => {
      if (authError !== undefined) {
        next(authError);
        return;
      }
      if (!bufferBody) {
        admit();
        return;
      }
      if (declaredTooLarge(req, config.maxBodySize)) {
        refuseBody(res, ctx, new BodyError('E_BODY_TOO_LARGE', 'declared too large'));
        return;
      }
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
    if (!needsDb) {
      ctx.cacheTier = 'public';
      receive();
      return;
    }
    if (refuseWhileDatabaseDown(res, ctx)) return;
    // The middleware records the tier that answered as `req.sluice.cache` (read when the request ends).
    ctx.cacheTier = 'none';
    cacheMiddleware(req, res, receive);
  }

  function gatewayError(error: unknown, req: IncomingMessage, res: ServerResponse): void {
    const ctx = requestContext(req);
    ctx.errorCode = 'E_INTERNAL';
    logger.error({ reqId: ctx.id, err: error }, 'gateway error');
    if (res.headersSent) res.destroy();
    else sendJsonError(res, 500, 'E_INTERNAL', 'The gateway failed to handle the request.');
  }

  return {
    handle(req, res) {
      try {
        pipeline(req, res, (error?: unknown) => {
          if (error !== undefined) gatewayError(error, req, res);
        });
      } catch (error) {
        gatewayError(error, req, res);
      }
    },
    get active() {
      return active;
    },
    admission: admissionMiddleware,
    cacheMiddleware,
    counts: () => ({
      byClassNow: { interactive: { ...byClassNow.interactive }, bulk: { ...byClassNow.bulk } },
      total: tally.total,
      byClass: { ...tally.byClass },
      byStatus: { ...tally.byStatus },
      upstreamErrors: tally.upstreamErrors,
      rejected: tally.rejected,
    }),
    waitForIdle(graceMs) {
      if (active === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          idleWaiters.delete(wake);
          resolve(false);
        }, graceMs);
        const wake = (): void => {
          clearTimeout(timer);
          idleWaiters.delete(wake);
          resolve(true);
        };
        idleWaiters.add(wake);
      });
    },
    async close() {
      await Promise.allSettled([admissionMiddleware.close(), cacheMiddleware.close()]);
    },
  };
}
