import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { StatusSnapshot } from './status.js';

/** Names of the metrics the gateway exports (every one starts with `sluice_`). */
export const METRIC_NAMES = [
  'sluice_requests_total',
  'sluice_request_duration_seconds',
  'sluice_queue_wait_seconds',
  'sluice_upstream_response_seconds',
  'sluice_upstream_errors_total',
  'sluice_identity_headers_stripped_total',
  'sluice_admission_in_flight',
  'sluice_admission_queue_length',
  'sluice_admission_limit',
  'sluice_admission_rejections_total',
  'sluice_breaker_state',
  'sluice_cache_hits_total',
  'sluice_cache_misses_total',
  'sluice_cache_validator_calls_total',
  'sluice_cache_validator_errors_total',
  'sluice_cache_l2_up',
  'sluice_db_up',
  'sluice_db_connections',
  'sluice_db_connections_by_state',
  'sluice_db_max_connections',
  'sluice_db_budget',
  'sluice_pool_connections',
  'sluice_reaped_connections_total',
  'sluice_sessions_purged_total',
  'sluice_draining',
  'sluice_client_connections',
  'sluice_connections_refused_total',
] as const;

/** One finished request, as the metrics see it. */
export interface RequestObservation {
  readonly requestClass: string;
  readonly status: number;
  readonly durationMs: number;
  readonly queueWaitMs: number | undefined;
  readonly upstreamMs: number | undefined;
  readonly errorCode: string | undefined;
  readonly strippedIdentityHeaders: number;
}

/** The gateway's Prometheus metrics. */
export interface GatewayMetrics {
  /** The gateway's own registry (never the global one). */
  readonly registry: Registry;
  /** Records a finished request. */
  observe(observation: RequestObservation): void;
  /** Records an admission rejection. */
  rejected(reason: string): void;
  /** `text/plain; version=0.0.4` exposition. */
  render(): Promise<string>;
}

const BUCKETS_SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Adds a monotonic source's total to a counter its collect() has just reset (a mirrored counter). */
function setCounter(counter: Counter<string>, value: number, labels?: Record<string, string>): void {
  if (labels) counter.inc(labels, value);
  else counter.inc(value);
}

/**
 * Builds the metrics on a fresh prom-client `Registry`. Gauges and mirrored counters read
 * `snapshot()` at scrape time; request counters and histograms are fed by `observe()`.
 * Process metrics (`process_*`, `nodejs_*`) are included.
 *
 * @example
 * ```ts
 * const metrics = createGatewayMetrics(() => gateway.status());
 * app.get('/metrics', async (_req, res) => res.type('text/plain').send(await metrics.render()));
 * ```
 */
export function createGatewayMetrics(read: () => StatusSnapshot): GatewayMetrics {
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

  const requests = new Counter({
    name: 'sluice_requests_total',
    help: 'Requests answered, by admission class and HTTP status (499: the client went away).',
    labelNames: ['class', 'status'],
    registers,
  });
  const duration = new Histogram({
    name: 'sluice_request_duration_seconds',
    help: 'Time from the request to the end of the response, by class.',
    labelNames: ['class'],
    buckets: BUCKETS_SECONDS,
    registers,
  });
  const queueWait = new Histogram({
    name: 'sluice_queue_wait_seconds',
    help: 'Time a request waited for an admission slot, by class.',
    labelNames: ['class'],
    buckets: BUCKETS_SECONDS,
    registers,
  });
  const upstream = new Histogram({
    name: 'sluice_upstream_response_seconds',
    help: "Time from dispatch to the upstream's response headers, by class.",
    labelNames: ['class'],
    buckets: BUCKETS_SECONDS,
    registers,
  });
  const upstreamErrors = new Counter({
    name: 'sluice_upstream_errors_total',
    help: 'Requests the upstream could not answer, by gateway error code.',
    labelNames: ['code'],
    registers,
  });
  const stripped = new Counter({
    name: 'sluice_identity_headers_stripped_total',
    help: 'Identity headers sent by clients and removed before the upstream.',
    registers,
  });
  const rejections = new Counter({
    name: 'sluice_admission_rejections_total',
    help: 'Requests refused by admission, by reason.',
    labelNames: ['reason'],
    registers,
  });

  new Gauge({
    name: 'sluice_admission_in_flight',
    help: 'Requests holding an admission slot, by class.',
    labelNames: ['class'],
    registers,
    collect() {
      const a = snapshot().admission;
      this.set({ class: 'interactive' }, a.byClass.interactive.inFlight);
      this.set({ class: 'bulk' }, a.byClass.bulk.inFlight);
    },
  });
  new Gauge({
    name: 'sluice_admission_queue_length',
    help: 'Requests waiting for an admission slot, by class.',
    labelNames: ['class'],
    registers,
    collect() {
      const a = snapshot().admission;
      this.set({ class: 'interactive' }, a.byClass.interactive.queued);
      this.set({ class: 'bulk' }, a.byClass.bulk.queued);
    },
  });
  new Gauge({
    name: 'sluice_admission_limit',
    help: 'The admission budget: most concurrent upstream requests.',
    registers,
    collect() {
      this.set(snapshot().admission.limit);
    },
  });
  new Gauge({
    name: 'sluice_breaker_state',
    help: 'Upstream circuit breaker: 1 for the current state (closed, open, half-open), 0 for the others.',
    labelNames: ['state'],
    registers,
    collect() {
      const state = snapshot().breaker;
      for (const s of ['closed', 'open', 'half-open']) this.set({ state: s }, s === state ? 1 : 0);
    },
  });
  new Counter({
    name: 'sluice_cache_hits_total',
    help: 'Credential lookups answered by a cache tier (l1: in-process, l2: Redis).',
    labelNames: ['tier'],
    registers,
    collect() {
      const c = snapshot().cache;
      this.reset();
      setCounter(this, c.l1Hits, { tier: 'l1' });
      setCounter(this, c.l2Hits, { tier: 'l2' });
    },
  });
  new Counter({
    name: 'sluice_cache_misses_total',
    help: 'Credential lookups that needed the validator.',
    registers,
    collect() {
      this.reset();
      setCounter(this, snapshot().cache.misses);
    },
  });
  new Counter({
    name: 'sluice_cache_validator_calls_total',
    help: 'Validator calls (database queries or introspection requests).',
    registers,
    collect() {
      this.reset();
      setCounter(this, snapshot().cache.validatorCalls);
    },
  });
  new Counter({
    name: 'sluice_cache_validator_errors_total',
    help: 'Validator calls that failed or timed out.',
    registers,
    collect() {
      this.reset();
      setCounter(this, snapshot().cache.validatorErrors);
    },
  });
  new Gauge({
    name: 'sluice_cache_l2_up',
    help: '1 when the Redis tier is up, 0 when down or disabled.',
    registers,
    collect() {
      this.set(snapshot().cache.l2State === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sluice_db_up',
    help: '0 while the database guard sees the upstream database unreachable, else 1 (also without a database or guard).',
    registers,
    collect() {
      this.set(snapshot().database?.health.state === 'down' ? 0 : 1);
    },
  });
  new Gauge({
    name: 'sluice_db_connections',
    help: 'Client connections on the upstream database server (last monitor sample).',
    registers,
    collect() {
      const db = snapshot().database;
      this.reset();
      if (db?.connections != null) this.set(db.connections);
    },
  });
  new Gauge({
    name: 'sluice_db_connections_by_state',
    help: 'Client connections on the upstream database server by state (last monitor sample).',
    labelNames: ['state'],
    registers,
    collect() {
      const db = snapshot().database;
      this.reset();
      if (db) for (const [state, n] of Object.entries(db.byState)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'sluice_db_max_connections',
    help: "The database server's max_connections minus its reserved connections.",
    registers,
    collect() {
      const db = snapshot().database;
      this.reset();
      if (db?.maxConnections != null) this.set(db.maxConnections - (db.reservedConnections ?? 0));
    },
  });
  new Gauge({
    name: 'sluice_db_budget',
    help: 'Upstream requests (each holding one database connection in Django) the gateway admits at once.',
    registers,
    collect() {
      this.set(snapshot().admission.limit);
    },
  });
  new Gauge({
    name: 'sluice_pool_connections',
    help: "The gateway's own database pool: total, idle, waiting and max.",
    labelNames: ['state'],
    registers,
    collect() {
      const db = snapshot().database;
      this.reset();
      if (!db) return;
      this.set({ state: 'max' }, db.pool.max);
      this.set({ state: 'total' }, db.pool.total);
      this.set({ state: 'idle' }, db.pool.idle);
      this.set({ state: 'waiting' }, db.pool.waiting);
    },
  });
  new Counter({
    name: 'sluice_reaped_connections_total',
    help: 'Idle upstream connections the reaper terminated.',
    registers,
    collect() {
      this.reset();
      setCounter(this, snapshot().database?.reaped ?? 0);
    },
  });
  new Counter({
    name: 'sluice_sessions_purged_total',
    help: 'Expired django_session rows deleted.',
    registers,
    collect() {
      this.reset();
      setCounter(this, snapshot().database?.purged ?? 0);
    },
  });
  new Gauge({
    name: 'sluice_draining',
    help: '1 while the gateway drains after SIGTERM.',
    registers,
    collect() {
      this.set(snapshot().state === 'running' ? 0 : 1);
    },
  });

  new Gauge({
    name: 'sluice_client_connections',
    help: 'Client connections open now, and the cap.',
    labelNames: ['kind'],
    registers,
    collect() {
      const c = snapshot().connections;
      this.reset();
      if (!c) return;
      this.set({ kind: 'open' }, c.open);
      this.set({ kind: 'max' }, c.max);
    },
  });
  new Counter({
    name: 'sluice_connections_refused_total',
    help: "Client connections the gateway refused itself, by cap ('total' or 'per_client').",
    labelNames: ['cap'],
    registers,
    collect() {
      const c = snapshot().connections;
      this.reset();
      setCounter(this, c?.refused.total ?? 0, { cap: 'total' });
      setCounter(this, c?.refused.perClient ?? 0, { cap: 'per_client' });
    },
  });

  return {
    registry,
    observe(o) {
      const klass = o.requestClass;
      requests.inc({ class: klass, status: String(o.status) });
      duration.observe({ class: klass }, o.durationMs / 1000);
      if (o.queueWaitMs !== undefined) queueWait.observe({ class: klass }, o.queueWaitMs / 1000);
      if (o.upstreamMs !== undefined) upstream.observe({ class: klass }, o.upstreamMs / 1000);
      if (o.errorCode?.startsWith('E_UPSTREAM_')) upstreamErrors.inc({ code: o.errorCode });
      if (o.strippedIdentityHeaders > 0) stripped.inc(o.strippedIdentityHeaders);
    },
    rejected(reason) {
      rejections.inc({ reason });
    },
    render() {
      cached = { at: performance.now(), value: read() };
      return registry.metrics();
    },
  };
}
