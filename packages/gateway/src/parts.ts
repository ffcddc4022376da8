// Wiring: the configuration turned into the components the gateway is made of (upstream
// connections, database pool and its background work, Redis, the admission gate and breaker,
// the validators and the session cache), and their closing, in one place.
import { createHmac } from 'node:crypto';
import { type AdmissionGate, CircuitBreaker, RedisSemaphore, Semaphore } from '@sluice/admission';
import { Health, type TypedEvents, withTimeout } from '@sluice/kit';
import {
  type ConnectionMonitor,
  detectPgBouncer,
  monitorConnections,
  monitorPgBouncer,
  type PgBouncerMonitor,
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
  type Validator,
} from '@sluice/session-cache';
import { Pool } from 'undici';
import type { GatewayConfig } from './config/settings.js';
import { admissionLimit, DEFAULT_LIMIT } from './limits.js';
import type { GatewayLogger } from './logger.js';
import { createRedisClient } from './redis-client.js';
import type { AdmissionStatus, BreakerState, CacheStatus } from './status.js';

/** `application_name` of the gateway's own database connections. */
export const GATEWAY_APPLICATION_NAME = 'sluice-gateway';

/** Events of a gateway; `on()` returns the unsubscribe function. */
export interface GatewayEvents {
  /** A request ended (the access log line). */
  request: import('./pipeline.js').AccessLogEntry;
  /** `close()` began: no new connections, in-flight requests finishing. */
  draining: { readonly inFlight: number; readonly graceMs: number };
  /** Everything is closed. */
  closed: import('./gateway.js').DrainResult;
  /** The admission budget changed (database sample, configuration). */
  limit: { readonly limit: number; readonly previous: number };
  /** The upstream circuit breaker changed state. */
  breaker: { readonly from: BreakerState; readonly to: BreakerState };
  /** The database stopped answering (`down`) or answers again (`up`); only with `databaseGuard`. */
  database: { readonly state: 'up' | 'down'; readonly downForMs: number | undefined };
}

/** What {@link buildParts} takes besides the configuration. */
export interface PartsOptions {
  readonly logger: GatewayLogger;
  readonly events: TypedEvents<GatewayEvents>;
  readonly now: () => number;
  /** Replaces the validators the gateway would build. */
  readonly validator?: Validator | undefined;
}

/** The components of a gateway. */
export type GatewayParts = ReturnType<typeof buildParts>;

/** Builds every component from the configuration (what each mode has: see `createGateway`). */
export function buildParts(config: GatewayConfig, o: PartsOptions) {
  const { logger, events } = o;
  const dispatcher = new Pool(config.upstream, {
    connections: config.upstreamConnections,
    connectTimeout: config.upstreamConnectTimeoutMs,
    headersTimeout: config.upstreamHeadersTimeoutMs,
    bodyTimeout: config.upstreamBodyTimeoutMs,
    keepAliveTimeout: config.upstreamKeepAliveMs,
    pipelining: 1,
  });

  const pool =
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

  // One client shared by the L2 cache and the semaphore; each duplicates it for its subscriber.
  const redis =
    config.redisUrl === undefined
      ? undefined
      : createRedisClient({
          url: config.redisUrl,
          cluster: config.redisCluster,
          connectionName: GATEWAY_APPLICATION_NAME,
          connectTimeoutMs: 2_000,
        });
  let redisDown = false;
  redis?.on('error', (error) => {
    if (!redisDown) logger.warn({ err: error }, 'redis unreachable; the gateway carries on without it');
    redisDown = true;
  });
  redis?.on('ready', () => {
    if (redisDown) logger.info('redis reachable again');
    redisDown = false;
  });

  // --- admission ------------------------------------------------------------------------------
  const limit = admissionLimit(config, pool !== undefined, GATEWAY_APPLICATION_NAME);
  const gateOptions = {
    limit: limit.source,
    maxQueue: config.queueMax,
    queueTimeoutMs: { interactive: config.queueTimeoutMs, bulk: config.bulkQueueTimeoutMs },
    interactiveReserve: config.interactiveReserve,
    bulkShare: Math.min(config.bulkShare, 1 - config.interactiveReserve),
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
  gate.on('limit', ({ limit: value, previous }) => {
    logger.debug({ limit: value, previous }, 'admission limit changed');
    events.emit('limit', { limit: value, previous });
  });
  // A call without the upstream's response head within its headers timeout counts as a failure.
  const breaker = new CircuitBreaker({
    name: 'upstream',
    resetTimeoutMs: 5_000,
    timeoutMs: config.upstreamHeadersTimeoutMs,
  });
  breaker.on('state', ({ from, to }) => {
    logger.warn({ from, to }, 'upstream circuit breaker changed state');
    events.emit('breaker', { from, to });
  });

  // --- validators and the session cache -------------------------------------------------------
  let validations = 0;
  const upstreamHost = new URL(config.upstream).host;
  const introspection = (): Validator => {
    const remote = introspectionValidator({
      url: new URL(config.introspectionPath, config.upstream),
      timeoutMs: Math.min(config.upstreamHeadersTimeoutMs, 10_000),
      cookieName: config.sessionCookieName,
      // Django refuses a Host with an underscore (compose's `cvat_server`): then `localhost`.
      host: upstreamHost.includes('_') ? 'localhost' : upstreamHost,
      // CVAT re-saves a session on every answer unless this cookie says it is fresh.
      cookies: { sessionfresh: '1' },
    });
    // Each introspection call costs the upstream a database connection: it takes an admission slot,
    // under a key of its own (validations are not one client, so no per-client cap applies).
    return {
      kinds: remote.kinds,
      async validate(credential, { signal }) {
        validations += 1;
        const permit = await gate.acquire({
          key: `sluice:validator:${validations}`,
          priority: 'interactive',
          signal,
        });
        try {
          return await remote.validate(credential, { signal });
        } finally {
          permit.release('ignore');
        }
      },
    };
  };
  /** With a database: sessions and DRF tokens from Django's tables, Bearer and Basic through the upstream. */
  const databaseValidator = (database: SluicePool): Validator => {
    const tables = djangoDatabaseValidator({ pool: database, secretKey: config.secretKey });
    const remote = introspection();
    return compositeValidator({ session: tables, token: tables, bearer: remote, basic: remote });
  };
  const validator = o.validator ?? (pool ? databaseValidator(pool) : introspection());
  const validatorKind: CacheStatus['validator'] = o.validator
    ? 'custom'
    : pool
      ? 'database'
      : 'introspection';
  // Without a pepper of its own, every gateway derives the same one from Django's SECRET_KEY.
  const pepper =
    config.cachePepper ??
    (config.secretKey === undefined
      ? undefined
      : createHmac('sha256', config.secretKey).update('sluice-gateway:cache-pepper').digest('base64url'));
  const cache = createSessionCache({
    validator,
    ttlMs: config.cacheTtlMs,
    // With Redis, L1 is kept short (5 s) so a lost invalidation message cannot outlive it on this
    // process; without Redis, L1 is the only tier and invalidations are local: it keeps the full TTL.
    l1: { max: config.cacheMax, ttlMs: redis ? Math.min(5_000, config.cacheTtlMs) : config.cacheTtlMs },
    l2: redis
      ? { redis, prefix: `${config.redisPrefix}session:`, timeoutMs: config.cacheRedisTimeoutMs }
      : false,
    now: o.now,
    env: {},
    negative: { max: Math.max(100, Math.min(10_000, Math.ceil(config.cacheMax / 10))), ttlMs: 5_000 },
    pepper,
  });
  cache.on('l2:down', ({ error }) =>
    logger.warn({ err: error }, 'session cache L2 (Redis) down: L1 and validator only'),
  );
  cache.on('l2:up', ({ downForMs }) => logger.info({ downForMs }, 'session cache L2 (Redis) back'));

  // --- database background work ---------------------------------------------------------------
  const tallies = { reaped: 0, purged: 0 };
  let pgbouncer: PgBouncerMonitor | undefined;
  let reaper: Reaper | undefined;
  let limitSource: AdmissionStatus['limitSource'] = config.dbBudget !== undefined ? 'configured' : 'default';
  const monitor =
    pool && monitorConnections({ pool, intervalMs: config.monitorIntervalMs, warnAt: 0.8, criticalAt: 0.95 });
  monitor?.on('threshold', ({ level, previous, usage }) =>
    logger.warn({ level, previous, usage }, 'database connections crossed a threshold'),
  );
  monitor?.on('error', (error) => logger.warn({ err: error }, 'connection monitor sample failed'));
  monitor?.on('sample', (sample) => limit.onPostgresSample(sample, gate.inFlight, pgbouncer !== undefined));
  /** The database guard (`databaseGuard` with a database). */
  const databaseHealth = pool && monitor && config.databaseGuard ? guardDatabase(pool, monitor) : undefined;
  const purger = pool && config.sessionPurge ? purgeSessions(pool) : undefined;

  function guardDatabase(database: SluicePool, m: ConnectionMonitor): Health {
    const guard = new Health({
      name: 'database',
      probe: (signal) => database.query('SELECT 1', [], { signal, timeoutMs: config.readyTimeoutMs }),
      probeIntervalMs: config.databaseProbeIntervalMs,
      probeTimeoutMs: config.readyTimeoutMs,
      now: o.now,
    });
    m.on('sample', () => guard.success());
    m.on('error', (error) => guard.suspect(error));
    database.on('error', ({ error }) => guard.suspect(error));
    guard.on('down', ({ error }) => {
      logger.error({ err: error }, 'database unreachable: requests that need it are answered 503');
      events.emit('database', { state: 'down', downForMs: undefined });
    });
    guard.on('up', ({ downForMs }) => {
      if (downForMs === undefined) return;
      logger.info({ downForMs }, 'database reachable again');
      events.emit('database', { state: 'up', downForMs });
    });
    return guard;
  }

  function purgeSessions(database: SluicePool): SessionPurger {
    const p = schedulePurge({ pool: database, intervalMs: config.sessionPurgeIntervalMs });
    p.on('purge', ({ deleted, ms }) => {
      tallies.purged += deleted;
      if (deleted > 0) logger.info({ deleted, ms }, 'purged expired sessions');
    });
    p.on('error', (error) => logger.warn({ err: error }, 'session purge failed'));
    return p;
  }

  /** The reaper, for a database the gateway reaches directly (behind PgBouncer it sees no leaks). */
  function startReaper(database: SluicePool, name: string): Reaper {
    const r = scheduleReaper({
      pool: database,
      applicationName: config.upstreamApplicationName,
      // Only the upstream's own database: other databases on the server are someone else's.
      ...(name === '' ? {} : { database: name }),
      idleForMs: config.reaperIdleMs,
      intervalMs: config.reaperIntervalMs,
      ...(config.reaperLastQuery === '' ? {} : { lastQuery: config.reaperLastQuery }),
      // Never a connection that may serve a request in flight: that many idle ones are kept.
      keep: () => gate.inFlight,
      onDenied: 'report',
      now: o.now,
    });
    r.on('reap', (result) => {
      tallies.reaped += result.reaped.length;
      if (result.reaped.length > 0 || result.denied.length > 0) {
        logger.warn(
          { reaped: result.reaped.length, denied: result.denied.length, kept: result.kept },
          'ended idle connections the upstream leaked',
        );
      }
    });
    r.on('error', (error) => logger.warn({ err: error }, 'reaper run failed'));
    return r;
  }

  async function start(): Promise<void> {
    if (!pool || !monitor) return;
    const bounded = config.readyTimeoutMs * 2;
    const adminUrl =
      config.pgbouncerAdminUrl ??
      (await detectPgBouncer(config.databaseUrl ?? '', { timeoutMs: bounded }).catch(() => undefined))
        ?.adminUrl;
    const database = decodeURIComponent(new URL(config.databaseUrl ?? '').pathname.slice(1));
    if (adminUrl !== undefined) {
      const b = monitorPgBouncer({
        adminUrl,
        ...(database === '' ? {} : { database }),
        intervalMs: config.monitorIntervalMs,
        timeoutMs: config.readyTimeoutMs,
      });
      b.on('sample', (sample) => limit.onPgBouncerSample(sample));
      b.on('error', (error) => logger.warn({ err: error }, 'PgBouncer sample failed'));
      pgbouncer = b;
      limitSource = 'pgbouncer';
      await withTimeout(() => b.sampleNow(), bounded).catch((error: unknown) =>
        logger.warn({ err: error }, 'PgBouncer not sampled yet; the limit follows it once it answers'),
      );
      return;
    }
    // 'database' once a sample came in: until then the limit is the default.
    monitor.on('sample', () => {
      if (limitSource !== 'pgbouncer') limitSource = 'database';
    });
    try {
      await withTimeout(() => monitor.sampleNow(), bounded, { message: 'first sample timed out' });
    } catch (error) {
      logger.warn(
        { err: error, limit: DEFAULT_LIMIT },
        'database not sampled yet; the limit starts at the default and follows it once it answers',
      );
    }
    if (config.reaper) reaper = startReaper(pool, database);
  }

  async function close(): Promise<void> {
    const results = await Promise.allSettled([
      gate.close(),
      breaker.close(),
      cache.close(),
      reaper?.close(),
      purger?.close(),
      monitor?.close(),
      pgbouncer?.close(),
      databaseHealth?.close(),
    ]);
    limit.close();
    await pool
      ?.close()
      .catch((error: unknown) => logger.warn({ err: error }, 'closing the database pool failed'));
    if (redis) await redis.quit().catch(() => redis.disconnect());
    for (const r of results) if (r.status === 'rejected') logger.warn({ err: r.reason }, 'close step failed');
  }

  return {
    dispatcher,
    pool,
    redis,
    gate,
    breaker,
    cache,
    validatorKind,
    monitor,
    databaseHealth,
    get reaper() {
      return reaper;
    },
    purger,
    limit,
    get limitSource() {
      return limitSource;
    },
    tallies,
    start,
    close,
  };
}
