// Every setting of the gateway, declared once: its kind, default, documentation and group. The
// configuration type, the defaults, the flags and environment variables, `--help` and the
// README's table are all derived from this list (see load.ts and docs.ts).
import { tmpdir } from 'node:os';
import {
  CVAT_PROTECTED_PATHS,
  CVAT_PUBLIC_PATHS,
  CVAT_SERVER_APPLICATION,
  CVAT_WORKER_APPLICATIONS,
} from '../cvat-profile.js';
import {
  bool,
  bytes,
  choice,
  duration,
  int,
  type Kind,
  type ListenAddress,
  list,
  listen,
  listenOrOff,
  maybe,
  origin,
  pathPattern,
  redisUrl,
  share,
  type TrustProxySetting,
  text,
  trustProxy,
  url,
} from './kinds.js';

/** The sections of `--help` and the README table, with their titles, in the order they are listed. */
export const SETTING_GROUPS = {
  basics: 'Basics',
  database: 'Database',
  redis: 'Redis',
  admission: 'Admission',
  cache: 'Session cache',
  upstream: 'Upstream',
  clients: 'Clients',
  buffering: 'Buffering',
  operations: 'Operations',
} as const;
export type SettingGroup = keyof typeof SETTING_GROUPS;

/** One setting. `flag` and `env` are derived from its key unless given. */
export interface Setting<T> {
  readonly kind: Kind<T>;
  readonly default: T;
  /** One line: what it does. */
  readonly doc: string;
  readonly group: SettingGroup;
  /** How the default reads in docs, when `kind.show(default)` would not say it. */
  readonly defaultText?: string;
  /** The flag without `--`, when not the key in kebab case (without a trailing `Ms`). */
  readonly flag?: string;
  /** Extra environment variables read after `SLUICE_<FLAG>` (e.g. `DATABASE_URL`). */
  readonly aliases?: readonly string[];
  /** The environment variable, when not `SLUICE_<FLAG>`. */
  readonly env?: string;
  /** Never echoed: `<redacted>` in errors, passwords removed from URLs. */
  readonly secret?: true;
  /** A list flag whose values extend the default instead of replacing it (from the CLI only). */
  readonly extendsDefault?: true;
}

/** A setting as declared: {@link inGroup} gives it its group. */
type Declared<T> = Omit<Setting<T>, 'group'>;
const setting = <T>(s: Declared<T>): Declared<T> => s;

type Grouped<S> = { [K in keyof S]: S[K] & { readonly group: SettingGroup } };

/** `settings`, each in `group`. */
function inGroup<S extends Record<string, Declared<unknown>>>(group: SettingGroup, settings: S): Grouped<S> {
  return Object.fromEntries(Object.entries(settings).map(([k, s]) => [k, { ...s, group }])) as Grouped<S>;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** pino's level names, plus `silent`. */
export type LogLevel = (typeof LOG_LEVELS)[number];

const MAX_DURATION = 86_400_000;
const cookieName = text('<name>', (v) =>
  /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v) ? undefined : 'is not a valid cookie name',
);

/** The settings by group, in the order `--help` lists them. */
export const SETTINGS = {
  ...inGroup('basics', {
    upstream: setting({
      kind: origin(['http:', 'https:']),
      default: 'http://127.0.0.1:8080',
      doc: 'the Django/CVAT server (an origin, no path)',
    }),
    listen: setting<ListenAddress>({
      kind: listen,
      default: Object.freeze({ host: '127.0.0.1', port: 8090 }),
      doc: 'address to listen on (`host:port`, `[ipv6]:port` or `port`)',
    }),
    databaseUrl: setting({
      kind: maybe(url(['postgres:', 'postgresql:'], false)),
      default: undefined,
      doc: "the upstream's PostgreSQL: database validation, budget sizing, monitor",
      aliases: ['DATABASE_URL'],
      secret: true,
    }),
    redisUrl: setting({
      kind: maybe(redisUrl),
      default: undefined,
      doc: 'Redis: shared L2 cache, distributed semaphore; several comma-separated hosts only with `--redis-cluster`',
      aliases: ['REDIS_URL'],
      secret: true,
    }),
    secretKey: setting({
      kind: maybe(text('<key>', (v) => (v === '' ? 'must not be empty' : undefined))),
      default: undefined,
      doc: "Django's `SECRET_KEY`: verifies session signatures and the auth hash",
      aliases: ['DJANGO_SECRET_KEY'],
      secret: true,
    }),
    logLevel: setting<LogLevel>({
      kind: choice(LOG_LEVELS),
      default: 'info',
      doc: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`',
      aliases: ['LOG_LEVEL'],
    }),
  }),
  ...inGroup('database', {
    upstreamApplicationName: setting({
      kind: text('<name>', (v) =>
        Buffer.byteLength(v) <= 63
          ? undefined
          : 'must be at most 63 bytes (PostgreSQL truncates longer names)',
      ),
      default: CVAT_SERVER_APPLICATION,
      doc: "`application_name` of the upstream's request-serving database connections: its own in the budget, the ones the reaper may end (another Django stack sets its own; Django sets none unless told)",
    }),
    workerApplicationNames: setting<readonly string[]>({
      kind: list(
        '<name>',
        text('<name>', (v) => (v === '' ? 'must not be empty' : undefined)),
      ),
      default: Object.freeze([CVAT_WORKER_APPLICATIONS]),
      doc: "`application_name`s (a trailing `*` is a prefix) of the upstream's background workers: they hold connections of their own (counted against the budget, never reaped)",
      flag: 'worker-application-name',
      env: 'SLUICE_WORKER_APPLICATION_NAMES',
    }),
    dbBudget: setting({
      kind: maybe(int(1, 100_000)),
      default: undefined,
      doc: 'most concurrent upstream requests: the ceiling admission never crosses (with a database it also never crosses what PostgreSQL can still give)',
      defaultText: 'from the database (behind PgBouncer `--upstream-connections`), else 20',
    }),
    loadControl: setting({
      kind: bool,
      default: true,
      doc: 'with a database, admit as many requests as keep it busy without clients waiting for a connection, under the ceiling; off: admit up to the ceiling',
    }),
    pgbouncerAdminUrl: setting({
      kind: maybe(url(['postgres:', 'postgresql:'], false)),
      default: undefined,
      doc: "PgBouncer's admin console (database `pgbouncer`), read for the load when `--database-url` points at PgBouncer",
      defaultText: 'detected from `--database-url`',
      secret: true,
    }),
    dbReserve: setting({
      kind: int(0, 100_000),
      default: 10,
      doc: 'connections kept for others (workers, psql, migrations) when the budget comes from `max_connections`; what others hold now counts instead when it is more',
    }),
    poolMax: setting({
      kind: int(1, 1_000),
      default: 4,
      doc: "size of the gateway's own database pool (validator, monitor, reaper, purge)",
    }),
    monitorIntervalMs: setting({
      kind: duration(100, 3_600_000),
      default: 250,
      doc: 'how often the database (and PgBouncer) load is sampled, one cheap query each time: the ceiling follows every sample (leaked connections count against it at once); load control steps at most once a second',
    }),
    databaseGuard: setting({
      kind: bool,
      default: true,
      doc: 'with a database: answer `503 E_DATABASE_UNAVAILABLE` to requests that need it while it is unreachable',
    }),
    databaseProbeIntervalMs: setting({
      kind: duration(50, 60_000),
      default: 500,
      doc: 'while the database is unreachable, how often it is probed (each probe within `--ready-timeout`)',
    }),
    reaper: setting({
      kind: bool,
      default: true,
      doc: "with a database: end the upstream's connections it leaked idle: idle longer than `--reaper-idle`, last query like `--reaper-last-query`, beyond the requests the gateway has in flight (its database only; never behind PgBouncer)",
    }),
    reaperIdleMs: setting({
      kind: duration(1_000, MAX_DURATION),
      default: 5_000,
      doc: 'idle time after which a leaked connection is ended',
    }),
    reaperIntervalMs: setting({
      kind: duration(1_000, MAX_DURATION),
      default: 2_000,
      doc: 'how often the reaper runs',
    }),
    reaperLastQuery: setting({
      kind: text('<like>'),
      default: '%django_session%',
      doc: "SQL LIKE pattern the last query of a leaked connection matches (CVAT's leak: the session lookup); '' for any",
    }),
    sessionPurge: setting({
      kind: bool,
      default: false,
      doc: 'delete expired `django_session` rows in short batches',
    }),
    sessionPurgeIntervalMs: setting({
      kind: duration(1_000, 604_800_000),
      default: 3_600_000,
      doc: 'how often expired sessions are purged',
    }),
  }),
  ...inGroup('redis', {
    redisCluster: setting({
      kind: bool,
      default: false,
      doc: '`--redis-url` is a Redis Cluster: its comma-separated hosts are seed nodes',
    }),
    redisPrefix: setting({
      kind: text('<prefix>', (v) =>
        /^[A-Za-z0-9:_.-]{1,64}$/.test(v) ? undefined : 'must be 1-64 characters of A-Z a-z 0-9 : _ . -',
      ),
      default: 'sluice:',
      doc: 'prefix of every Redis key',
    }),
    cacheRedisTimeoutMs: setting({
      kind: duration(10, 60_000),
      default: 100,
      doc: 'longest wait for one session-cache Redis command; a slower read is a miss and the credential is validated instead',
    }),
    admissionRedisTimeoutMs: setting({
      kind: duration(10, 60_000),
      default: 1_000,
      doc: 'longest wait for one semaphore Redis call; slower counts as Redis down (local fallback share); at most a third of `--permit-lease`',
    }),
    permitLeaseMs: setting({
      kind: duration(1_000, 3_600_000),
      default: 30_000,
      doc: 'lease of a distributed permit, renewed while its request runs: a gateway that dies holding permits gives them back after this',
    }),
  }),
  ...inGroup('admission', {
    queueMax: setting({
      kind: int(0, 1_000_000),
      default: 1000,
      doc: 'most requests waiting for a slot (then shed)',
    }),
    queueTimeoutMs: setting({
      kind: duration(1, 3_600_000),
      default: 30_000,
      doc: 'longest an interactive request waits for a slot (then shed)',
    }),
    bulkQueueTimeoutMs: setting({
      kind: duration(1, 3_600_000),
      default: 600_000,
      doc: 'longest a bulk request (export, download, upload) waits for a slot: bulk clients rarely retry, so they wait rather than fail',
    }),
    shedStatus: setting({
      kind: int(429, 503),
      default: 429,
      doc: "status of a request shed by admission (queue full or timed out), with `Retry-After`: 429, which CVAT's UI retries on every request, or 503",
    }),
    perClientLimit: setting({
      kind: int(0, 1_000_000),
      default: 0,
      doc: 'most concurrent requests per client (user id, else address); 0: no cap',
    }),
    interactiveReserve: setting({
      kind: share(0, 1),
      default: 0.2,
      doc: 'share of the budget bulk requests can never take',
    }),
    bulkShare: setting({
      kind: share(0, 1),
      default: 0.5,
      doc: 'share of the budget waiting bulk requests get before interactive ones (so an export script polling cannot starve its exports); at most 1 - interactive reserve',
    }),
    publicPaths: setting<readonly string[]>({
      kind: list('<path>', pathPattern),
      default: CVAT_PUBLIC_PATHS,
      doc: 'paths needing no credential (repeatable; the CLI adds them to the defaults)',
      defaultText: "CVAT's",
      flag: 'public-path',
      env: 'SLUICE_PUBLIC_PATHS',
      extendsDefault: true,
    }),
    protectedPaths: setting<readonly string[]>({
      kind: list('<path>', pathPattern),
      default: CVAT_PROTECTED_PATHS,
      doc: 'paths that always need a credential: without one the gateway answers 401 (repeatable; the CLI adds them to the defaults)',
      defaultText: "CVAT's",
      flag: 'protected-path',
      env: 'SLUICE_PROTECTED_PATHS',
      extendsDefault: true,
    }),
    anonymous: setting({
      kind: choice(['forward', 'reject'] as const),
      default: 'forward',
      doc: 'a request without any credential on a path neither public nor protected: `forward` lets the upstream answer it, `reject` answers 401 at the gateway',
    }),
    bulkPaths: setting<readonly string[]>({
      kind: list('<path>', pathPattern),
      default: Object.freeze([]),
      doc: 'extra paths admitted as bulk (repeatable)',
      flag: 'bulk-path',
      env: 'SLUICE_BULK_PATHS',
    }),
  }),
  ...inGroup('cache', {
    cachePepper: setting({
      kind: maybe(
        text('<secret>', (v) => (Buffer.byteLength(v) >= 16 ? undefined : 'must be at least 16 bytes')),
      ),
      default: undefined,
      doc: 'secret of the cache keys (>= 16 bytes; the same on every gateway sharing Redis)',
      defaultText: 'derived from `--secret-key`',
      secret: true,
    }),
    sessionCookieName: setting({
      kind: cookieName,
      default: 'sessionid',
      doc: "Django's `SESSION_COOKIE_NAME`",
      flag: 'session-cookie',
    }),
    cacheTtlMs: setting({
      kind: duration(1_000, MAX_DURATION),
      default: 60_000,
      doc: 'how long a validated credential stays cached (never past the session expiry)',
    }),
    cacheMax: setting({
      kind: int(1, 10_000_000),
      default: 10_000,
      doc: 'most credentials in the in-process cache',
    }),
    introspectionPath: setting({
      kind: pathPattern,
      default: '/api/users/self',
      doc: 'upstream path that validates a credential without a database',
    }),
  }),
  ...inGroup('upstream', {
    upstreamHealthPath: setting({
      kind: pathPattern,
      default: '/api/server/about',
      doc: 'upstream path `/readyz` probes',
    }),
    upstreamConnections: setting({
      kind: int(1, 100_000),
      default: 128,
      doc: 'most keep-alive connections to the upstream (>= the budget)',
    }),
    upstreamConnectTimeoutMs: setting({
      kind: duration(1, 600_000),
      default: 5_000,
      doc: 'TCP connect timeout (then 502)',
    }),
    upstreamHeadersTimeoutMs: setting({
      kind: duration(1, MAX_DURATION),
      default: 120_000,
      doc: 'longest wait for response headers (then 504)',
    }),
    upstreamBodyTimeoutMs: setting({
      kind: duration(1, MAX_DURATION),
      default: 300_000,
      doc: 'longest silence inside a response body (then the connection is cut)',
    }),
    upstreamKeepAliveMs: setting({
      kind: duration(1, 3_600_000),
      default: 4_000,
      doc: "idle upstream connections are closed after this; keep it below the upstream's keep-alive",
    }),
    preserveHost: setting({
      kind: bool,
      default: true,
      doc: "send the client's `Host` upstream",
    }),
  }),
  ...inGroup('clients', {
    clientBodyTimeoutMs: setting({
      kind: duration(1, 3_600_000),
      default: 30_000,
      doc: 'longest silence while a client sends its request body (then 408 and the slot is freed)',
    }),
    clientHeadersTimeoutMs: setting({
      kind: duration(1_000, 600_000),
      default: 60_000,
      doc: 'longest a client may take to send its request line and headers (then 408)',
    }),
    clientSendTimeoutMs: setting({
      kind: duration(1, 3_600_000),
      default: 60_000,
      doc: 'longest a client may leave its answer unread while data waits for it (then the connection is cut)',
    }),
    clientMinRate: setting({
      kind: bytes(0, 1024 ** 3),
      default: 1024,
      doc: 'slowest average, in bytes per second, a client may send its body or read its answer once its timeout has passed (a trickle is cut); 0: no minimum',
    }),
    trustProxy: setting<TrustProxySetting>({
      kind: trustProxy,
      default: false,
      doc: 'the proxies in front of the gateway allowed to say who the client is: a number of hops (`true` is 1) or their addresses/CIDRs; the client is the right-most untrusted `X-Forwarded-For` entry',
    }),
    maxConnections: setting({
      kind: maybe(int(16, 1_000_000)),
      default: undefined,
      doc: 'most client connections at once (then refused with 503): kept under the open-file limit, with room for upstream, database and Redis sockets',
      defaultText: 'open-file limit minus headroom',
    }),
    maxConnectionsPerClient: setting({
      kind: int(1, 1_000_000),
      default: 256,
      doc: 'most connections from one address at once (then refused with 503); trusted proxies (--trust-proxy) are exempt',
    }),
  }),
  ...inGroup('buffering', {
    requestBuffering: setting({
      kind: bool,
      default: true,
      doc: 'receive a request body in full (memory, then a temp file) before it takes a slot, as nginx does; off: stream it while holding the slot',
    }),
    responseBuffering: setting({
      kind: bool,
      default: true,
      doc: "take the upstream's answer at the upstream's pace (memory, then a temp file) and free its slot before the client has read it; off: stream it while holding the slot",
    }),
    bufferMemory: setting({
      kind: bytes(1024, 64 * 1024 ** 2),
      default: 64 * 1024,
      doc: 'per request body and per answer, bytes kept in memory before a temp file is used',
    }),
    maxBodySize: setting({
      kind: bytes(1024, 64 * 1024 ** 3),
      default: 1024 ** 3,
      doc: "largest request body (then 413); CVAT's own nginx allows 1 GiB",
    }),
    maxResponseBuffer: setting({
      kind: bytes(1024, 64 * 1024 ** 3),
      default: 1024 ** 3,
      doc: 'most bytes of one answer held for a slow client; past it the upstream waits for the client (and keeps its slot)',
    }),
    tempDir: setting({
      kind: text('<dir>', (v) => (v.startsWith('/') ? undefined : 'must be an absolute path')),
      default: tmpdir(),
      doc: 'where buffer files go; each is unlinked as soon as it is made, so nothing is left behind, even after a crash',
      defaultText: 'the system temp directory',
    }),
  }),
  ...inGroup('operations', {
    adminListen: setting({
      kind: listenOrOff,
      default: undefined,
      doc: 'where `/metrics`, `/readyz` and the status page answer (`off`: nowhere); the public port answers `/healthz` only',
      defaultText: '127.0.0.1, the port after `--listen`',
    }),
    shutdownGraceMs: setting({
      kind: duration(0, 3_600_000),
      default: 10_000,
      doc: 'on SIGTERM, how long in-flight requests may take',
    }),
    readyTimeoutMs: setting({
      kind: duration(1, 60_000),
      default: 2_000,
      doc: 'timeout of each `/readyz` probe',
    }),
  }),
} as const;

/** The keys of the configuration. */
export type SettingKey = keyof typeof SETTINGS;

/**
 * The gateway's resolved configuration: one field per setting (see the README's table or
 * `sluice-gateway --help`). Durations are milliseconds.
 */
export type GatewayConfig = {
  readonly [K in SettingKey]: (typeof SETTINGS)[K] extends Setting<infer T> ? T : never;
};

/** The other spellings a setting accepts in code. */
interface InputSpellings {
  listen: string;
  adminListen: string;
  trustProxy: boolean | number | readonly string[];
}

/**
 * What `createGateway()` accepts: any subset of {@link GatewayConfig}; `listen` may be
 * `'host:port'`, `trustProxy` a number of hops, `true` or a list of addresses.
 */
export type GatewayConfigInput = {
  -readonly [K in SettingKey]?:
    | GatewayConfig[K]
    | (K extends keyof InputSpellings ? InputSpellings[K] : never)
    | undefined;
};

const kebab = (key: string): string => key.replace(/Ms$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The flag of a setting, with `--`. */
export function flagOf(key: SettingKey): string {
  return `--${spec(key).flag ?? kebab(key)}`;
}

/** The environment variables of a setting, in the order they are read. */
export function envOf(key: SettingKey): readonly string[] {
  const s = spec(key);
  const own = s.env ?? `SLUICE_${(s.flag ?? kebab(key)).toUpperCase().replaceAll('-', '_')}`;
  return [own, ...(s.aliases ?? [])];
}

/** The declaration of `key`, as a setting of unknown type. */
export const spec = (key: SettingKey): Setting<unknown> => SETTINGS[key];

/** Every setting key, in declaration order. */
export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

/** The defaults, as a complete configuration. */
export const DEFAULT_CONFIG: GatewayConfig = Object.freeze(
  Object.fromEntries(SETTING_KEYS.map((k) => [k, SETTINGS[k].default])),
) as GatewayConfig;
