import { show, withTimeout } from '@sluice/kit';
import { Cluster, type ClusterNode, type ClusterOptions, Redis } from 'ioredis';

/** A Redis client the L2 tier can use: an ioredis `Redis` or `Cluster`. */
export type RedisClient = Redis | Cluster;

/** A Redis Cluster described by its seed nodes (the cache builds and owns the `Cluster`). */
export interface RedisClusterConfig {
  readonly cluster: readonly ClusterNode[];
  /** Passed to `new Cluster()`; the cache forces `enableOfflineQueue: false` and a small `maxRetriesPerRequest`. */
  readonly options?: ClusterOptions | undefined;
}

/** Where L2 lives: a URL, a client the caller owns, or a cluster description. */
export type RedisSource = string | RedisClient | RedisClusterConfig;

/** Throws a TypeError naming `options.l2.redis` unless `source` is a usable {@link RedisSource}. */
export function checkRedisSource(source: unknown): RedisSource {
  if (typeof source === 'string') {
    if (/^rediss?:\/\//.test(source)) return source;
    throw new TypeError(`options.l2.redis should be a redis:// or rediss:// URL, got ${show(source)}`);
  }
  if (isClient(source)) return source;
  // (after the clients: a Redis client has a `cluster` method)
  if (typeof source === 'object' && source !== null && 'cluster' in source) {
    const nodes = (source as RedisClusterConfig).cluster;
    if (Array.isArray(nodes) && nodes.length > 0) return source as RedisClusterConfig;
    throw new TypeError(`options.l2.redis.cluster should be a non-empty array of nodes, got ${show(nodes)}`);
  }
  throw new TypeError(
    `options.l2.redis should be a Redis URL (or REDIS_URL set), an ioredis Redis or Cluster, or { cluster }, got ${show(source)}`,
  );
}

/** An ioredis `Redis` or `Cluster`, or anything shaped like one. */
function isClient(v: unknown): v is RedisClient {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return ['get', 'set', 'duplicate'].every((m) => typeof o[m] === 'function') && typeof o.status === 'string';
}

/**
 * The client for `source`: built (and owned, so quit on close) from a URL or cluster description,
 * with no offline queue and one retry per command, or the caller's own (never quit).
 */
export function connectRedis(
  source: RedisSource,
  timeoutMs: number,
): { client: RedisClient; owned: boolean } {
  if (isClient(source)) return { client: source, owned: false };
  const connectTimeout = Math.max(1_000, timeoutMs * 10);
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);
  // Auto-pipelining: commands issued in the same tick share one write (fewer syscalls under load).
  const client =
    typeof source === 'string'
      ? new Redis(source, {
          enableOfflineQueue: false,
          enableAutoPipelining: true,
          maxRetriesPerRequest: 1,
          connectTimeout,
          retryStrategy,
        })
      : new Cluster([...source.cluster], {
          enableAutoPipelining: true,
          ...source.options,
          enableOfflineQueue: false,
          clusterRetryStrategy: retryStrategy,
          redisOptions: { ...source.options?.redisOptions, maxRetriesPerRequest: 1, connectTimeout },
        });
  client.on('error', () => {}); // failures surface through commands, L2's health and events
  return { client, owned: true };
}

/** Quits an ioredis client politely within `timeoutMs` (at least 100 ms), then drops the connection. */
export async function quitClient(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') {
    await withTimeout(() => client.quit(), Math.max(timeoutMs, 100)).catch(() => undefined);
  }
  if (client.status !== 'end') client.disconnect();
}
