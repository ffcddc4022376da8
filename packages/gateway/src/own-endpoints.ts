// The gateway's own endpoints: `/healthz` (liveness), `/readyz` (upstream, database and Redis
// probed), `/metrics` (Prometheus) and the status page with its JSON.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayConfig } from './config/settings.js';
import type { GatewayMetrics } from './metrics.js';
import type { GatewayParts } from './parts.js';
import { type ReadinessCheck, type ReadinessReport, upstreamCheck } from './readiness.js';
import { redisStatus, type StatusSnapshot } from './status.js';
import { STATUS_PATH, sendStatusPage } from './status-page.js';

/** Sends `body` as JSON, never cached. */
export function sendJson(res: ServerResponse, statusCode: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(statusCode, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

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
  readonly config: GatewayConfig;
  readonly metrics: GatewayMetrics;
  readonly running: () => boolean;
  readonly state: () => StatusSnapshot['state'];
  readonly status: () => StatusSnapshot;
  readonly readiness: () => Promise<ReadinessReport>;
}

/** Answers the gateway's own endpoints; returns true when `pathname` was one of them. */
export function ownEndpoints(
  s: OwnEndpointSources,
): (pathname: string, req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => boolean {
  return function serveOwn(pathname, req, res, next) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    switch (pathname) {
      case '/healthz':
        sendJson(res, 200, { status: s.running() ? 'ok' : s.state() });
        return true;
      case '/readyz':
        s.readiness().then((report) => {
          const ready = report.status !== 'unready' && s.running();
          sendJson(
            res,
            ready ? 200 : 503,
            s.running() ? report : { ...report, status: 'unready', state: s.state() },
          );
        }, next);
        return true;
      case '/metrics':
        s.metrics.render().then((text) => {
          res.writeHead(200, {
            'content-type': s.metrics.registry.contentType,
            'content-length': Buffer.byteLength(text),
            'cache-control': 'no-store',
          });
          res.end(text);
        }, next);
        return true;
      case STATUS_PATH:
        sendStatusPage(res);
        return true;
      case `${STATUS_PATH}.json`:
        sendJson(res, 200, s.status());
        return true;
      default:
        return false;
    }
  };
}
