import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestClass } from './cvat-profile.js';
import type { EdgeView } from './edge.js';

/** Where a request's credential was answered from: a cache tier, the validator, or nowhere. */
export type CacheTier = 'l1' | 'l2' | 'validator' | 'public' | 'anonymous' | 'none';

/** What the gateway records about one request while it passes through; the access log line. */
export interface RequestContext {
  /** The request id (the client's `X-Request-Id` when it is sane, else a fresh UUID). */
  readonly id: string;
  /** `performance.now()` when the gateway saw the request. */
  readonly startedAt: number;
  /** Admission class, or `gateway` for the gateway's own endpoints. */
  requestClass: RequestClass | 'gateway';
  /** The path with ids replaced by `:id` (no query string: it may hold secrets). */
  route: string;
  /** Time spent waiting for an admission slot, ms. */
  queueWaitMs: number | undefined;
  /** Time from dispatch to the upstream's response headers, ms. */
  upstreamMs: number | undefined;
  /** How the credential was validated. */
  cacheTier: CacheTier | undefined;
  /** Stable code of the error that ended the request, if any. */
  errorCode: string | undefined;
  /** The underlying error's code (e.g. `ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`), if any. */
  errorCause: string | undefined;
  /** Identity headers the client sent and the gateway removed. */
  strippedIdentityHeaders: number;
  /** The client's address (set when the request arrives: the socket is gone by the time it is logged). */
  client: string;
  /** Gives the request's admission slot back (set while it holds one). */
  releaseSlot: (() => void) | undefined;
  /** What the edge decided (path, host, client, forwarding chain), once it did. */
  edge: EdgeView | undefined;
  /** Whether the upstream needs its database for this request (`/api/*` but public paths). */
  needsDatabase: boolean;
  /** The upstream's own request id, from its answer. */
  upstreamRequestId: string | undefined;
}

const contexts = new WeakMap<IncomingMessage, RequestContext>();
const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request's context, created on first use. */
export function requestContext(req: IncomingMessage): RequestContext {
  let context = contexts.get(req);
  if (!context) {
    const given = req.headers['x-request-id'];
    context = {
      id: typeof given === 'string' && SANE_ID.test(given) ? given : randomUUID(),
      startedAt: performance.now(),
      requestClass: 'interactive',
      route: routeOf(req.url ?? '/'),
      queueWaitMs: undefined,
      upstreamMs: undefined,
      cacheTier: undefined,
      errorCode: undefined,
      errorCause: undefined,
      strippedIdentityHeaders: 0,
      client: '',
      releaseSlot: undefined,
      edge: undefined,
      needsDatabase: false,
      upstreamRequestId: undefined,
    };
    contexts.set(req, context);
  }
  return context;
}

const ID_SEGMENT = /^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

function isIdSegment(segment: string): boolean {
  return ID_SEGMENT.test(segment) || segment.length >= 24 || /[=&%@:]/.test(segment);
}

/**
 * The path of `url` for logs and labels: query string dropped, numeric ids, UUIDs, long
 * tokens and segments with `=`, `&`, `%`, `@` or `:` (CVAT's request ids) replaced by `:id`, at most 200 characters.
 *
 * @example
 * ```ts
 * routeOf('/api/tasks/42/dataset/export?format=COCO'); // '/api/tasks/:id/dataset/export'
 * ```
 */
export function routeOf(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path.length <= 200 && !/[0-9=&%@:]/.test(path) && !/[^/]{24}/.test(path)) return path;
  return path
    .split('/')
    .map((segment) => (isIdSegment(segment) ? ':id' : segment))
    .join('/')
    .slice(0, 200);
}
