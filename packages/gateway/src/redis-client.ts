import { Cluster, Redis } from 'ioredis';

/** A `redis://` / `rediss://` URL taken apart; several hosts are Redis Cluster seed nodes. */
export interface RedisTarget {
  /** Every host of the URL, in order (one for a plain URL). */
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** `rediss://`. */
  readonly tls: boolean;
  /** The database number of the path (`/0` when absent). Redis Cluster only has database 0. */
  readonly db: number;
  /** Whether the URL carries a `?query`. */
  readonly hasQuery: boolean;
}

const REDIS_URL = /^(rediss?):\/\/(?:([^@/?#]*)@)?([^@/?#]+)(\/[^?#]*)?(\?[^#]*)?$/;

function decode(part: string): string | undefined {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}

/**
 * Takes a Redis URL apart. Besides the usual `redis://[user:password@]host:port[/db]` it accepts
 * several comma-separated hosts, `redis://h1:7000,h2:7001,h3:7002`: the seed nodes of a Redis
 * Cluster. A host without a port gets 6379.
 *
 * @example
 * ```ts
 * const parsed = parseRedisUrl('redis://10.0.0.1:7000,10.0.0.2:7000');
 * if ('value' in parsed) console.log(parsed.value.nodes.length); // 2
 * ```
 */
export function parseRedisUrl(raw: string): { value: RedisTarget } | { reason: string } {
  const match = REDIS_URL.exec(raw);
  if (!match) {
    return { reason: 'is not a Redis URL (expected redis://host:port or redis://h1:port,h2:port,...)' };
  }
  const [, scheme, auth, hosts = '', path, query] = match;
  const nodes: { host: string; port: number }[] = [];
  for (const entry of hosts.split(',')) {
    if (entry === '') return { reason: 'has an empty host in its comma-separated host list' };
    const address = `redis://${entry}`;
    const url = URL.canParse(address) ? new URL(address) : undefined;
    if (!url?.hostname) return { reason: `host ${JSON.stringify(entry)} is not host:port` };
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    nodes.push({ host, port: url.port === '' ? 6379 : Number(url.port) });
  }
  let username: string | undefined;
  let password: string | undefined;
  if (auth !== undefined && auth !== '') {
    const colon = auth.indexOf(':');
    const user = decode(colon === -1 ? auth : auth.slice(0, colon));
    const pass = colon === -1 ? '' : decode(auth.slice(colon + 1));
    if (user === undefined || pass === undefined) return { reason: 'has badly escaped credentials' };
    username = user === '' ? undefined : user;
    password = pass === '' ? undefined : pass;
  }
  const dbText = path === undefined || path === '/' ? '0' : path.slice(1);
  if (!/^\d{1,5}$/.test(dbText)) return { reason: 'path must be a database number, like /0' };
  return {
    value: {
      nodes,
      username,
      password,
      tls: scheme === 'rediss',
      db: Number(dbText),
      hasQuery: query !== undefined && query !== '?',
    },
  };
}

/** `url` with the password of its credentials replaced by `redacted` (works for multi-host URLs). */
export function redactRedisUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:@/]*:)[^@/]*@/, '$1redacted@');
}

/** Options of {@link createRedisClient}. */
export interface RedisClientOptions {
  /** A `redis://` URL; with `cluster`, its hosts are the seed nodes. */
  readonly url: string;
  /** Build an ioredis `Cluster` instead of a `Redis`. */
  readonly cluster: boolean;
  /** `CLIENT SETNAME` of every connection. */
  readonly connectionName: string;
  /** Connect timeout of each connection, ms. */
  readonly connectTimeoutMs: number;
}

/**
 * Builds the gateway's one Redis client, shared by the session cache's L2 and the distributed
 * semaphore (each of them duplicates it once for its pub/sub subscriber). Commands fail fast while
 * Redis is unreachable (no offline queue, one retry) and reconnection backs off up to 2 s.
 *
 * @throws {TypeError} when `url` is not a Redis URL
 */
export function createRedisClient(options: RedisClientOptions): Redis | Cluster {
  const retry = (times: number): number => Math.min(2_000, 50 * times);
  const { connectTimeoutMs: connectTimeout, connectionName } = options;
  const each = { maxRetriesPerRequest: 1, connectTimeout, connectionName };
  if (!options.cluster)
    return new Redis(options.url, { enableOfflineQueue: false, ...each, retryStrategy: retry });
  const parsed = parseRedisUrl(options.url);
  if ('reason' in parsed) throw new TypeError(`options.url ${parsed.reason}`);
  const target = parsed.value;
  return new Cluster(
    target.nodes.map((n) => ({ host: n.host, port: n.port })),
    {
      enableOfflineQueue: false,
      clusterRetryStrategy: retry,
      slotsRefreshTimeout: connectTimeout,
      redisOptions: {
        ...each,
        ...(target.username === undefined ? {} : { username: target.username }),
        ...(target.password === undefined ? {} : { password: target.password }),
        ...(target.tls ? { tls: {} } : {}),
      },
    },
  );
}
