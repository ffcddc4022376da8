import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestClass } from './cvat-profile.js';
import type { EdgeView } from './edge.js';

/** Where a request's credential was answered from: a cache tier, the validator, or nowhere. */
export type CacheTier = 'l1' | 'l2' | 'validator' | 'public' | 'anonymous' | 'none';

const contexts = new WeakMap<IncomingMessage, RequestContext>();
const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** What the gateway records about one request while it passes through; the access log line. */
export type RequestContext = ReturnType<typeof newContext>;

function newContext(req: IncomingMessage) {
  const given = req.headers['x-request-id'];
  return {
    /** The request id (the client's `X-Request-Id` when it is sane, else a fresh UUID). */
    id: typeof given === 'string' && SANE_ID.test(given) ? given : randomUUID(),
    /** `performance.now()` when the gateway saw the request. */
    startedAt: performance.now(),
    /** Admission class, or `gateway` for the gateway's own endpoints. */
    requestClass: 'interactive' as RequestClass | 'gateway',
    /** The path with ids replaced by `:id` (no query string: it may hold secrets). */
    route: routeOf(req.url ?? '/'),
    /** Time spent waiting for an admission slot, ms. */
    queueWaitMs: undefined as number | undefined,
    /** Time from dispatch to the upstream's response headers, ms. */
    upstreamMs: undefined as number | undefined,
    /** How the credential was validated. */
    cacheTier: undefined as CacheTier | undefined,
    /** Stable code of the error that ended the request, if any. */
    errorCode: undefined as string | undefined,
    /** The underlying error's code (e.g. `ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`), if any. */
    errorCause: undefined as string | undefined,
    /** Identity headers the client sent and the gateway removed. */
    strippedIdentityHeaders: 0,
    /** The client's address (set when the request arrives: the socket is gone by the time it is logged). */
    client: '',
    /** Gives the request's admission slot back (set while it holds one). */
    releaseSlot: undefined as (() => void) | undefined,
    /** What the edge decided (path, host, client, forwarding chain), once it did. */
    edge: undefined as EdgeView | undefined,
    /** Whether the upstream needs its database for this request (`/api/*` but public paths). */
    needsDatabase: false,
    /** The upstream's own request id, from its answer. */
    upstreamRequestId: undefined as string | undefined,
  };
}

/** The request's context, created on first use. */
export function requestContext(req: IncomingMessage): RequestContext {
  let context = contexts.get(req);
  if (!context) {
    context = newContext(req);
    contexts.set(req, context);
  }
  return context;
}

const ID_SEGMENT = /^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

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
    .map((s) => (ID_SEGMENT.test(s) || s.length >= 24 || /[=&%@:]/.test(s) ? ':id' : s))
    .join('/')
    .slice(0, 200);
}
