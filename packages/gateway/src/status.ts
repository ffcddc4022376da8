import type { CircuitState } from '@sluice/admission';
import type { PoolStats } from '@sluice/pool';
import type { SessionCacheStats } from '@sluice/session-cache';
import { Cluster } from 'ioredis';
import type { Activity, ActivityStatus } from './activity/activity.js';
import type { ShedReason } from './activity/shed-reason.js';
import type { GatewayConfig } from './config/settings.js';
import type { ConnectionFigures } from './connections.js';
import type { RequestClass } from './cvat-profile.js';
import type { GatewayParts } from './parts.js';
import type { Pipeline } from './pipeline.js';
import { describeError } from './readiness.js';
import { GATEWAY_VERSION } from './version.js';

/** Circuit breaker state, as `@sluice/admission` reports it. */
export type BreakerState = CircuitState;

/** Admission figures of one class. */
export interface ClassStatus {
  /** Requests of the class holding a slot now. */
  readonly inFlight: number;
  /** Requests of the class waiting for a slot now. */
  readonly queued: number;
}

/** Live admission figures. */
export interface AdmissionStatus {
  /** The budget: most concurrent upstream requests. */
  readonly limit: number;
  readonly inFlight: number;
  readonly queued: number;
  readonly available: number;
  /** Where the limit came from. */
  readonly limitSource: 'configured' | 'database' | 'default' | 'pgbouncer';
  /** The ceiling the limit never crosses. */
  readonly ceiling: number;
  /** Why load control last moved or held the limit (`off` without it). */
  readonly control: string;
  /** `local` semaphore or `redis` (shared by every gateway). */
  readonly semaphore: 'local' | 'redis';
  readonly byClass: Readonly<Record<RequestClass, ClassStatus>>;
  /** Requests refused by admission since start (queue full, timeout, breaker open, per-client cap). */
  readonly rejected: number;
}

/** Live session cache figures (counters since start; see `SessionCacheStats`). */
export interface CacheStatus
  extends Pick<
    SessionCacheStats,
    'l1Hits' | 'l2Hits' | 'misses' | 'validatorCalls' | 'validatorErrors' | 'l1Size' | 'l2State'
  > {
  /** `(l1Hits + l2Hits) / (l1Hits + l2Hits + misses)`, or `null` before the first lookup. */
  readonly hitRatio: number | null;
  /** `database`, `introspection`, or `custom` (the `validator` option). */
  readonly validator: 'database' | 'introspection' | 'custom';
}

/** The upstream database as the connection monitor last saw it (`null` without a database URL). */
export interface DatabaseStatus {
  /** Client backends now. */
  readonly connections: number | null;
  readonly maxConnections: number | null;
  readonly reservedConnections: number | null;
  readonly byState: Readonly<Record<string, number>>;
  /** `ok`, `warn` or `critical` (usage of max_connections minus reserved). */
  readonly level: string;
  /** When the last sample was taken, epoch ms. */
  readonly sampledAt: number | null;
  /** The gateway's own pool. */
  readonly pool: Pick<PoolStats, 'max' | 'total' | 'idle' | 'waiting'>;
  /** Reachability (`databaseGuard`): `up`, `down` (requests that need it get 503), or `unguarded`. */
  readonly health: {
    readonly state: 'up' | 'down' | 'unguarded';
    /** When the current outage began, epoch ms (`null` while up). */
    readonly downSince: number | null;
    /** Outages seen since start. */
    readonly outages: number;
    /** Why the last probe failed, while down. */
    readonly lastError: string | null;
  };
  /** Connections the reaper terminated since start (`null` when the reaper is off). */
  readonly reaped: number | null;
  /** Expired sessions purged since start (`null` when the purge is off). */
  readonly purged: number | null;
}

/** The Redis the cache's L2 and the semaphore share (`null` without `redisUrl`). */
export interface RedisStatus {
  /** `single` server or Redis `cluster` (`redisCluster`). */
  readonly mode: 'single' | 'cluster';
  /** The ioredis client's connection status (`ready`, `connecting`, `reconnecting`, ...). */
  readonly status: string;
  /** Masters known to the client: 1 for a single server; for a cluster, those its slot map names. */
  readonly nodes: number;
}

/** Request counters since start. */
export interface RequestStatus {
  readonly total: number;
  readonly byClass: Readonly<Record<RequestClass | 'gateway', number>>;
  /** By status class: `2xx`, `3xx`, `4xx`, `5xx` (499: client went away, counted as `4xx`). */
  readonly byStatus: Readonly<Record<string, number>>;
  readonly upstreamErrors: number;
  /** Requests the gateway answered itself instead of the upstream, by reason. */
  readonly shed: Readonly<Record<ShedReason, number>>;
}

/** Everything `/sluice/status.json` answers and the metrics read. */
export interface StatusSnapshot extends Omit<ActivityStatus, 'shed'> {
  /** Epoch ms. */
  readonly at: number;
  readonly startedAt: number;
  readonly version: string;
  readonly upstream: string;
  /** `running`, `draining` (SIGTERM received) or `closed`. */
  readonly state: 'running' | 'draining' | 'closed';
  readonly admission: AdmissionStatus;
  readonly breaker: BreakerState;
  readonly cache: CacheStatus;
  readonly database: DatabaseStatus | null;
  readonly redis: RedisStatus | null;
  readonly requests: RequestStatus;
  /** Client connections (`null` before `listen()`). */
  readonly connections: ConnectionFigures | null;
}

/** The gauges the activity samples every second. */
export function activityGauges(parts: GatewayParts) {
  const { gate, limit, monitor, breaker, databaseHealth } = parts;
  const sample = monitor?.lastSample;
  return {
    inFlight: gate.inFlight,
    queued: gate.queued,
    limit: gate.limit,
    ceiling: limit.ceiling.current,
    /** Client connections on the database server (`null` without a database or sample). */
    dbConnections: sample?.total ?? null,
    /** `max_connections` minus reserved (`null` without a database or sample). */
    dbMax: sample ? sample.maxConnections - sample.reservedConnections : null,
    breaker: breaker.state,
    /** `null` without a database guard. */
    database: databaseHealth ? (databaseHealth.state === 'down' ? 'down' : 'up') : null,
  } as const;
}

/** The Redis figures of the status page and readiness (`null` without Redis). */
export function redisStatus({ redis }: GatewayParts): RedisStatus | null {
  if (redis === undefined) return null;
  const cluster = redis instanceof Cluster;
  return {
    mode: cluster ? 'cluster' : 'single',
    status: redis.status,
    nodes: cluster ? redis.nodes('master').length : 1,
  };
}

/** What {@link statusSnapshot} reads. */
export interface StatusSources {
  readonly config: GatewayConfig;
  readonly parts: GatewayParts;
  readonly pipeline: Pipeline;
  readonly state: StatusSnapshot['state'];
  readonly startedAt: number;
  readonly now: () => number;
  readonly connections: ConnectionFigures | undefined;
  readonly activity: Activity;
}

/** The live figures of a gateway: what `/sluice/status.json` answers and the metrics read. */
export function statusSnapshot(s: StatusSources): StatusSnapshot {
  const { parts, config } = s;
  const { gate, cache, monitor, databaseHealth: health, redis } = parts;
  const sample = monitor?.lastSample;
  const stats = cache.stats();
  const looked = stats.l1Hits + stats.l2Hits + stats.misses;
  const poolStats = parts.pool?.stats();
  const { rejected, ...requests } = s.pipeline.counts();
  const { shed, ...who } = s.activity.status();
  return {
    at: s.now(),
    startedAt: s.startedAt,
    version: GATEWAY_VERSION,
    upstream: config.upstream,
    state: s.state,
    admission: {
      limit: gate.limit,
      inFlight: gate.inFlight,
      queued: gate.queued,
      available: gate.available,
      limitSource: parts.limitSource,
      ceiling: parts.limit.ceiling.current,
      control: parts.limit.load?.reason ?? 'off',
      semaphore: redis ? 'redis' : 'local',
      byClass: s.activity.byClassNow(),
      rejected,
    },
    breaker: parts.breaker.state,
    cache: {
      l1Hits: stats.l1Hits,
      l2Hits: stats.l2Hits,
      misses: stats.misses,
      validatorCalls: stats.validatorCalls,
      validatorErrors: stats.validatorErrors,
      hitRatio: looked === 0 ? null : (stats.l1Hits + stats.l2Hits) / looked,
      l1Size: stats.l1Size,
      l2State: stats.l2State,
      validator: parts.validatorKind,
    },
    database: poolStats
      ? {
          connections: sample?.total ?? null,
          maxConnections: sample?.maxConnections ?? null,
          reservedConnections: sample?.reservedConnections ?? null,
          byState: { ...(sample?.byState ?? {}) },
          level: monitor?.level ?? 'ok',
          sampledAt: sample?.at ?? null,
          pool: {
            max: poolStats.max,
            total: poolStats.total,
            idle: poolStats.idle,
            waiting: poolStats.waiting,
          },
          health: health
            ? {
                state: health.state === 'down' ? 'down' : 'up',
                downSince: health.downSince ?? null,
                outages: health.outages,
                lastError: health.state === 'down' ? describeError(health.lastError) : null,
              }
            : { state: 'unguarded', downSince: null, outages: 0, lastError: null },
          reaped: parts.reaper ? parts.tallies.reaped : null,
          purged: parts.purger ? parts.tallies.purged : null,
        }
      : null,
    redis: redisStatus(parts),
    connections: s.connections ?? null,
    requests: { ...requests, shed },
    ...who,
  };
}
