import { formatDuration, parseDuration } from './duration.js';
import { type ConfigIssue, GatewayConfigError } from './errors.js';
import { checkPathPattern } from './path-pattern.js';
import { CVAT_PUBLIC_PATHS } from './public-paths.js';
import { parseRedisUrl, redactRedisUrl } from './redis-client.js';

/** pino's level names, plus `silent`. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Where the gateway listens. */
export interface ListenAddress {
  readonly host: string;
  /** 0 picks a free port (read it back from `gateway.address()`). */
  readonly port: number;
}

/**
 * The gateway's resolved configuration. Every field has a default; see the README's flag table
 * or `sluice-gateway --help`.
 */
export interface GatewayConfig {
  /** The Django/CVAT server the gateway forwards to (an origin, no path). @default 'http://127.0.0.1:8080' */
  readonly upstream: string;
  /** @default { host: '127.0.0.1', port: 8090 } */
  readonly listen: ListenAddress;
  /** PostgreSQL the upstream uses. Enables database validation, budget sizing, the monitor. @default undefined */
  readonly databaseUrl: string | undefined;
  /**
   * Redis for the shared L2 cache and the distributed semaphore. With `redisCluster`, its
   * comma-separated hosts (`redis://h1:7000,h2:7000,h3:7000`) are Redis Cluster seed nodes.
   * @default undefined
   */
  readonly redisUrl: string | undefined;
  /**
   * `redisUrl` is a Redis Cluster: its hosts are seed nodes (one is enough, the rest are
   * discovered) and one ioredis `Cluster` serves the cache and the semaphore. @default false
   */
  readonly redisCluster: boolean;
  /** Maximum concurrent upstream requests. `undefined`: derived from the database, else 20. @default undefined */
  readonly dbBudget: number | undefined;
  /** Connections left to others when the budget is derived from `max_connections`. @default 10 */
  readonly dbReserve: number;
  /** Maximum requests waiting for a slot; more are answered 503. @default 1000 */
  readonly queueMax: number;
  /** Size of the gateway's own database pool (validator, monitor, reaper, purge). @default 4 */
  readonly poolMax: number;
  /** `application_name` of the upstream's database connections (budget sizing, reaper). @default '' */
  readonly upstreamApplicationName: string;
  /** Server-side secret of the cache keys; every gateway sharing Redis needs the same. @default derived from secretKey */
  readonly cachePepper: string | undefined;
  /** Prefix of every Redis key (cache and semaphore). @default 'sluice:' */
  readonly redisPrefix: string;
  /**
   * Longest wait for one session-cache Redis (L2) command (read, write, lock). A slower read
   * counts as a miss and the credential is validated instead; three failures in a row take L2 out
   * for a while (its breaker). Keep it well under the validator's cost. @default 100
   */
  readonly cacheRedisTimeoutMs: number;
  /**
   * Longest wait for one distributed-semaphore Redis call. A slower answer counts as Redis being
   * down: the gateway admits on its local fallback share until Redis answers again. @default 1000
   */
  readonly admissionRedisTimeoutMs: number;
  /**
   * How long a distributed permit outlives its gateway: renewed while the request runs, so only a
   * gateway that died holding it makes others wait this long for it. @default 30000
   */
  readonly permitLeaseMs: number;
  /** Longest a request waits for a slot before a 503. @default 30000 */
  readonly queueTimeoutMs: number;
  /** Maximum concurrent (in flight + queued) requests per client; 0 disables the cap. @default 0 */
  readonly perClientLimit: number;
  /** Share of the budget kept for interactive requests; bulk never takes it (0 <= share < 1). @default 0.2 */
  readonly interactiveReserve: number;
  /** Django's SECRET_KEY: lets the database validator verify session signatures. @default undefined */
  readonly secretKey: string | undefined;
  /** Paths that need no credential at the gateway. @default CVAT_PUBLIC_PATHS */
  readonly publicPaths: readonly string[];
  /** Extra paths treated as bulk, on top of CVAT's export/download/polling rules. @default [] */
  readonly bulkPaths: readonly string[];
  /** Django's SESSION_COOKIE_NAME. @default 'sessionid' */
  readonly sessionCookieName: string;
  /** How long a validated credential stays cached. @default 60000 */
  readonly cacheTtlMs: number;
  /** Maximum credentials in the in-process cache. @default 10000 */
  readonly cacheMax: number;
  /** Upstream path that answers 200 for a valid credential (no database). @default '/api/users/self' */
  readonly introspectionPath: string;
  /** Upstream path `/readyz` probes. @default '/api/server/about' */
  readonly upstreamHealthPath: string;
  /** Maximum keep-alive connections to the upstream. @default 128 */
  readonly upstreamConnections: number;
  /** @default 5000 */
  readonly upstreamConnectTimeoutMs: number;
  /** Longest wait for the upstream's response headers (then 504). @default 120000 */
  readonly upstreamHeadersTimeoutMs: number;
  /** Longest silence between two body chunks from the upstream. @default 300000 */
  readonly upstreamBodyTimeoutMs: number;
  /** Idle keep-alive connections to the upstream are closed after this. @default 4000 */
  readonly upstreamKeepAliveMs: number;
  /**
   * Longest silence while a client sends its request body: the request is then aborted (408 when
   * nothing was answered yet) and its admission slot freed. @default 30000
   */
  readonly clientBodyTimeoutMs: number;
  /**
   * Longest a client may take to send its request line and headers; the connection is then
   * answered 408 and closed. Node checks it every quarter of the timeout (clamped to 1-30 s), so
   * a connection is cut within 1.25x the timeout (within timeout + 1 s below 4 s). @default 60000
   */
  readonly clientHeadersTimeoutMs: number;
  /** Trust the client's X-Forwarded-* (the gateway sits behind another proxy). @default false */
  readonly trustProxy: boolean;
  /** Send the client's Host to the upstream (Django then builds URLs that point at the gateway). @default true */
  readonly preserveHost: boolean;
  /** On SIGTERM, how long in-flight requests may take to finish. @default 10000 */
  readonly shutdownGraceMs: number;
  /** Connection monitor sampling interval (with a database). @default 5000 */
  readonly monitorIntervalMs: number;
  /**
   * With a database: answer 503 `E_DATABASE_UNAVAILABLE` (with Retry-After) to requests that need
   * it while it is unreachable, instead of forwarding them to fail in the upstream. @default true
   */
  readonly databaseGuard: boolean;
  /** While the database is unreachable, how often it is probed (each probe bounded by `readyTimeoutMs`). @default 500 */
  readonly databaseProbeIntervalMs: number;
  /** Terminate the upstream's connections left idle longer than `reaperIdleMs`. @default false */
  readonly reaper: boolean;
  /** @default 300000 */
  readonly reaperIdleMs: number;
  /** @default 60000 */
  readonly reaperIntervalMs: number;
  /** Delete expired django_session rows in batches. @default false */
  readonly sessionPurge: boolean;
  /** @default 3600000 */
  readonly sessionPurgeIntervalMs: number;
  /** Timeout of each `/readyz` probe. @default 2000 */
  readonly readyTimeoutMs: number;
  /** @default 'info' */
  readonly logLevel: LogLevel;
}

/** What `createGateway()` accepts: any subset of {@link GatewayConfig}; `listen` may be `'host:port'`. */
export type GatewayConfigInput = {
  -readonly [K in keyof GatewayConfig]?: K extends 'listen' ? ListenAddress | string : GatewayConfig[K];
};

type Parsed<T> = { value: T } | { reason: string };

interface FieldSpec<K extends keyof GatewayConfig> {
  readonly key: K;
  readonly flag: string;
  readonly env: readonly string[];
  readonly kind: 'string' | 'int' | 'duration' | 'bool' | 'list' | 'number';
  readonly secret?: boolean;
  readonly doc: string;
  readonly defaultText: string;
  /** Parses a flag/env string. */
  parse(raw: string): Parsed<GatewayConfig[K]>;
  /** Validates a value given in code. */
  check(value: unknown): Parsed<GatewayConfig[K]>;
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function urlParser(protocols: readonly string[], originOnly: boolean) {
  return (raw: string): Parsed<string> => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return { reason: `is not a URL (expected ${protocols.map((p) => `${p}//...`).join(' or ')})` };
    }
    if (!protocols.includes(url.protocol)) {
      return { reason: `protocol ${url.protocol} is not one of ${protocols.join(', ')}` };
    }
    if (originOnly) {
      if (url.pathname !== '/' || url.search || url.hash)
        return { reason: 'must be an origin, without a path' };
      if (url.username || url.password) return { reason: 'must not carry credentials' };
      return { value: url.origin };
    }
    return { value: raw };
  };
}

function parseListen(raw: string): Parsed<ListenAddress> {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(raw) ?? /^()()(\d+)$/.exec(raw);
  if (!match) return { reason: 'expected host:port, [ipv6]:port or port' };
  const port = Number(match[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return { reason: 'port must be 0..65535' };
  const host = match[1] ?? match[2] ?? '';
  return { value: { host: host === '' ? '127.0.0.1' : host, port } };
}

function checkListen(value: unknown): Parsed<ListenAddress> {
  if (typeof value === 'string') return parseListen(value);
  if (typeof value === 'object' && value !== null) {
    const { host, port } = value as { host?: unknown; port?: unknown };
    if (typeof host !== 'string' || host === '') return { reason: 'host must be a non-empty string' };
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      return { reason: 'port must be an integer 0..65535' };
    }
    return { value: { host, port } };
  }
  return { reason: 'expected "host:port" or { host, port }' };
}

function intParser(min: number, max: number) {
  const check = (value: unknown): Parsed<number> => {
    if (typeof value !== 'number' || !Number.isInteger(value)) return { reason: 'must be an integer' };
    if (value < min || value > max) return { reason: `must be between ${min} and ${max}` };
    return { value };
  };
  const parse = (raw: string): Parsed<number> =>
    /^-?\d+$/.test(raw.trim()) ? check(Number(raw)) : { reason: 'must be an integer' };
  return { parse, check };
}

function durationParser(minMs: number, maxMs: number) {
  const check = (value: unknown): Parsed<number> => {
    if (typeof value !== 'number' || !Number.isInteger(value))
      return { reason: 'must be an integer of milliseconds' };
    if (value < minMs || value > maxMs) {
      return { reason: `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)}` };
    }
    return { value };
  };
  const parse = (raw: string): Parsed<number> => {
    const ms = parseDuration(raw);
    return ms === undefined
      ? { reason: 'expected a duration like 500ms, 30s, 5m or a number of ms' }
      : check(ms);
  };
  return { parse, check };
}

const boolParser = {
  parse(raw: string): Parsed<boolean> {
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return { value: true };
    if (['0', 'false', 'no', 'off'].includes(v)) return { value: false };
    return { reason: 'expected true/false, yes/no, on/off or 1/0' };
  },
  check(value: unknown): Parsed<boolean> {
    return typeof value === 'boolean' ? { value } : { reason: 'must be a boolean' };
  },
};

function pathListParser() {
  const check = (value: unknown): Parsed<readonly string[]> => {
    if (!Array.isArray(value)) return { reason: 'must be an array of paths' };
    for (const item of value) {
      if (typeof item !== 'string') return { reason: 'every entry must be a string' };
      const reason = checkPathPattern(item);
      if (reason) return { reason: `${JSON.stringify(item)} ${reason}` };
    }
    return { value: Object.freeze([...(value as string[])]) };
  };
  const parse = (raw: string): Parsed<readonly string[]> =>
    check(
      raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    );
  return { parse, check };
}

function pathParser(raw: string): Parsed<string> {
  if (typeof raw !== 'string') return { reason: 'must be a string' };
  const reason = checkPathPattern(raw);
  return reason ? { reason } : { value: raw };
}

function optionalString(check: (raw: string) => Parsed<string>) {
  return {
    parse: (raw: string): Parsed<string | undefined> => check(raw),
    check: (value: unknown): Parsed<string | undefined> => {
      if (value === undefined) return { value: undefined };
      if (typeof value !== 'string') return { reason: 'must be a string' };
      return check(value);
    },
  };
}

function stringField(check: (raw: string) => Parsed<string>) {
  return {
    parse: check,
    check: (value: unknown): Parsed<string> =>
      typeof value === 'string' ? check(value) : { reason: 'must be a string' },
  };
}

const upstreamUrl = urlParser(['http:', 'https:'], true);
const databaseUrl = urlParser(['postgres:', 'postgresql:'], false);
const redisUrl = (raw: string): Parsed<string> => {
  const parsed = parseRedisUrl(raw);
  return 'reason' in parsed ? parsed : { value: raw };
};
const nonEmpty = (raw: string): Parsed<string> =>
  raw.length > 0 ? { value: raw } : { reason: 'must not be empty' };
const cookieName = (raw: string): Parsed<string> =>
  /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(raw) ? { value: raw } : { reason: 'is not a valid cookie name' };

const applicationName = (raw: string): Parsed<string> =>
  Buffer.byteLength(raw) <= 63
    ? { value: raw }
    : { reason: 'must be at most 63 bytes (PostgreSQL truncates longer names)' };
const pepper = (raw: string): Parsed<string> =>
  Buffer.byteLength(raw) >= 16 ? { value: raw } : { reason: 'must be at least 16 bytes' };
const redisPrefix = (raw: string): Parsed<string> =>
  /^[A-Za-z0-9:_.-]{1,64}$/.test(raw)
    ? { value: raw }
    : { reason: 'must be 1-64 characters of A-Z a-z 0-9 : _ . -' };

const budget = intParser(1, 100_000);
const optionalBudget = {
  parse: (raw: string): Parsed<number | undefined> => budget.parse(raw),
  check: (value: unknown): Parsed<number | undefined> =>
    value === undefined ? { value: undefined } : budget.check(value),
};

const share = {
  parse(raw: string): Parsed<number> {
    return /^\d*\.?\d+$/.test(raw.trim()) ? share.check(Number(raw)) : { reason: 'must be a number' };
  },
  check(value: unknown): Parsed<number> {
    if (typeof value !== 'number' || !Number.isFinite(value)) return { reason: 'must be a number' };
    if (value < 0 || value >= 1) return { reason: 'must be >= 0 and < 1' };
    return { value };
  },
};

const logLevel = {
  parse: (raw: string): Parsed<LogLevel> => logLevel.check(raw.trim().toLowerCase()),
  check: (value: unknown): Parsed<LogLevel> =>
    typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value)
      ? { value: value as LogLevel }
      : { reason: `must be one of ${LOG_LEVELS.join(', ')}` },
};

type AnyFieldSpec = { [K in keyof GatewayConfig]: FieldSpec<K> }[keyof GatewayConfig];

function field<K extends keyof GatewayConfig>(
  key: K,
  flag: string,
  env: readonly string[],
  kind: FieldSpec<K>['kind'],
  parser: Pick<FieldSpec<K>, 'parse' | 'check'>,
  doc: string,
  defaultText: string,
  secret = false,
): FieldSpec<K> {
  return { key, flag, env, kind, doc, defaultText, secret, parse: parser.parse, check: parser.check };
}

/** Every configurable field with its flag, environment variables, parser and documentation. */
export const CONFIG_FIELDS: readonly AnyFieldSpec[] = [
  field(
    'upstream',
    '--upstream',
    ['SLUICE_UPSTREAM'],
    'string',
    stringField(upstreamUrl),
    'the Django/CVAT server (origin)',
    'http://127.0.0.1:8080',
  ),
  field(
    'listen',
    '--listen',
    ['SLUICE_LISTEN'],
    'string',
    { parse: parseListen, check: checkListen },
    'address to listen on (host:port)',
    '127.0.0.1:8090',
  ),
  field(
    'databaseUrl',
    '--database-url',
    ['SLUICE_DATABASE_URL', 'DATABASE_URL'],
    'string',
    optionalString(databaseUrl),
    "the upstream's PostgreSQL: database validation, budget sizing, monitor",
    '(none)',
    true,
  ),
  field(
    'redisUrl',
    '--redis-url',
    ['SLUICE_REDIS_URL', 'REDIS_URL'],
    'string',
    optionalString(redisUrl),
    'Redis: shared L2 cache, distributed semaphore (several comma-separated hosts with --redis-cluster)',
    '(none)',
    true,
  ),
  field(
    'redisCluster',
    '--redis-cluster',
    ['SLUICE_REDIS_CLUSTER'],
    'bool',
    boolParser,
    '--redis-url is a Redis Cluster: its hosts are seed nodes',
    'false',
  ),
  field(
    'dbBudget',
    '--db-budget',
    ['SLUICE_DB_BUDGET'],
    'int',
    optionalBudget,
    'maximum concurrent upstream requests',
    'from the database, else 20',
  ),
  field(
    'dbReserve',
    '--db-reserve',
    ['SLUICE_DB_RESERVE'],
    'int',
    intParser(0, 100_000),
    'connections left to others when the budget comes from max_connections',
    '10',
  ),
  field(
    'poolMax',
    '--pool-max',
    ['SLUICE_POOL_MAX'],
    'int',
    intParser(1, 1_000),
    "size of the gateway's own database pool",
    '4',
  ),
  field(
    'upstreamApplicationName',
    '--upstream-application-name',
    ['SLUICE_UPSTREAM_APPLICATION_NAME'],
    'string',
    stringField(applicationName),
    "application_name of the upstream's database connections (budget, reaper)",
    "'' (Django sets none)",
  ),
  field(
    'cachePepper',
    '--cache-pepper',
    ['SLUICE_CACHE_PEPPER'],
    'string',
    optionalString(pepper),
    'secret of the cache keys (same on every gateway sharing Redis)',
    'derived from --secret-key',
    true,
  ),
  field(
    'redisPrefix',
    '--redis-prefix',
    ['SLUICE_REDIS_PREFIX'],
    'string',
    stringField(redisPrefix),
    'prefix of every Redis key',
    'sluice:',
  ),
  field(
    'cacheRedisTimeoutMs',
    '--cache-redis-timeout',
    ['SLUICE_CACHE_REDIS_TIMEOUT'],
    'duration',
    durationParser(10, 60_000),
    'longest wait for one cache Redis command (a slow read is a miss: the credential is validated)',
    '100ms',
  ),
  field(
    'admissionRedisTimeoutMs',
    '--admission-redis-timeout',
    ['SLUICE_ADMISSION_REDIS_TIMEOUT'],
    'duration',
    durationParser(10, 60_000),
    'longest wait for one semaphore Redis call (then the local fallback share)',
    '1s',
  ),
  field(
    'permitLeaseMs',
    '--permit-lease',
    ['SLUICE_PERMIT_LEASE'],
    'duration',
    durationParser(1_000, 3_600_000),
    'a distributed permit of a gateway that died returns after this (>= 3 x --admission-redis-timeout)',
    '30s',
  ),
  field(
    'queueMax',
    '--queue-max',
    ['SLUICE_QUEUE_MAX'],
    'int',
    intParser(0, 1_000_000),
    'maximum queued requests (then 503)',
    '1000',
  ),
  field(
    'queueTimeoutMs',
    '--queue-timeout',
    ['SLUICE_QUEUE_TIMEOUT'],
    'duration',
    durationParser(1, 3_600_000),
    'longest wait for a slot (then 503)',
    '30s',
  ),
  field(
    'perClientLimit',
    '--per-client-limit',
    ['SLUICE_PER_CLIENT_LIMIT'],
    'int',
    intParser(0, 1_000_000),
    'maximum concurrent requests per client (0: no cap)',
    '0',
  ),
  field(
    'interactiveReserve',
    '--interactive-reserve',
    ['SLUICE_INTERACTIVE_RESERVE'],
    'number',
    share,
    'share of the budget bulk requests can never take',
    '0.2',
  ),
  field(
    'secretKey',
    '--secret-key',
    ['SLUICE_SECRET_KEY', 'DJANGO_SECRET_KEY'],
    'string',
    optionalString(nonEmpty),
    "Django's SECRET_KEY (verifies session signatures)",
    '(none)',
    true,
  ),
  field(
    'publicPaths',
    '--public-path',
    ['SLUICE_PUBLIC_PATHS'],
    'list',
    pathListParser(),
    'path needing no credential (repeatable; added to the CVAT defaults)',
    'CVAT defaults',
  ),
  field(
    'bulkPaths',
    '--bulk-path',
    ['SLUICE_BULK_PATHS'],
    'list',
    pathListParser(),
    'extra path admitted as bulk (repeatable)',
    '(none)',
  ),
  field(
    'sessionCookieName',
    '--session-cookie',
    ['SLUICE_SESSION_COOKIE'],
    'string',
    stringField(cookieName),
    "Django's SESSION_COOKIE_NAME",
    'sessionid',
  ),
  field(
    'cacheTtlMs',
    '--cache-ttl',
    ['SLUICE_CACHE_TTL'],
    'duration',
    durationParser(1_000, 86_400_000),
    'how long a validated credential stays cached',
    '60s',
  ),
  field(
    'cacheMax',
    '--cache-max',
    ['SLUICE_CACHE_MAX'],
    'int',
    intParser(1, 10_000_000),
    'maximum credentials in the in-process cache',
    '10000',
  ),
  field(
    'introspectionPath',
    '--introspection-path',
    ['SLUICE_INTROSPECTION_PATH'],
    'string',
    stringField(pathParser),
    'upstream path that validates a credential when there is no database',
    '/api/users/self',
  ),
  field(
    'upstreamHealthPath',
    '--upstream-health-path',
    ['SLUICE_UPSTREAM_HEALTH_PATH'],
    'string',
    stringField(pathParser),
    'upstream path /readyz probes',
    '/api/server/about',
  ),
  field(
    'upstreamConnections',
    '--upstream-connections',
    ['SLUICE_UPSTREAM_CONNECTIONS'],
    'int',
    intParser(1, 100_000),
    'maximum keep-alive connections to the upstream',
    '128',
  ),
  field(
    'upstreamConnectTimeoutMs',
    '--upstream-connect-timeout',
    ['SLUICE_UPSTREAM_CONNECT_TIMEOUT'],
    'duration',
    durationParser(1, 600_000),
    'TCP connect timeout to the upstream',
    '5s',
  ),
  field(
    'upstreamHeadersTimeoutMs',
    '--upstream-headers-timeout',
    ['SLUICE_UPSTREAM_HEADERS_TIMEOUT'],
    'duration',
    durationParser(1, 86_400_000),
    'longest wait for response headers (then 504)',
    '2m',
  ),
  field(
    'upstreamBodyTimeoutMs',
    '--upstream-body-timeout',
    ['SLUICE_UPSTREAM_BODY_TIMEOUT'],
    'duration',
    durationParser(1, 86_400_000),
    'longest silence inside a response body',
    '5m',
  ),
  field(
    'upstreamKeepAliveMs',
    '--upstream-keep-alive',
    ['SLUICE_UPSTREAM_KEEP_ALIVE'],
    'duration',
    durationParser(1, 3_600_000),
    'idle upstream connections are closed after this',
    '4s',
  ),
  field(
    'clientBodyTimeoutMs',
    '--client-body-timeout',
    ['SLUICE_CLIENT_BODY_TIMEOUT'],
    'duration',
    durationParser(1, 3_600_000),
    'longest silence while a client sends a request body (then 408)',
    '30s',
  ),
  field(
    'clientHeadersTimeoutMs',
    '--client-headers-timeout',
    ['SLUICE_CLIENT_HEADERS_TIMEOUT'],
    'duration',
    durationParser(1_000, 600_000),
    'longest a client may take to send its request headers (then 408)',
    '60s',
  ),
  field(
    'trustProxy',
    '--trust-proxy',
    ['SLUICE_TRUST_PROXY'],
    'bool',
    boolParser,
    "append to the client's X-Forwarded-* instead of replacing them",
    'false',
  ),
  field(
    'preserveHost',
    '--preserve-host',
    ['SLUICE_PRESERVE_HOST'],
    'bool',
    boolParser,
    "send the client's Host header upstream",
    'true',
  ),
  field(
    'shutdownGraceMs',
    '--shutdown-grace',
    ['SLUICE_SHUTDOWN_GRACE'],
    'duration',
    durationParser(0, 3_600_000),
    'on SIGTERM, how long in-flight requests may finish',
    '10s',
  ),
  field(
    'monitorIntervalMs',
    '--monitor-interval',
    ['SLUICE_MONITOR_INTERVAL'],
    'duration',
    durationParser(100, 3_600_000),
    'database connection sampling interval',
    '5s',
  ),
  field(
    'databaseGuard',
    '--database-guard',
    ['SLUICE_DATABASE_GUARD'],
    'bool',
    boolParser,
    'answer 503 to requests that need the database while it is unreachable',
    'true',
  ),
  field(
    'databaseProbeIntervalMs',
    '--database-probe-interval',
    ['SLUICE_DATABASE_PROBE_INTERVAL'],
    'duration',
    durationParser(50, 60_000),
    'while the database is unreachable, how often it is probed',
    '500ms',
  ),
  field(
    'reaper',
    '--reaper',
    ['SLUICE_REAPER'],
    'bool',
    boolParser,
    "terminate the upstream's connections idle longer than --reaper-idle",
    'false',
  ),
  field(
    'reaperIdleMs',
    '--reaper-idle',
    ['SLUICE_REAPER_IDLE'],
    'duration',
    durationParser(1_000, 86_400_000),
    'idle time after which the reaper terminates a connection',
    '5m',
  ),
  field(
    'reaperIntervalMs',
    '--reaper-interval',
    ['SLUICE_REAPER_INTERVAL'],
    'duration',
    durationParser(1_000, 86_400_000),
    'how often the reaper runs',
    '1m',
  ),
  field(
    'sessionPurge',
    '--session-purge',
    ['SLUICE_SESSION_PURGE'],
    'bool',
    boolParser,
    'delete expired django_session rows in batches',
    'false',
  ),
  field(
    'sessionPurgeIntervalMs',
    '--session-purge-interval',
    ['SLUICE_SESSION_PURGE_INTERVAL'],
    'duration',
    durationParser(1_000, 604_800_000),
    'how often expired sessions are purged',
    '1h',
  ),
  field(
    'readyTimeoutMs',
    '--ready-timeout',
    ['SLUICE_READY_TIMEOUT'],
    'duration',
    durationParser(1, 60_000),
    'timeout of each /readyz probe',
    '2s',
  ),
  field(
    'logLevel',
    '--log-level',
    ['SLUICE_LOG_LEVEL', 'LOG_LEVEL'],
    'string',
    logLevel,
    'fatal, error, warn, info, debug, trace or silent',
    'info',
  ),
];

/** The defaults, as a complete configuration. */
export const DEFAULT_CONFIG: GatewayConfig = Object.freeze({
  upstream: 'http://127.0.0.1:8080',
  listen: Object.freeze({ host: '127.0.0.1', port: 8090 }),
  databaseUrl: undefined,
  redisUrl: undefined,
  redisCluster: false,
  dbBudget: undefined,
  dbReserve: 10,
  poolMax: 4,
  upstreamApplicationName: '',
  cachePepper: undefined,
  redisPrefix: 'sluice:',
  cacheRedisTimeoutMs: 100,
  admissionRedisTimeoutMs: 1_000,
  permitLeaseMs: 30_000,
  queueMax: 1000,
  queueTimeoutMs: 30_000,
  perClientLimit: 0,
  interactiveReserve: 0.2,
  secretKey: undefined,
  publicPaths: CVAT_PUBLIC_PATHS,
  bulkPaths: Object.freeze([]),
  sessionCookieName: 'sessionid',
  cacheTtlMs: 60_000,
  cacheMax: 10_000,
  introspectionPath: '/api/users/self',
  upstreamHealthPath: '/api/server/about',
  upstreamConnections: 128,
  upstreamConnectTimeoutMs: 5_000,
  upstreamHeadersTimeoutMs: 120_000,
  upstreamBodyTimeoutMs: 300_000,
  upstreamKeepAliveMs: 4_000,
  clientBodyTimeoutMs: 30_000,
  clientHeadersTimeoutMs: 60_000,
  trustProxy: false,
  preserveHost: true,
  shutdownGraceMs: 10_000,
  monitorIntervalMs: 5_000,
  databaseGuard: true,
  databaseProbeIntervalMs: 500,
  reaper: false,
  reaperIdleMs: 300_000,
  reaperIntervalMs: 60_000,
  sessionPurge: false,
  sessionPurgeIntervalMs: 3_600_000,
  readyTimeoutMs: 2_000,
  logLevel: 'info',
});

/** The result of {@link loadConfig}: the configuration, or every bad field with its reason. */
export type LoadConfigResult =
  | { readonly ok: true; readonly config: GatewayConfig }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

function display(spec: AnyFieldSpec, raw: string): string {
  return spec.secret ? '<redacted>' : raw;
}

function checkRedis(config: GatewayConfig, issues: ConfigIssue[], sourceOf: (key: string) => string): void {
  if (config.redisUrl === undefined) {
    if (config.redisCluster) {
      issues.push({
        field: 'redisCluster',
        source: sourceOf('redisCluster'),
        value: 'true',
        reason: 'needs the seed nodes in --redis-url / REDIS_URL (redis://h1:port,h2:port,...)',
      });
    }
    return;
  }
  const parsed = parseRedisUrl(config.redisUrl);
  if ('reason' in parsed) return;
  const target = parsed.value;
  const problem = config.redisCluster
    ? target.db !== 0
      ? 'Redis Cluster has only database 0: drop the /db path'
      : target.hasQuery
        ? 'query parameters are not supported with --redis-cluster'
        : undefined
    : target.nodes.length > 1
      ? 'lists several hosts: they are Redis Cluster seed nodes, add --redis-cluster (SLUICE_REDIS_CLUSTER=true)'
      : undefined;
  if (problem !== undefined) {
    issues.push({
      field: 'redisUrl',
      source: sourceOf('redisUrl'),
      value: redactRedisUrl(config.redisUrl),
      reason: problem,
    });
  }
}

function crossCheck(config: GatewayConfig, issues: ConfigIssue[], sourceOf: (key: string) => string): void {
  // A lease is renewed every third of its length: a renewal that may take longer could let it
  // lapse. Only the distributed semaphore (Redis) uses either field. The issue names the field the
  // user set (the lease when both or neither were).
  if (config.redisUrl !== undefined && config.admissionRedisTimeoutMs * 3 > config.permitLeaseMs) {
    const blameTimeout =
      sourceOf('admissionRedisTimeoutMs') !== 'default' && sourceOf('permitLeaseMs') === 'default';
    const field = blameTimeout ? 'admissionRedisTimeoutMs' : 'permitLeaseMs';
    issues.push({
      field,
      source: sourceOf(field),
      value: formatDuration(blameTimeout ? config.admissionRedisTimeoutMs : config.permitLeaseMs),
      reason: blameTimeout
        ? `must be at most a third of permitLeaseMs (${formatDuration(config.permitLeaseMs)}): leases are renewed every third of their length, and a renewal may take this long`
        : `must be at least 3 x admissionRedisTimeoutMs (${formatDuration(config.admissionRedisTimeoutMs)}): leases are renewed every third of their length, and a renewal may take that long`,
    });
  }
  if (config.dbBudget !== undefined && config.upstreamConnections < config.dbBudget) {
    issues.push({
      field: 'upstreamConnections',
      source: sourceOf('upstreamConnections'),
      value: String(config.upstreamConnections),
      reason: `must be at least dbBudget (${config.dbBudget}), or admitted requests would queue inside the proxy`,
    });
  }
  if (config.redisUrl !== undefined && config.cachePepper === undefined && config.secretKey === undefined) {
    issues.push({
      field: 'cachePepper',
      source: sourceOf('cachePepper'),
      value: '',
      reason:
        'with Redis, every gateway must derive the same cache keys: give --cache-pepper or --secret-key',
    });
  }
  checkRedis(config, issues, sourceOf);
  if ((config.reaper || config.sessionPurge) && config.databaseUrl === undefined) {
    issues.push({
      field: config.reaper ? 'reaper' : 'sessionPurge',
      source: sourceOf(config.reaper ? 'reaper' : 'sessionPurge'),
      value: 'true',
      reason: 'needs a database URL (--database-url / DATABASE_URL)',
    });
  }
}

/**
 * Reads the configuration from command-line flags and the environment (flags win, then the
 * environment, then the defaults), validating every field. Never throws: returns all the bad
 * fields at once.
 *
 * Flags take `--name value` or `--name=value`; booleans also `--name` and `--no-name`; list flags
 * (`--public-path`, `--bulk-path`) repeat, their environment variables are comma-separated. Empty
 * environment variables count as unset.
 *
 * @example
 * ```ts
 * const result = loadConfig(process.argv.slice(2), process.env);
 * if (!result.ok) for (const i of result.issues) console.error(formatIssue(i));
 * ```
 */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): LoadConfigResult {
  const issues: ConfigIssue[] = [];
  const byFlag = new Map<string, AnyFieldSpec>(CONFIG_FIELDS.map((f) => [f.flag, f]));
  const flagValues = new Map<AnyFieldSpec, string[]>();
  const sources = new Map<string, string>();

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] as string;
    if (!token.startsWith('--')) {
      issues.push({
        field: '(argument)',
        source: 'argv',
        value: token,
        reason: 'unexpected positional argument',
      });
      continue;
    }
    const eq = token.indexOf('=');
    let name = eq === -1 ? token : token.slice(0, eq);
    let inline: string | undefined = eq === -1 ? undefined : token.slice(eq + 1);
    let spec = byFlag.get(name);
    if (!spec && name.startsWith('--no-')) {
      const negated = byFlag.get(`--${name.slice(5)}`);
      if (negated?.kind === 'bool' && inline === undefined) {
        spec = negated;
        name = negated.flag;
        inline = 'false';
      }
    }
    if (!spec) {
      issues.push({ field: '(flag)', source: name, value: token, reason: 'unknown flag (see --help)' });
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (spec.kind === 'bool') {
        raw = 'true';
      } else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) {
          issues.push({ field: spec.key, source: spec.flag, value: '', reason: 'needs a value' });
          continue;
        }
        raw = next;
        i++;
      }
    }
    const list = flagValues.get(spec) ?? [];
    list.push(raw);
    flagValues.set(spec, list);
  }

  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const spec of CONFIG_FIELDS) {
    const fromFlags = flagValues.get(spec);
    let raw: string | undefined;
    let source: string | undefined;
    if (fromFlags !== undefined) {
      source = spec.flag;
      if (spec.kind === 'list') {
        raw = fromFlags.join(',');
      } else {
        if (fromFlags.length > 1) {
          issues.push({
            field: spec.key,
            source: spec.flag,
            value: fromFlags.map((r) => display(spec, r)).join(' '),
            reason: 'given more than once',
          });
          continue;
        }
        raw = fromFlags[0];
      }
    } else {
      for (const name of spec.env) {
        const value = env[name];
        if (value !== undefined && value !== '') {
          raw = value;
          source = name;
          break;
        }
      }
    }
    if (raw === undefined || source === undefined) continue;
    sources.set(spec.key, source);
    const parsed = spec.parse(raw);
    if ('reason' in parsed) {
      issues.push({ field: spec.key, source, value: display(spec, raw), reason: parsed.reason });
      continue;
    }
    config[spec.key] =
      spec.key === 'publicPaths'
        ? Object.freeze([...DEFAULT_CONFIG.publicPaths, ...(parsed.value as readonly string[])])
        : parsed.value;
  }
  if (issues.length === 0) {
    crossCheck(config as unknown as GatewayConfig, issues, (key) => sources.get(key) ?? 'default');
  }
  return issues.length === 0
    ? { ok: true, config: config as unknown as GatewayConfig }
    : { ok: false, issues };
}

/**
 * Completes and validates a configuration given in code (every field optional).
 *
 * @throws {GatewayConfigError} listing every bad field
 * @example
 * ```ts
 * const config = resolveConfig({ upstream: 'http://127.0.0.1:8080', listen: '127.0.0.1:0' });
 * ```
 */
export function resolveConfig(input: GatewayConfigInput = {}): GatewayConfig {
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`gateway options must be an object, got ${input === null ? 'null' : typeof input}`);
  }
  const issues: ConfigIssue[] = [];
  const known = new Set<string>(CONFIG_FIELDS.map((f) => f.key));
  for (const key of Object.keys(input)) {
    if (!known.has(key)) issues.push({ field: key, source: 'options', value: '', reason: 'unknown option' });
  }
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const spec of CONFIG_FIELDS) {
    if (!Object.hasOwn(input, spec.key)) continue;
    const value = (input as Record<string, unknown>)[spec.key];
    if (value === undefined) continue;
    const checked = spec.check(value);
    if ('reason' in checked) {
      issues.push({
        field: spec.key,
        source: 'options',
        value: spec.secret ? '<redacted>' : safeString(value),
        reason: checked.reason,
      });
      continue;
    }
    config[spec.key] = checked.value;
  }
  if (issues.length === 0) crossCheck(config as unknown as GatewayConfig, issues, () => 'options');
  if (issues.length > 0) throw new GatewayConfigError(issues);
  return Object.freeze(config) as unknown as GatewayConfig;
}

function safeString(value: unknown): string {
  try {
    return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

/** The configuration with secrets replaced by `'<redacted>'` and URLs stripped of passwords. */
export function redactConfig(config: GatewayConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  for (const spec of CONFIG_FIELDS) {
    const value = out[spec.key];
    if (!spec.secret || value === undefined) continue;
    if (spec.key === 'secretKey') {
      out[spec.key] = '<redacted>';
      continue;
    }
    if (spec.key === 'redisUrl') {
      out[spec.key] = redactRedisUrl(String(value));
      continue;
    }
    try {
      const url = new URL(String(value));
      if (url.password) url.password = 'redacted';
      out[spec.key] = url.toString();
    } catch {
      out[spec.key] = '<redacted>';
    }
  }
  return out;
}

/** `sluice-gateway --help`: every flag with its environment variables and default. */
export function configHelp(): string {
  const lines = [
    'Usage: sluice-gateway [flags]',
    '',
    'A reverse proxy in front of Django/CVAT that caches session validation and admits only',
    'what the database can serve. Flags win over environment variables, which win over defaults.',
    '',
  ];
  for (const spec of CONFIG_FIELDS) {
    const value =
      spec.kind === 'bool'
        ? `${spec.flag}[=bool] | --no-${spec.flag.slice(2)}`
        : `${spec.flag} <${spec.kind}>`;
    lines.push(`  ${value}`);
    lines.push(`      ${spec.doc}`);
    lines.push(`      env: ${spec.env.join(', ')}; default: ${spec.defaultText}`);
  }
  lines.push('  --help, --version, --print-config (prints the resolved configuration and exits)');
  return lines.join('\n');
}
