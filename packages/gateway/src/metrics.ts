import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { SHED_REASONS, shedReason } from './activity/shed-reason.js';
import type { WhoEntry } from './activity/top-table.js';
import type { RequestContext } from './context.js';
import type { ClassStatus, StatusSnapshot } from './status.js';

/** Every metric the gateway exports (each name starts with `sluice_`) and its help text. */
const HELP = {
  sluice_requests_total: 'Requests answered, by admission class and HTTP status (499: the client went away).',
  sluice_request_duration_seconds: 'Time from the request to the end of the response, by class.',
  sluice_queue_wait_seconds: 'Time a request waited for an admission slot, by class.',
  sluice_upstream_response_seconds: "Time from dispatch to the upstream's response headers, by class.",
  sluice_upstream_errors_total: 'Requests the upstream could not answer, by gateway error code.',
  sluice_identity_headers_stripped_total: 'Identity headers sent by clients and removed before the upstream.',
  sluice_shed_total: `Requests the gateway answered itself instead of the upstream, by reason (${SHED_REASONS.join(', ')}).`,
  sluice_admission_in_flight: 'Requests holding an admission slot, by class.',
  sluice_admission_queue_length: 'Requests waiting for an admission slot, by class.',
  sluice_admission_limit: 'The admission budget: most concurrent upstream requests.',
  sluice_admission_ceiling:
    'The ceiling the admission limit never crosses (with a database: what PostgreSQL can still give).',
  sluice_admission_rejections_total: 'Requests refused by admission, by reason.',
  sluice_top_user_in_flight:
    'Requests holding a slot, for the ten heaviest users (by user id; series come and go with the ranking).',
  sluice_top_user_queued: 'Requests waiting for a slot, for the ten heaviest users.',
  sluice_top_user_requests_per_second:
    'Requests per second over about the last minute, for the ten heaviest users.',
  sluice_top_user_shed_per_minute:
    'Requests shed per minute over about the last minute, for the ten heaviest users.',
  sluice_breaker_state:
    'Upstream circuit breaker: 1 for the current state (closed, open, half-open), 0 for the others.',
  sluice_cache_hits_total: 'Credential lookups answered by a cache tier (l1: in-process, l2: Redis).',
  sluice_cache_misses_total: 'Credential lookups that needed the validator.',
  sluice_cache_validator_calls_total: 'Validator calls (database queries or introspection requests).',
  sluice_cache_validator_errors_total: 'Validator calls that failed or timed out.',
  sluice_cache_l2_up: '1 when the Redis tier is up, 0 when down or disabled.',
  sluice_db_up:
    '0 while the database guard sees the upstream database unreachable, else 1 (also without a database or guard).',
  sluice_db_connections: 'Client connections on the upstream database server (last monitor sample).',
  sluice_db_connections_by_state:
    'Client connections on the upstream database server by state (last monitor sample).',
  sluice_db_max_connections: "The database server's max_connections minus its reserved connections.",
  sluice_db_budget:
    'Upstream requests (each holding one database connection in Django) the gateway admits at once.',
  sluice_pool_connections: "The gateway's own database pool: total, idle, waiting and max.",
  sluice_reaped_connections_total: 'Idle upstream connections the reaper terminated.',
  sluice_sessions_purged_total: 'Expired django_session rows deleted.',
  sluice_draining: '1 while the gateway drains after SIGTERM.',
  sluice_client_connections: 'Client connections open now, and the cap.',
  sluice_connections_refused_total:
    "Client connections the gateway refused itself, by cap ('total' or 'per_client').",
} as const;
type MetricName = keyof typeof HELP;

/** Names of the metrics the gateway exports (every one starts with `sluice_`). */
export const METRIC_NAMES = Object.keys(HELP) as readonly MetricName[];

/** The gateway's Prometheus metrics. */
export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

const BUCKETS_SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** What a scraped metric reads from the snapshot: one value, labelled values, or nothing. */
type Reading = number | null | undefined | readonly (readonly [Record<string, string>, number])[];

/** The top users' figure `pick` labelled by user id: the ten heaviest at most (see README: Metrics). */
const byUser = (s: StatusSnapshot, pick: (u: WhoEntry) => number): Reading =>
  s.users.top.map((u) => [{ user: u.id }, pick(u)] as const);

/** The admission figure `pick` labelled by class. */
const byClass = (s: StatusSnapshot, pick: (c: ClassStatus) => number): Reading =>
  (['interactive', 'bulk'] as const).map((c) => [{ class: c }, pick(s.admission.byClass[c])] as const);

/**
 * Builds the metrics on a fresh prom-client `Registry`. Gauges and mirrored counters read
 * `snapshot()` at scrape time; request counters and histograms are fed by `observe()`.
 * Process metrics (`process_*`, `nodejs_*`) are included.
 */
export function createGatewayMetrics(read: () => StatusSnapshot) {
  // Every collect() of one scrape reads the same snapshot.
  let cached: { at: number; value: StatusSnapshot } | undefined;
  const snapshot = (): StatusSnapshot => {
    const now = performance.now();
    if (cached === undefined || now - cached.at > 200) cached = { at: now, value: read() };
    return cached.value;
  };
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  /** A gauge, or a counter mirroring a total kept elsewhere (`mirror`), read at scrape time. */
  function scraped(
    name: MetricName,
    value: (s: StatusSnapshot) => Reading,
    labelNames: readonly string[] = [],
    mirror = false,
  ): void {
    const collect = function collect(this: Gauge | Counter): void {
      this.reset();
      const v = value(snapshot());
      const put = (labels: Record<string, string>, n: number): void => {
        if (this instanceof Gauge) this.set(labels, n);
        else this.inc(labels, n);
      };
      if (typeof v === 'number') put({}, v);
      else if (v) for (const [labels, n] of v) put(labels, n);
    };
    const options = { name, help: HELP[name], labelNames, registers, collect };
    if (mirror) new Counter(options);
    else new Gauge(options);
  }
  const mirrored = (name: MetricName, value: (s: StatusSnapshot) => Reading, labelNames: string[] = []) =>
    scraped(name, value, labelNames, true);
  const counter = (name: MetricName, labelNames: string[] = []): Counter =>
    new Counter({ name, help: HELP[name], labelNames, registers });
  const histogram = (name: MetricName): Histogram =>
    new Histogram({ name, help: HELP[name], labelNames: ['class'], buckets: BUCKETS_SECONDS, registers });

  const requests = counter('sluice_requests_total', ['class', 'status']);
  const duration = histogram('sluice_request_duration_seconds');
  const queueWait = histogram('sluice_queue_wait_seconds');
  const upstream = histogram('sluice_upstream_response_seconds');
  const upstreamErrors = counter('sluice_upstream_errors_total', ['code']);
  const stripped = counter('sluice_identity_headers_stripped_total');
  const shed = counter('sluice_shed_total', ['reason']);
  for (const reason of SHED_REASONS) shed.inc({ reason }, 0);
  const rejections = counter('sluice_admission_rejections_total', ['reason']);

  scraped('sluice_admission_in_flight', (s) => byClass(s, (c) => c.inFlight), ['class']);
  scraped('sluice_admission_queue_length', (s) => byClass(s, (c) => c.queued), ['class']);
  scraped('sluice_admission_limit', (s) => s.admission.limit);
  scraped('sluice_admission_ceiling', (s) => s.admission.ceiling);
  scraped('sluice_top_user_in_flight', (s) => byUser(s, (u) => u.inFlight), ['user']);
  scraped('sluice_top_user_queued', (s) => byUser(s, (u) => u.queued), ['user']);
  scraped('sluice_top_user_requests_per_second', (s) => byUser(s, (u) => u.requestsPerSecond), ['user']);
  scraped('sluice_top_user_shed_per_minute', (s) => byUser(s, (u) => u.shedPerMinute), ['user']);
  scraped(
    'sluice_breaker_state',
    (s) =>
      (['closed', 'open', 'half-open'] as const).map((state) => [{ state }, state === s.breaker ? 1 : 0]),
    ['state'],
  );
  const tiers = (s: StatusSnapshot): Reading => [
    [{ tier: 'l1' }, s.cache.l1Hits],
    [{ tier: 'l2' }, s.cache.l2Hits],
  ];
  mirrored('sluice_cache_hits_total', tiers, ['tier']);
  mirrored('sluice_cache_misses_total', (s) => s.cache.misses);
  mirrored('sluice_cache_validator_calls_total', (s) => s.cache.validatorCalls);
  mirrored('sluice_cache_validator_errors_total', (s) => s.cache.validatorErrors);
  scraped('sluice_cache_l2_up', (s) => (s.cache.l2State === 'up' ? 1 : 0));
  scraped('sluice_db_up', (s) => (s.database?.health.state === 'down' ? 0 : 1));
  scraped('sluice_db_connections', (s) => s.database?.connections);
  const byState = (figures: Readonly<Record<string, number>> = {}): Reading =>
    Object.entries(figures).map(([state, n]) => [{ state }, n]);
  scraped('sluice_db_connections_by_state', (s) => byState(s.database?.byState), ['state']);
  scraped('sluice_db_max_connections', ({ database: db }) =>
    db?.maxConnections == null ? null : db.maxConnections - (db.reservedConnections ?? 0),
  );
  scraped('sluice_db_budget', (s) => s.admission.limit);
  scraped('sluice_pool_connections', (s) => byState(s.database?.pool), ['state']);
  mirrored('sluice_reaped_connections_total', (s) => s.database?.reaped ?? 0);
  mirrored('sluice_sessions_purged_total', (s) => s.database?.purged ?? 0);
  scraped('sluice_draining', (s) => (s.state === 'running' ? 0 : 1));
  const open = ({ connections: c }: StatusSnapshot): Reading =>
    c && [
      [{ kind: 'open' }, c.open],
      [{ kind: 'max' }, c.max],
    ];
  scraped('sluice_client_connections', open, ['kind']);
  const refused = ({ connections: c }: StatusSnapshot): Reading => [
    [{ cap: 'total' }, c?.refused.total ?? 0],
    [{ cap: 'per_client' }, c?.refused.perClient ?? 0],
  ];
  mirrored('sluice_connections_refused_total', refused, ['cap']);

  return {
    /** The gateway's own registry (never the global one). */
    registry,
    /** Records a finished request. */
    observe(ctx: RequestContext, status: number, durationMs: number): void {
      const klass = ctx.requestClass;
      requests.inc({ class: klass, status: String(status) });
      duration.observe({ class: klass }, durationMs / 1000);
      if (ctx.queueWaitMs !== undefined) queueWait.observe({ class: klass }, ctx.queueWaitMs / 1000);
      if (ctx.upstreamMs !== undefined) upstream.observe({ class: klass }, ctx.upstreamMs / 1000);
      if (ctx.errorCode?.startsWith('E_UPSTREAM_')) upstreamErrors.inc({ code: ctx.errorCode });
      if (ctx.strippedIdentityHeaders > 0) stripped.inc(ctx.strippedIdentityHeaders);
      const reason = klass === 'gateway' ? undefined : shedReason(ctx.errorCode);
      if (reason) shed.inc({ reason });
    },
    /** Records an admission rejection. */
    rejected(reason: string): void {
      rejections.inc({ reason });
    },
    /** `text/plain; version=0.0.4` exposition. */
    render(): Promise<string> {
      cached = { at: performance.now(), value: read() };
      return registry.metrics();
    },
  };
}
