import { createHmac } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  type AdmissionGate,
  type AdmissionMiddleware,
  admission,
  CircuitBreaker,
  type DatabaseBudget,
  databaseBudget,
  RedisSemaphore,
  Semaphore,
} from '@sluice/admission';
import { extractCredential } from '@sluice/django';
import { TypedEvents } from '@sluice/kit';
import {
  type ConnectionMonitor,
  monitorConnections,
  type Reaper,
  type SessionPurger,
  type SluicePool,
  schedulePurge,
  scheduleReaper,
  sharedPool,
} from '@sluice/pool';
import {
  compositeValidator,
  createSessionCache,
  djangoDatabaseValidator,
  introspectionValidator,
  type SessionCache,
  type SessionCacheMiddleware,
  type SluiceContext,
  sessionCache,
  type Validator,
} from '@sluice/session-cache';
import express, { type Express } from 'express';
import { Cluster } from 'ioredis';
import { Pool } from 'undici';
import { type GatewayConfig, type GatewayConfigInput, resolveConfig } from './config.js';
import { type RequestContext, requestContext } from './context.js';
import { createDatabaseHealth, type DatabaseHealth } from './database-health.js';
import { GatewayError } from './errors.js';
import { clientAddress, isIdentityHeader } from './headers.js';
import { sendJsonError } from './json-error.js';
import { createLogger, type GatewayLogger } from './logger.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { canonicalPath, compilePathPatterns } from './path-pattern.js';
import { createProxy, type ProxyReplacement } from './proxy.js';
import { checkReadiness, type ReadinessCheck, type ReadinessReport, upstreamCheck } from './readiness.js';
import { createRedisClient, type RedisMode } from './redis-client.js';
import { createClassifier, type RequestClass, type RequestClassifier } from './request-class.js';
import { isOriginFormTarget } from './request-target.js';
import type { BreakerState, RedisStatus, StatusSnapshot } from './status.js';
import { STATUS_PATH, sendStatusPage } from './status-page.js';
import { GATEWAY_VERSION } from './version.js';

/** CVAT's logout endpoint: a 2xx answer to a POST there invalidates the request's credential. */
export const CVAT_LOGOUT_PATH = '/api/auth/logout';

/** `application_name` of the gateway's own database connections. */
export const GATEWAY_APPLICATION_NAME = 'sluice-gateway';

/** Options of {@link createGateway}: configuration fields plus objects to share or replace. */
export interface GatewayOptions extends GatewayConfigInput {
  /** A pino logger. @default pino JSON lines on stdout at `logLevel` */
  logger?: GatewayLogger;
  /** Validates credentials instead of the database / introspection validators the gateway builds. */
  validator?: Validator;
  /** Decides the admission class. @default CVAT's rules plus `bulkPaths` */
  classify?: RequestClassifier;
  /** Clock for the cache and the status page, epoch ms. @default Date.now */
  now?: () => number;
}

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

/** Where the gateway listens. */
export interface GatewayAddress {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` (IPv6 hosts in brackets). */
  readonly url: string;
}

/** What `close()` did with the requests in flight. */
export interface DrainResult {
  /** Requests that finished within the grace period. */
  readonly completed: number;
  /** Requests cut off when the grace period ran out. */
  readonly cutOff: number;
}

/** Events of a {@link Gateway}; `on()` returns the unsubscribe function. */
export interface GatewayEvents {
  /** A request ended (the access log line). */
  request: AccessLogEntry;
  /** `close()` began: no new connections, in-flight requests finishing. */
  draining: { readonly inFlight: number; readonly graceMs: number };
  /** Everything is closed. */
  closed: DrainResult;
  /** The admission budget changed (database sample, configuration). */
  limit: { readonly limit: number; readonly previous: number };
  /** The upstream circuit breaker changed state. */
  breaker: { readonly from: BreakerState; readonly to: BreakerState };
  /** The database stopped answering (`down`) or answers again (`up`); only with `databaseGuard`. */
  database: { readonly state: 'up' | 'down'; readonly downForMs: number | undefined };
}

/** A running (or ready to run) gateway. */
export interface Gateway {
  /** The Express application: mount it elsewhere or test it with supertest. */
  readonly app: Express;
  readonly config: GatewayConfig;
  readonly logger: GatewayLogger;
  readonly metrics: GatewayMetrics;
  /** The session cache (for `invalidate()` from other code). */
  readonly cache: SessionCache;
  /** The admission middleware (gauges, events). */
  readonly admission: AdmissionMiddleware;
  /**
   * Starts listening on `config.listen` (after the first database sample sized the budget).
   * @throws {GatewayError} `E_CLOSED` after `close()`; the server's error (e.g. `EADDRINUSE`)
   */
  listen(): Promise<GatewayAddress>;
  /** Where it listens, once listening. */
  address(): GatewayAddress | undefined;
  /** Live figures (what `/sluice/status.json` answers). */
  status(): StatusSnapshot;
  /** Probes upstream, database and Redis (what `/readyz` answers). */
  readiness(): Promise<ReadinessReport>;
  /**
   * Graceful shutdown: stops accepting connections, answers queued requests 503, lets in-flight
   * requests finish within `graceMs`, cuts the rest, then closes pools, Redis and timers.
   * Idempotent (later calls return the same promise).
   */
  close(graceMs?: number): Promise<DrainResult>;
  on<E extends keyof GatewayEvents>(event: E, listener: (payload: GatewayEvents[E]) => void): () => void;
  [Symbol.asyncDispose](): Promise<void>;
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

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

const OPTION_KEYS = new Set(['logger', 'validator', 'classify', 'now']);
const EMPTY_ENV: Readonly<Record<string, string | undefined>> = Object.freeze({});

function deriveSecret(label: string, secretKey: string): string {
  return createHmac('sha256', secretKey).update(`sluice-gateway:${label}`).digest('base64url');
}

function formatAddress(host: string, port: number): GatewayAddress {
  const shown = host.includes(':') ? `[${host}]` : host;
  return { host, port, url: `http://${shown}:${port}` };
}

/** Classifies the status for counters: '2xx' ... '5xx' (499 counts as '4xx'). */
function statusClass(status: number): string {
  return `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx`;
}

/**
 * Builds the gateway from its configuration: the pipeline is identity-header stripping, the
 * session cache on `/api/*` except public paths, admission (interactive and bulk classes, circuit
 * breaker), then the streaming proxy. Without a database and Redis it runs embedded: in-process
 * cache, validation through the upstream's `/api/users/self`, a local semaphore of `dbBudget`
 * (default 20). With `databaseUrl` it validates against Django's tables, sizes the budget from
 * `max_connections`, and runs the connection monitor (plus the reaper and the session purge when
 * enabled). With `redisUrl` the cache's L2 and the semaphore are shared by every gateway.
 *
 * @throws {GatewayConfigError} listing every invalid configuration field
 * @example
 * ```ts
 * const gateway = createGateway({ upstream: 'http://127.0.0.1:8080', listen: '127.0.0.1:8090' });
 * const { url } = await gateway.listen();
 * process.once('SIGTERM', () => void gateway.close().then(() => process.exit(0)));
 * ```
 */
export function createGateway(options: GatewayOptions = {}): Gateway {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      `createGateway: options must be an object, got ${options === null ? 'null' : typeof options}`,
    );
  }
  const configInput: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) if (!OPTION_KEYS.has(key)) configInput[key] = value;
  const config = resolveConfig(configInput as GatewayConfigInput);
  if (options.classify !== undefined && typeof options.classify !== 'function') {
    throw new TypeError(`createGateway: options.classify must be a function, got ${typeof options.classify}`);
  }
  const now = options.now ?? Date.now;
  const logger = options.logger ?? createLogger(config.logLevel);
  const events = new TypedEvents<GatewayEvents>((error) =>
    logger.error({ err: error }, 'gateway listener threw'),
  );
  const startedAt = now();
  const classify = options.classify ?? createClassifier(config.bulkPaths);
  const publicPaths = compilePathPatterns(config.publicPaths);
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

  // --- upstream connections -------------------------------------------------------------------
  const dispatcher = new Pool(config.upstream, {
    connections: config.upstreamConnections,
    connectTimeout: config.upstreamConnectTimeoutMs,
    headersTimeout: config.upstreamHeadersTimeoutMs,
    bodyTimeout: config.upstreamBodyTimeoutMs,
    keepAliveTimeout: config.upstreamKeepAliveMs,
    pipelining: 1,
  });

  // --- database and Redis ---------------------------------------------------------------------
  const pool: SluicePool | undefined =
    config.databaseUrl === undefined
      ? undefined
      : sharedPool({
          connectionString: config.databaseUrl,
          max: config.poolMax,
          applicationName: GATEWAY_APPLICATION_NAME,
          acquireTimeoutMs: config.readyTimeoutMs * 2,
          statementTimeoutMs: 10_000,
          idleInTransactionTimeoutMs: 10_000,
        });
  pool?.on('error', ({ error }) => logger.warn({ err: error }, 'database pool error'));
  let redisDown = false;
  const redisMode: RedisMode | undefined =
    config.redisUrl === undefined ? undefined : config.redisCluster ? 'cluster' : 'single';
  // One client (a `Cluster` with --redis-cluster) shared by the L2 cache and the semaphore; each
  // duplicates it once for its pub/sub subscriber.
  const redis =
    config.redisUrl === undefined
      ? undefined
      : createRedisClient({
          url: config.redisUrl,
          cluster: config.redisCluster,
          connectionName: GATEWAY_APPLICATION_NAME,
          connectTimeoutMs: 2_000,
        });
  redis?.on('error', (error) => {
    if (!redisDown) logger.warn({ err: error }, 'redis unreachable; the gateway carries on without it');
    redisDown = true;
  });
  redis?.on('ready', () => {
    if (redisDown) logger.info('redis reachable again');
    redisDown = false;
  });

  // --- admission ------------------------------------------------------------------------------
  const limitSource: 'configured' | 'database' | 'default' =
    config.dbBudget !== undefined ? 'configured' : pool ? 'database' : 'default';
  const initialLimit = config.dbBudget ?? 20;
  const gateOptions = {
    limit: initialLimit,
    maxQueue: config.queueMax,
    queueTimeoutMs: config.queueTimeoutMs,
    interactiveReserve: config.interactiveReserve,
    drainTimeoutMs: config.shutdownGraceMs,
    name: 'upstream',
    ...(config.perClientLimit > 0 ? { perKeyLimit: config.perClientLimit } : {}),
  };
  const gate: AdmissionGate = redis
    ? new RedisSemaphore({
        ...gateOptions,
        redis,
        prefix: `${config.redisPrefix}admission:`,
        leaseMs: config.permitLeaseMs,
        commandTimeoutMs: config.admissionRedisTimeoutMs,
      })
    : new Semaphore(gateOptions);
  gate.on('limit', ({ limit, previous }) => {
    logger.info({ limit, previous }, 'admission budget changed');
    events.emit('limit', { limit, previous });
  });
  const breaker = new CircuitBreaker({ name: 'upstream', resetTimeoutMs: 5_000 });
  breaker.on('state', ({ from, to }) => {
    logger.warn({ from, to }, 'upstream circuit breaker changed state');
    events.emit('breaker', { from, to });
  });

  // --- session cache --------------------------------------------------------------------------
  let validations = 0;
  const introspection = (): Validator => {
    const remote = introspectionValidator({
      url: new URL(config.introspectionPath, config.upstream),
      timeoutMs: Math.min(config.upstreamHeadersTimeoutMs, 10_000),
      cookieName: config.sessionCookieName,
    });
    // Each introspection call costs the upstream a database connection: it takes an admission slot.
    return {
      kinds: remote.kinds,
      async validate(credential, { signal }) {
        // A key of its own per call: validations are not one client, so no per-client cap applies.
        validations += 1;
        const key = `sluice:validator:${validations}`;
        const permit = await gate.acquire({ key, priority: 'interactive', signal });
        try {
          return await remote.validate(credential, { signal });
        } finally {
          permit.release('ignore');
        }
      },
    };
  };
  let validator: Validator;
  let validatorKind: 'database' | 'introspection' | 'custom';
  if (options.validator) {
    validator = options.validator;
    validatorKind = 'custom';
  } else if (pool) {
    const database = djangoDatabaseValidator({
      pool,
      ...(config.secretKey === undefined ? {} : { secretKey: config.secretKey }),
    });
    const remote = introspection();
    validator = compositeValidator({ session: database, token: database, bearer: remote, basic: remote });
    validatorKind = 'database';
  } else {
    validator = introspection();
    validatorKind = 'introspection';
  }
  const pepper =
    config.cachePepper ??
    (config.secretKey === undefined ? undefined : deriveSecret('cache-pepper', config.secretKey));
  const cache = createSessionCache({
    validator,
    ttlMs: config.cacheTtlMs,
    // With Redis, L1 is kept short (5 s) so a lost invalidation message cannot outlive it on this
    // process; without Redis, L1 is the only tier and invalidations are local: it keeps the full TTL.
    l1: { max: config.cacheMax, ttlMs: redis ? Math.min(5_000, config.cacheTtlMs) : config.cacheTtlMs },
    l2: redis
      ? { redis, prefix: `${config.redisPrefix}session:`, timeoutMs: config.cacheRedisTimeoutMs }
      : false,
    now,
    env: EMPTY_ENV,
    ...(pepper === undefined ? {} : { pepper }),
  });
  cache.on('l2:down', ({ error }) =>
    logger.warn({ err: error }, 'session cache L2 (Redis) down: L1 and validator only'),
  );
  cache.on('l2:up', ({ downForMs }) => logger.info({ downForMs }, 'session cache L2 (Redis) back'));
  const cacheMiddleware: SessionCacheMiddleware = sessionCache({
    cache,
    cookieName: config.sessionCookieName,
  });

  // --- database background work ---------------------------------------------------------------
  let monitor: ConnectionMonitor | undefined;
  let databaseHealth: DatabaseHealth | undefined;
  let budget: DatabaseBudget | undefined;
  let reaper: Reaper | undefined;
  let purger: SessionPurger | undefined;
  let reaped = 0;
  let purged = 0;
  if (pool) {
    monitor = monitorConnections({
      pool,
      intervalMs: config.monitorIntervalMs,
      warnAt: 0.8,
      criticalAt: 0.95,
    });
    monitor.onThreshold(({ level, previous, usage }) =>
      logger.warn({ level, previous, usage }, 'database connections crossed a threshold'),
    );
    monitor.onError((error) => logger.warn({ err: error }, 'connection monitor sample failed'));
    if (config.databaseGuard) {
      const guarded = createDatabaseHealth({
        probe: (signal) => pool.query('SELECT 1', [], { signal, timeoutMs: config.readyTimeoutMs }),
        probeIntervalMs: config.databaseProbeIntervalMs,
        probeTimeoutMs: config.readyTimeoutMs,
        now,
      });
      monitor.onSample(() => guarded.reportSuccess());
      monitor.onError((error) => guarded.suspect(error));
      pool.on('error', ({ error }) => guarded.suspect(error));
      guarded.on('down', ({ error }) => {
        logger.error({ err: error }, 'database unreachable: requests that need it are answered 503');
        events.emit('database', { state: 'down', downForMs: undefined });
      });
      guarded.on('up', ({ downForMs }) => {
        logger.info({ downForMs }, 'database reachable again');
        events.emit('database', { state: 'up', downForMs });
      });
      databaseHealth = guarded;
    }
    if (config.reaper) {
      // Only the upstream's own database: other databases on the server are someone else's.
      const database = decodeURIComponent(new URL(config.databaseUrl ?? '').pathname.slice(1));
      reaper = scheduleReaper({
        pool,
        applicationName: config.upstreamApplicationName,
        ...(database === '' ? {} : { database }),
        idleForMs: config.reaperIdleMs,
        intervalMs: config.reaperIntervalMs,
        onDenied: 'report',
      });
      reaper.onReap((result) => {
        reaped += result.reaped.length;
        if (result.reaped.length > 0 || result.denied.length > 0) {
          logger.info(
            { reaped: result.reaped.length, denied: result.denied.length, deferred: result.deferred },
            'reaped idle upstream connections',
          );
        }
      });
      reaper.onError((error) => logger.warn({ err: error }, 'reaper run failed'));
    }
    if (config.sessionPurge) {
      purger = schedulePurge({ pool, intervalMs: config.sessionPurgeIntervalMs });
      purger.onPurge(({ deleted, ms }) => {
        purged += deleted;
        if (deleted > 0) logger.info({ deleted, ms }, 'purged expired sessions');
      });
      purger.onError((error) => logger.warn({ err: error }, 'session purge failed'));
    }
  }

  // --- per-request bookkeeping ----------------------------------------------------------------
  const classCounts: Record<RequestClass, { inFlight: number; queued: number }> = {
    interactive: { inFlight: 0, queued: 0 },
    bulk: { inFlight: 0, queued: 0 },
  };
  const requestCounts = {
    total: 0,
    byClass: { interactive: 0, bulk: 0, gateway: 0 } as Record<RequestClass | 'gateway', number>,
    byStatus: {} as Record<string, number>,
    upstreamErrors: 0,
  };
  let rejected = 0;
  let active = 0;
  let state: 'running' | 'draining' | 'closed' = 'running';
  let server: Server | undefined;
  let bound: GatewayAddress | undefined;
  const idleWaiters = new Set<() => void>();

  const redisStatus = (): RedisStatus | null =>
    redis === undefined || redisMode === undefined
      ? null
      : {
          mode: redisMode,
          status: redis.status,
          nodes: redis instanceof Cluster ? redis.nodes('master').length : 1,
        };

  const status = (): StatusSnapshot => {
    const sample = monitor?.lastSample;
    const stats = cache.stats();
    const looked = stats.l1Hits + stats.l2Hits + stats.misses;
    const poolStats = pool?.stats();
    return {
      at: now(),
      startedAt,
      version: GATEWAY_VERSION,
      upstream: config.upstream,
      state,
      admission: {
        limit: gate.limit,
        inFlight: gate.inFlight,
        queued: gate.queued,
        available: gate.available,
        limitSource,
        semaphore: redis ? 'redis' : 'local',
        byClass: {
          interactive: { ...classCounts.interactive },
          bulk: { ...classCounts.bulk },
        },
        rejected,
      },
      breaker: breaker.state,
      cache: {
        l1Hits: stats.l1Hits,
        l2Hits: stats.l2Hits,
        misses: stats.misses,
        validatorCalls: stats.validatorCalls,
        validatorErrors: stats.validatorErrors,
        hitRatio: looked === 0 ? null : (stats.l1Hits + stats.l2Hits) / looked,
        l1Size: stats.l1Size,
        l2State: stats.l2State,
        validator: validatorKind,
      },
      database: pool
        ? {
            connections: sample?.total ?? null,
            maxConnections: sample?.maxConnections ?? null,
            reservedConnections: sample?.reservedConnections ?? null,
            byState: { ...(sample?.byState ?? {}) },
            level: monitor?.level ?? 'ok',
            sampledAt: sample?.at ?? null,
            pool: {
              max: poolStats?.max ?? config.poolMax,
              total: poolStats?.total ?? 0,
              idle: poolStats?.idle ?? 0,
              waiting: poolStats?.waiting ?? 0,
            },
            health: databaseHealth
              ? {
                  state: databaseHealth.state,
                  downSince: databaseHealth.downSince ?? null,
                  outages: databaseHealth.outages,
                  lastError: databaseHealth.state === 'down' ? describeError(databaseHealth.lastError) : null,
                }
              : { state: 'unguarded', downSince: null, outages: 0, lastError: null },
            reaped: reaper ? reaped : null,
            purged: purger ? purged : null,
          }
        : null,
      redis: redisStatus(),
      requests: {
        total: requestCounts.total,
        byClass: { ...requestCounts.byClass },
        byStatus: { ...requestCounts.byStatus },
        upstreamErrors: requestCounts.upstreamErrors,
      },
    };
  };
  const metrics = createGatewayMetrics(status);

  const admissionMiddleware = admission({
    gate,
    breaker,
    classify: (req) => (requestContext(req).requestClass === 'bulk' ? 'bulk' : 'interactive'),
    key: (req) => {
      const identity = (req as SluiceRequest).sluice?.identity;
      return identity ? `user:${identity.userId}` : `ip:${requestContext(req).client}`;
    },
  });
  admissionMiddleware.on('reject', ({ code }) => {
    if (code === 'E_ABORTED') return;
    rejected += 1;
    metrics.rejected(code);
  });

  const finishRequest = (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    tracked: boolean,
  ): void => {
    const durationMs = performance.now() - ctx.startedAt;
    const aborted = !res.writableFinished;
    const status = aborted && !res.headersSent ? 499 : res.statusCode;
    const entry: AccessLogEntry = {
      reqId: ctx.id,
      method: req.method ?? 'GET',
      route: ctx.route,
      status,
      class: ctx.requestClass,
      queueWaitMs: ctx.queueWaitMs === undefined ? undefined : Math.round(ctx.queueWaitMs * 10) / 10,
      upstreamMs: ctx.upstreamMs === undefined ? undefined : Math.round(ctx.upstreamMs * 10) / 10,
      cacheTier: (req as SluiceRequest).sluice?.cache?.tier ?? ctx.cacheTier,
      durationMs: Math.round(durationMs * 10) / 10,
      userId: (req as SluiceRequest).sluice?.identity?.userId,
      client: ctx.client,
      error: ctx.errorCode ?? (aborted ? 'E_CLIENT_ABORTED' : undefined),
      cause: ctx.errorCause,
    };
    requestCounts.total += 1;
    requestCounts.byClass[ctx.requestClass] += 1;
    const sc = statusClass(status);
    requestCounts.byStatus[sc] = (requestCounts.byStatus[sc] ?? 0) + 1;
    if (ctx.errorCode?.startsWith('E_UPSTREAM_')) requestCounts.upstreamErrors += 1;
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
      if (state !== 'running') server?.closeIdleConnections();
    }
  };

  // --- the pipeline ---------------------------------------------------------------------------
  const proxy = createProxy({
    upstream: config.upstream,
    dispatcher,
    trustProxy: config.trustProxy,
    preserveHost: config.preserveHost,
    headersTimeoutMs: config.upstreamHeadersTimeoutMs,
    bodyTimeoutMs: config.upstreamBodyTimeoutMs,
    clientBodyTimeoutMs: config.clientBodyTimeoutMs,
    onResponseStart(req, statusCode) {
      const r = req as SluiceRequest;
      // A 5xx may be the upstream failing on its database: check it (at most once per probe interval).
      if (statusCode >= 500 && databaseHealth) {
        const error = new Error(`upstream answered ${statusCode}`);
        const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
        const q = url.indexOf('?');
        if (statusCode <= 504 && needsDatabase(q === -1 ? url : url.slice(0, q))) {
          // The database may have died under this very request: wait for the verdict (the proxy
          // bounds the wait by hookTimeoutMs) and answer as the up-front guard would if it is down.
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

  const sendJson = (res: ServerResponse, statusCode: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(statusCode, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
    });
    res.end(text);
  };

  /** The gateway's own endpoints; true when `pathname` was one of them. */
  function serveOwn(pathname: string, req: IncomingMessage, res: ServerResponse, next: Next): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    switch (pathname) {
      case '/healthz':
        sendJson(res, 200, { status: state === 'running' ? 'ok' : state });
        return true;
      case '/readyz':
        readiness().then((report) => {
          const ready = report.status !== 'unready' && state === 'running';
          sendJson(
            res,
            ready ? 200 : 503,
            state === 'running' ? report : { ...report, status: 'unready', state },
          );
        }, next);
        return true;
      case '/metrics':
        metrics.render().then((text) => {
          res.writeHead(200, {
            'content-type': metrics.registry.contentType,
            'content-length': Buffer.byteLength(text),
            'cache-control': 'no-store',
          });
          res.end(text);
        }, next);
        return true;
      case STATUS_PATH:
        sendStatusPage(res);
        return true;
      case `${STATUS_PATH}.json`:
        sendJson(res, 200, status());
        return true;
      default:
        return false;
    }
  }

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
    sendJsonError(
      res,
      databaseUnavailable.status,
      databaseUnavailable.code,
      databaseUnavailable.message,
      databaseUnavailable.headers,
      databaseUnavailable.details,
    );
    return true;
  }

  function authenticate(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    needsDb: boolean,
    next: Next,
  ): void {
    if (!needsDb) {
      ctx.cacheTier = 'public';
      next();
      return;
    }
    if (refuseWhileDatabaseDown(res, ctx)) return;
    // The middleware records the tier that answered as `req.sluice.cache` (read when the request ends).
    ctx.cacheTier = 'none';
    cacheMiddleware(req, res, next);
  }

  async function forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    const outcome = await proxy(req, res);
    if (outcome.error && outcome.errorCode !== 'E_CLIENT_ABORTED') {
      logger.debug(
        { reqId: ctx.id, route: ctx.route, code: outcome.errorCode, cause: ctx.errorCause },
        'upstream request failed',
      );
    }
  }

  // The whole pipeline in one handler: strip identity headers, sessionCache on /api/* except
  // public paths, admission by class, then the proxy. The server listen() starts calls it
  // directly; `app` wraps the same handler for those who mount the gateway in their own Express.
  function sluiceGateway(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = requestContext(req);
    ctx.client = clientAddress(req, config.trustProxy);
    const url = req.url ?? '/';
    if (!isOriginFormTarget(url)) {
      // `OPTIONS *`, `M-SEARCH *`, absolute or authority form: refused before admission and the proxy.
      ctx.requestClass = 'gateway';
      ctx.errorCode = 'E_BAD_REQUEST';
      res.once('close', () => finishRequest(req, res, ctx, false));
      res.shouldKeepAlive = false;
      sendJsonError(res, 400, 'E_BAD_REQUEST', 'The request target must be a path.', {
        connection: 'close',
      });
      return;
    }
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    if (serveOwn(pathname, req, res, next)) {
      ctx.requestClass = 'gateway';
      res.once('close', () => finishRequest(req, res, ctx, false));
      return;
    }
    ctx.requestClass = classify({
      method: req.method ?? 'GET',
      pathname: canonicalPath(pathname) ?? pathname,
      search: q === -1 ? '' : url.slice(q + 1),
    });
    const counts = classCounts[ctx.requestClass === 'bulk' ? 'bulk' : 'interactive'];
    let phase: 'before' | 'queued' | 'admitted' = 'before';
    active += 1;
    res.once('close', () => {
      if (phase === 'queued') counts.queued -= 1;
      else if (phase === 'admitted') counts.inFlight -= 1;
      finishRequest(req, res, ctx, true);
    });
    if (state !== 'running') {
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
    authenticate(req, res, ctx, needsDb, (authError?: unknown) => {
      if (authError !== undefined) {
        next(authError);
        return;
      }
      phase = 'queued';
      counts.queued += 1;
      const queuedAt = performance.now();
      admissionMiddleware(req, res, (admitError?: unknown) => {
        if (phase === 'queued') {
          counts.queued -= 1;
          counts.inFlight += 1;
          phase = 'admitted';
        }
        if (admitError !== undefined) {
          next(admitError);
          return;
        }
        ctx.queueWaitMs = performance.now() - queuedAt;
        // The database may have gone while the request was queued.
        if (needsDb && refuseWhileDatabaseDown(res, ctx)) return;
        if (state !== 'running') res.shouldKeepAlive = false;
        forward(req, res, ctx).catch(next);
      });
    });
  }

  function gatewayError(error: unknown, req: IncomingMessage, res: ServerResponse): void {
    const ctx = requestContext(req);
    ctx.errorCode = 'E_INTERNAL';
    logger.error({ reqId: ctx.id, err: error }, 'gateway error');
    if (res.headersSent) res.destroy();
    else sendJsonError(res, 500, 'E_INTERNAL', 'The gateway failed to handle the request.');
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      sluiceGateway(req, res, (error?: unknown) => {
        if (error !== undefined) gatewayError(error, req, res);
      });
    } catch (error) {
      gatewayError(error, req, res);
    }
  };

  /** `CONNECT`: the gateway is no forward proxy. Answered 405, then the connection is closed. */
  function refuseConnect(req: IncomingMessage, socket: Socket): void {
    const body = JSON.stringify({
      code: 'E_METHOD_NOT_ALLOWED',
      message: 'CONNECT is not supported: Sluice is not a forward proxy.',
    });
    logger.debug({ client: socket.remoteAddress, target: req.url }, 'refused a CONNECT request');
    socket.on('error', () => socket.destroy());
    socket.end(
      'HTTP/1.1 405 Method Not Allowed\r\n' +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        'cache-control: no-store\r\n' +
        'allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n' +
        'connection: close\r\n\r\n' +
        body,
      () => socket.destroy(),
    );
  }

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', false);
  app.use(function sluice(req: IncomingMessage, res: ServerResponse) {
    handle(req, res);
  });

  // --- readiness ------------------------------------------------------------------------------
  const checks: ReadinessCheck[] = [upstreamCheck(dispatcher, config.upstream, config.upstreamHealthPath)];
  if (pool) {
    checks.push({
      name: 'database',
      required: true,
      async run(signal) {
        if (databaseHealth?.state === 'down') {
          throw new Error(`unreachable since ${new Date(databaseHealth.downSince ?? now()).toISOString()}`);
        }
        await pool.query('SELECT 1', [], { signal });
        databaseHealth?.reportSuccess();
        const sample = monitor?.lastSample;
        const health = databaseHealth ? databaseHealth.state : 'unguarded';
        return sample
          ? {
              connections: sample.total,
              maxConnections: sample.maxConnections,
              level: monitor?.level,
              health,
            }
          : { connections: null, health };
      },
    });
  }
  if (redis) {
    checks.push({
      name: 'redis',
      required: false,
      async run() {
        const pong = await redis.ping();
        return { reply: pong, l2: cache.l2State, ...redisStatus() };
      },
    });
  }
  function readiness(): Promise<ReadinessReport> {
    return checkReadiness(checks, config.readyTimeoutMs);
  }

  // --- lifecycle ------------------------------------------------------------------------------
  let starting: Promise<GatewayAddress> | undefined;
  let closing: Promise<DrainResult> | undefined;

  async function sizeFromDatabase(): Promise<void> {
    if (!monitor || limitSource !== 'database') return;
    try {
      await Promise.race([
        monitor.sampleNow(),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('first sample timed out')), config.readyTimeoutMs * 2).unref(),
        ),
      ]);
    } catch (error) {
      logger.warn(
        { err: error, limit: initialLimit },
        'database not sampled yet; budget starts at the default',
      );
    }
    budget = databaseBudget({
      monitor,
      applicationNames: [GATEWAY_APPLICATION_NAME, config.upstreamApplicationName],
      reserve: config.dbReserve + config.poolMax,
      floor: 1,
      ceiling: config.upstreamConnections,
      ...(monitor.lastSample ? {} : { initial: initialLimit }),
    });
    if (budget.current !== gate.limit) gate.setLimit(budget.current);
    budget.onChange((limit) => gate.setLimit(limit));
  }

  async function start(): Promise<GatewayAddress> {
    await sizeFromDatabase();
    if (state !== 'running') throw new GatewayError('E_CLOSED', 'the gateway was closed while starting');
    // requestTimeout stays 0: a total time limit would cut slow but healthy uploads; a stalled body
    // is caught by clientBodyTimeoutMs, stalled headers by headersTimeout, which Node checks every
    // connectionsCheckingInterval (30 s by default, too coarse for a short headers timeout).
    const headersTimeout = config.clientHeadersTimeoutMs;
    const s = createServer(
      {
        requestTimeout: 0,
        headersTimeout,
        connectionsCheckingInterval: Math.min(30_000, Math.max(1_000, Math.floor(headersTimeout / 4))),
        keepAliveTimeout: 65_000,
      },
      handle,
    );
    s.on('connect', refuseConnect);
    server = s;
    s.listen(config.listen.port, config.listen.host);
    await Promise.race([
      once(s, 'listening'),
      once(s, 'error').then(([error]) => {
        throw error;
      }),
    ]);
    const address = s.address() as AddressInfo;
    bound = formatAddress(address.address, address.port);
    logger.info(
      {
        listen: bound.url,
        upstream: config.upstream,
        limit: gate.limit,
        limitSource,
        semaphore: redis ? 'redis' : 'local',
        validator: validatorKind,
        l2: redis ? 'redis' : 'disabled',
        redis: redisMode ?? 'disabled',
      },
      'sluice-gateway listening',
    );
    return bound;
  }

  function waitForIdle(graceMs: number): Promise<boolean> {
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
  }

  async function shutdown(graceMs: number): Promise<DrainResult> {
    state = 'draining';
    const inFlightAtStart = active;
    logger.info({ inFlight: active, queued: gate.queued, graceMs }, 'draining');
    events.emit('draining', { inFlight: active, graceMs });
    const serverClosed = server
      ? new Promise<void>((resolve) => server?.close(() => resolve()))
      : Promise.resolve();
    server?.closeIdleConnections();
    // Queued requests are answered 503 (E_CLOSED) at once; admitted ones keep their slot.
    const gateClosed = admissionMiddleware.close().then(() => gate.close());
    const drained = await waitForIdle(graceMs);
    const cutOff = drained ? 0 : active;
    if (!drained) {
      logger.warn({ cutOff }, 'grace period over: cutting the requests still in flight');
      server?.closeAllConnections();
      await dispatcher.destroy().catch(() => undefined);
    } else {
      await dispatcher.close().catch(() => undefined);
    }
    // Keep-alive sockets that went idle after their last response are closed now; anything still
    // open a second later is cut, so shutdown never hangs on a client that keeps its socket.
    server?.closeIdleConnections();
    const lingering = setTimeout(() => server?.closeAllConnections(), 1_000);
    await serverClosed;
    clearTimeout(lingering);
    const results = await Promise.allSettled([
      gateClosed,
      breaker.close(),
      cacheMiddleware.close(),
      cache.close(),
      reaper?.close(),
      purger?.close(),
      monitor?.close(),
      databaseHealth?.close(),
    ]);
    budget?.close();
    await pool
      ?.close()
      .catch((error: unknown) => logger.warn({ err: error }, 'closing the database pool failed'));
    if (redis) await redis.quit().catch(() => redis.disconnect());
    for (const r of results) if (r.status === 'rejected') logger.warn({ err: r.reason }, 'close step failed');
    state = 'closed';
    const result = { completed: inFlightAtStart - cutOff, cutOff };
    logger.info(result, 'sluice-gateway closed');
    events.emit('closed', result);
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    return result;
  }

  const gateway: Gateway = {
    app,
    config,
    logger,
    metrics,
    cache,
    admission: admissionMiddleware,
    listen() {
      if (state !== 'running') return Promise.reject(new GatewayError('E_CLOSED', 'the gateway is closed'));
      starting ??= start();
      return starting;
    },
    address: () => bound,
    status,
    readiness,
    close(graceMs = config.shutdownGraceMs) {
      closing ??= shutdown(graceMs);
      return closing;
    },
    on: (event, listener) => events.on(event, listener),
    async [Symbol.asyncDispose]() {
      await gateway.close();
    },
  };
  return gateway;
}
