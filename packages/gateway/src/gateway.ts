// createGateway: the parts wired (parts.ts), the pipeline (pipeline.ts) and the own endpoints
// (own-endpoints.ts) put behind one HTTP server, and the lifecycle: listen, drain, close.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { AdmissionMiddleware } from '@sluice/admission';
import { checkFunction, TypedEvents } from '@sluice/kit';
import type { SessionCache, Validator } from '@sluice/session-cache';
import { createActivity } from './activity/activity.js';
import { listen as listenAddress } from './config/kinds.js';
import { resolveConfig } from './config/load.js';
import type { GatewayConfig, GatewayConfigInput } from './config/settings.js';
import { type ConnectionFigures, defaultMaxConnections, guardConnections } from './connections.js';
import type { RequestClassifier } from './cvat-profile.js';
import { proxyAddresses } from './edge.js';
import { GatewayError } from './errors.js';
import { createLogger, type GatewayLogger } from './logger.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { adminHandler, healthEndpoint, readinessChecks } from './own-endpoints.js';
import { buildParts, type GatewayEvents } from './parts.js';
import { createPipeline } from './pipeline.js';
import { checkReadiness, type ReadinessReport } from './readiness.js';
import { createClassifier } from './request-class.js';
import { activityGauges, redisStatus, type StatusSnapshot, statusSnapshot } from './status.js';

/** Options of {@link createGateway}: configuration fields plus objects to share or replace. */
export interface GatewayOptions extends GatewayConfigInput {
  /** A pino logger. @default pino JSON lines on stdout at `logLevel` */
  logger?: GatewayLogger | undefined;
  /** Validates credentials instead of the database / introspection validators the gateway builds. */
  validator?: Validator | undefined;
  /** Decides the admission class. @default CVAT's rules plus `bulkPaths` */
  classify?: RequestClassifier | undefined;
  /** Clock for the cache and the status page, epoch ms. @default Date.now */
  now?: (() => number) | undefined;
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

/** A running (or ready to run) gateway. */
export interface Gateway {
  /** The request handler: a plain Node `request` listener (mount it in any server). */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
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
  /** Where the admin listener (`/metrics`, `/readyz`, status page) listens, once listening; undefined when off. */
  adminAddress(): GatewayAddress | undefined;
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

/** `CONNECT`: the gateway is no forward proxy. Answered 405, then the connection is closed. */
function refuseConnect(_req: IncomingMessage, socket: Socket): void {
  const body = JSON.stringify({
    code: 'E_METHOD_NOT_ALLOWED',
    message: 'CONNECT is not supported: Sluice is not a forward proxy.',
  });
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

/**
 * Builds the gateway from its configuration: identity headers stripped, the session cache on
 * `/api/*` except public paths, admission (interactive and bulk classes, circuit breaker), then
 * the proxy. Without a database and Redis it runs embedded: in-process cache, validation through
 * the upstream's `/api/users/self`, a local semaphore of `dbBudget` (default 20). With
 * `databaseUrl` it validates against Django's tables, sizes the budget from `max_connections` and
 * runs the connection monitor (plus the reaper and the session purge when enabled). With
 * `redisUrl` the cache's L2 and the semaphore are shared by every gateway.
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
    throw new TypeError(`options should be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const { logger: givenLogger, validator, classify: givenClassify, now: givenNow, ...configInput } = options;
  const config = resolveConfig(configInput);
  const classify =
    givenClassify === undefined
      ? createClassifier(config.bulkPaths)
      : checkFunction<RequestClassifier>('options.classify', givenClassify);
  const now = givenNow ?? Date.now;
  const logger = givenLogger ?? createLogger(config.logLevel);
  const events = new TypedEvents<GatewayEvents>((error) =>
    logger.error({ err: error }, 'gateway listener threw'),
  );
  const startedAt = now();
  const parts = buildParts(config, { logger, events, now, validator });

  let state: StatusSnapshot['state'] = 'running';
  let server: Server | undefined;
  let adminServer: Server | undefined;
  let bound: GatewayAddress | undefined;
  let adminBound: GatewayAddress | undefined;
  let connections: (() => ConnectionFigures) | undefined;
  const running = (): boolean => state === 'running';
  const activity = createActivity({ events, now, gauges: () => activityGauges(parts) });
  const status = (): StatusSnapshot =>
    statusSnapshot({
      config,
      parts,
      pipeline,
      activity,
      state,
      startedAt,
      now,
      connections: connections?.(),
    });
  const metrics = createGatewayMetrics(status);
  const checks = readinessChecks(config, parts);
  const readiness = (): Promise<ReadinessReport> => checkReadiness(checks, config.readyTimeoutMs);
  const pipeline = createPipeline({
    config,
    parts,
    logger,
    metrics,
    events,
    activity,
    classify,
    running,
    onIdleWhileDraining: () => server?.closeIdleConnections(),
    serveOwn: healthEndpoint(() => state),
  });
  const admin = adminHandler({ metrics, state: () => state, status, readiness });

  /** Listens `s` on `address`; resolves where it listens, rejects with the server's error (EADDRINUSE). */
  async function bind(s: Server, address: { host: string; port: number }): Promise<GatewayAddress> {
    s.listen(address.port, address.host);
    await once(s, 'listening'); // rejects with the server's 'error' while it waits
    const { address: host, port } = s.address() as AddressInfo;
    return { host, port, url: `http://${listenAddress.show({ host, port })}` };
  }

  async function start(): Promise<GatewayAddress> {
    await parts.start();
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
        // Browsers with many cookies send more than Node's default 16 KiB of headers.
        maxHeaderSize: 32 * 1024,
      },
      pipeline.handle,
    );
    s.on('connect', refuseConnect);
    // `Expect: 100-continue` comes to the pipeline too: it sends 100 once it wants the body
    // (after authentication), not the server before anything was checked.
    s.on('checkContinue', pipeline.handle);
    connections = guardConnections(s, {
      max: config.maxConnections ?? defaultMaxConnections(config.upstreamConnections, config.poolMax),
      perClient: config.maxConnectionsPerClient,
      exempt: proxyAddresses(config.trustProxy),
    });
    server = s;
    const publicAddress = await bind(s, config.listen);
    if (config.adminListen !== false) {
      const where = config.adminListen ?? {
        host: '127.0.0.1',
        port: config.listen.port === 0 ? 0 : config.listen.port + 1,
      };
      adminServer = createServer(
        { requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 },
        admin,
      );
      adminBound = await bind(adminServer, where);
    }
    bound = publicAddress;
    logger.info(
      {
        listen: bound.url,
        admin: adminBound?.url ?? 'off',
        upstream: config.upstream,
        limit: parts.gate.limit,
        limitSource: parts.limitSource,
        semaphore: parts.redis ? 'redis' : 'local',
        validator: parts.validatorKind,
        l2: parts.redis ? 'redis' : 'disabled',
        redis: redisStatus(parts)?.mode ?? 'disabled',
      },
      'sluice-gateway listening',
    );
    // Lifecycle lines go out at once; the access log may wait for its buffer to fill.
    logger.flush();
    return bound;
  }

  async function shutdown(graceMs: number): Promise<DrainResult> {
    state = 'draining';
    const inFlightAtStart = pipeline.active;
    // A gateway that never listened (its address was taken) closes quietly: the CLI said why.
    const lifecycle = bound ? 'info' : 'debug';
    logger[lifecycle]({ inFlight: inFlightAtStart, queued: parts.gate.queued, graceMs }, 'draining');
    logger.flush();
    events.emit('draining', { inFlight: inFlightAtStart, graceMs });
    const serverClosed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server?.closeIdleConnections();
    // Queued requests are answered 503 (E_CLOSED) at once; admitted ones keep their slot.
    const admissionClosed = pipeline.close().then(() => parts.gate.close());
    const drained = await pipeline.waitForIdle(graceMs);
    const cutOff = drained ? 0 : pipeline.active;
    if (!drained) {
      logger.warn({ cutOff }, 'grace period over: cutting the requests still in flight');
      server?.closeAllConnections();
      await parts.dispatcher.destroy().catch(() => undefined);
    } else {
      await parts.dispatcher.close().catch(() => undefined);
    }
    // Keep-alive sockets that went idle after their last response are closed now; anything still
    // open a second later is cut, so shutdown never hangs on a client that keeps its socket.
    server?.closeIdleConnections();
    const lingering = setTimeout(() => server?.closeAllConnections(), 1_000);
    await serverClosed;
    clearTimeout(lingering);
    adminServer?.closeAllConnections();
    await new Promise<void>((resolve) => (adminServer ? adminServer.close(() => resolve()) : resolve()));
    await admissionClosed;
    await parts.close();
    activity.close();
    state = 'closed';
    const result = { completed: inFlightAtStart - cutOff, cutOff };
    logger[lifecycle](result, 'sluice-gateway closed');
    events.emit('closed', result);
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    return result;
  }

  let starting: Promise<GatewayAddress> | undefined;
  let closing: Promise<DrainResult> | undefined;
  const gateway: Gateway = {
    handler: pipeline.handle,
    config,
    logger,
    metrics,
    cache: parts.cache,
    admission: pipeline.admission,
    listen() {
      if (state !== 'running') return Promise.reject(new GatewayError('E_CLOSED', 'the gateway is closed'));
      starting ??= start();
      return starting;
    },
    address: () => bound,
    adminAddress: () => adminBound,
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
