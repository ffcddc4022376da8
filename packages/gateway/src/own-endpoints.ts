// The gateway's own endpoints: `/healthz` (liveness), `/readyz` (upstream, database and Redis
// probed), `/metrics` (Prometheus) and the status page with its JSON.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayConfig } from './config/settings.js';
import { sendJson, sendJsonError } from './json-error.js';
import type { GatewayMetrics } from './metrics.js';
import type { GatewayParts } from './parts.js';
import { type ReadinessCheck, type ReadinessReport, upstreamCheck } from './readiness.js';
import { redisStatus, type StatusSnapshot } from './status.js';
import { STATUS_PATH, sendStatusPage } from './status-page.js';

/** The readiness probes of a gateway's parts: the upstream, the database (required), Redis (optional). */
export function readinessChecks(config: GatewayConfig, parts: GatewayParts): ReadinessCheck[] {
  const { pool, monitor, databaseHealth: health, redis } = parts;
  const checks: ReadinessCheck[] = [
    upstreamCheck(parts.dispatcher, config.upstream, config.upstreamHealthPath),
  ];
  if (pool) {
    checks.push({
      name: 'database',
      required: true,
      async run(signal) {
        if (health?.state === 'down') {
          throw new Error(`unreachable since ${new Date(health.downSince ?? Date.now()).toISOString()}`);
        }
        await pool.query('SELECT 1', [], { signal });
        health?.success();
        const sample = monitor?.lastSample;
        const state = health ? health.state : 'unguarded';
        return sample
          ? {
              connections: sample.total,
              maxConnections: sample.maxConnections,
              level: monitor?.level,
              health: state,
            }
          : { connections: null, health: state };
      },
    });
  }
  if (redis) {
    checks.push({
      name: 'redis',
      required: false,
      async run() {
        const pong = await redis.ping();
        return { reply: pong, l2: parts.cache.l2State, ...redisStatus(parts) };
      },
    });
  }
  return checks;
}

/** What the own endpoints read. */
export interface OwnEndpointSources {
  readonly metrics: GatewayMetrics;
  readonly state: () => StatusSnapshot['state'];
  readonly status: () => StatusSnapshot;
  readonly readiness: () => Promise<ReadinessReport>;
}

/** The public port's own endpoint, `/healthz` (no internal detail); true when it answered. */
export function healthEndpoint(state: OwnEndpointSources['state']) {
  return function serveHealth(pathname: string, req: IncomingMessage, res: ServerResponse): boolean {
    if (pathname !== '/healthz' || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    const now = state();
    sendJson(res, now === 'running' ? 200 : 503, { status: now === 'running' ? 'ok' : now });
    return true;
  };
}

/**
 * The admin listener's handler: `/healthz`, `/readyz` (with the detail of every check),
 * `/metrics`, the status page and its JSON. Anything else is 404.
 */
export function adminHandler(s: OwnEndpointSources): (req: IncomingMessage, res: ServerResponse) => void {
  const health = healthEndpoint(s.state);
  const fail = (res: ServerResponse) => (error: unknown) =>
    sendJsonError(res, 500, 'E_INTERNAL', String(error), {}, { detail: 'failed' });
  return function admin(req, res) {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    if (health(pathname, req, res)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJsonError(res, 405, 'E_METHOD_NOT_ALLOWED', 'GET only.', {}, { detail: 'Method not allowed.' });
      return;
    }
    switch (pathname) {
      case '/readyz':
        s.readiness().then((report) => {
          const state = s.state();
          const ready = report.status !== 'unready' && state === 'running';
          sendJson(
            res,
            ready ? 200 : 503,
            state === 'running' ? report : { ...report, status: 'unready', state },
          );
        }, fail(res));
        return;
      case '/metrics':
        s.metrics.render().then((text) => {
          res.writeHead(200, {
            'content-type': s.metrics.registry.contentType,
            'content-length': Buffer.byteLength(text),
            'cache-control': 'no-store',
          });
          res.end(text);
        }, fail(res));
        return;
      case STATUS_PATH:
        sendStatusPage(res);
        return;
      case `${STATUS_PATH}.json`:
        sendJson(res, 200, s.status());
        return;
      default: {
        const message = `${pathname} is not an admin endpoint.`;
        sendJsonError(res, 404, 'E_NOT_FOUND', message, {}, { detail: 'Not found.' });
      }
    }
  };
}
