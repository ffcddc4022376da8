import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Options of {@link startFakeCvat}. */
export interface FakeCvatOptions {
  /** Port on 127.0.0.1. @default a free port */
  port?: number;
  /** Polls of `GET /api/requests/{rq_id}` that answer `started` before `finished`. @default 1 */
  pollsBeforeFinished?: number;
  /** Delay before every `/api/*` answer except `/api/server/about`. @default 0 */
  workMs?: number;
  /** Above this many `/api/*` requests in flight, answer 500 like a database out of connections. @default Infinity */
  maxInFlight?: number;
  /** Bytes of an export download. @default 4096 */
  exportBytes?: number;
  /** Bytes of `GET /bench/blob` and `GET /api/bench/blob` (authenticated). @default 1 MiB */
  blobBytes?: number;
}

/** Counters of what the fake served. */
export interface FakeCvatStats {
  requests: number;
  inFlight: number;
  peakInFlight: number;
  /** Answers by status. */
  statuses: Record<number, number>;
  /** Requests by route (`POST /api/tasks/:id/dataset/export`, ...). */
  routes: Record<string, number>;
}

export interface FakeCvat {
  readonly url: string;
  readonly port: number;
  /** The token `/api/users/self` and every authenticated route accept. */
  readonly token: string;
  /** Username and password `POST /api/auth/login` accepts. */
  readonly username: string;
  readonly password: string;
  readonly stats: FakeCvatStats;
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A fast in-process HTTP server shaped like CVAT's export API, for tests and benches that need
 * an upstream without Django: `GET /api/server/about` (public, light), `POST /api/auth/login`,
 * `GET /api/users/self`, `POST /api/tasks/{id}/dataset/export` (202 `{rq_id}`),
 * `GET /api/requests/{rq_id}`, `GET /api/tasks/{id}/dataset/download?rq_id=`, and
 * `GET /bench/blob` (public) and `GET /api/bench/blob` (authenticated), `blobBytes` of body each. `result_url` is built like Django with
 * `USE_X_FORWARDED_HOST`: from `X-Forwarded-Proto`/`X-Forwarded-Host`, else `Host`.
 * It is not Django: use the real fixture (`test/django`) to test Django's behaviour.
 */
export async function startFakeCvat(options: FakeCvatOptions = {}): Promise<FakeCvat> {
  const pollsBeforeFinished = options.pollsBeforeFinished ?? 1;
  const workMs = options.workMs ?? 0;
  const maxInFlight = options.maxInFlight ?? Number.POSITIVE_INFINITY;
  const exportBytes = options.exportBytes ?? 4096;
  const blob = Buffer.alloc(options.blobBytes ?? 1024 * 1024, 0x5a);
  const exportBody = Buffer.alloc(exportBytes, 0x61);
  const token = randomBytes(20).toString('hex');
  const sessionId = randomBytes(16).toString('hex');
  const username = 'exporter';
  const password = 'exporter-password';
  const polls = new Map<string, number>();
  const stats: FakeCvatStats = { requests: 0, inFlight: 0, peakInFlight: 0, statuses: {}, routes: {} };

  const authorized = (req: IncomingMessage): boolean => {
    const auth = req.headers.authorization ?? '';
    if (auth === `Token ${token}` || auth === `Bearer ${token}`) return true;
    return (req.headers.cookie ?? '').split(/;\s*/).includes(`sessionid=${sessionId}`);
  };
  const send = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void => {
    const text = JSON.stringify(body);
    stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
  };
  const sendBytes = (res: ServerResponse, bytes: Buffer): void => {
    stats.statuses[200] = (stats.statuses[200] ?? 0) + 1;
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(bytes.length),
    });
    res.end(bytes);
  };
  const route = (name: string): void => {
    stats.routes[name] = (stats.routes[name] ?? 0) + 1;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/api/server/about') {
      route('GET /api/server/about');
      send(res, 200, { name: 'Computer Vision Annotation Tool', version: 'fake' });
      return;
    }
    if (method === 'GET' && path === '/bench/blob') {
      route('GET /bench/blob');
      sendBytes(res, blob);
      return;
    }
    if (!path.startsWith('/api/')) {
      send(res, 404, { detail: 'Not found.' });
      return;
    }
    stats.inFlight += 1;
    stats.peakInFlight = Math.max(stats.peakInFlight, stats.inFlight);
    try {
      if (stats.inFlight > maxInFlight) {
        send(res, 500, { detail: 'FATAL: sorry, too many clients already', code: 'database_error' });
        return;
      }
      if (workMs > 0) await new Promise((r) => setTimeout(r, workMs));
      if (method === 'POST' && path === '/api/auth/login') {
        route('POST /api/auth/login');
        const body = await readBody(req);
        let creds: { username?: unknown; password?: unknown } = {};
        try {
          creds = JSON.parse(body) as typeof creds;
        } catch {
          creds = {};
        }
        if (creds.username !== username || creds.password !== password) {
          send(res, 400, { non_field_errors: ['Unable to log in with provided credentials.'] });
          return;
        }
        send(res, 200, { key: token }, {
          'set-cookie': `sessionid=${sessionId}; HttpOnly; Path=/; SameSite=Lax`,
        } as Record<string, string>);
        return;
      }
      if (!authorized(req)) {
        send(res, 401, { detail: 'Authentication credentials were not provided.' });
        return;
      }
      if (method === 'GET' && path === '/api/bench/blob') {
        route('GET /api/bench/blob');
        sendBytes(res, blob);
        return;
      }
      if (method === 'GET' && path === '/api/users/self') {
        route('GET /api/users/self');
        send(res, 200, {
          id: 1,
          username,
          is_active: true,
          is_staff: false,
          is_superuser: false,
        });
        return;
      }
      const exportMatch = /^\/api\/tasks\/(\d+)\/dataset\/export$/.exec(path);
      if (method === 'POST' && exportMatch) {
        route('POST /api/tasks/:id/dataset/export');
        const rqId = `action=export&target=task&target_id=${exportMatch[1]}&format=${encodeURIComponent(url.searchParams.get('format') ?? '')}`;
        polls.set(rqId, 0);
        send(res, 202, { rq_id: rqId });
        return;
      }
      if (method === 'GET' && path.startsWith('/api/requests/')) {
        route('GET /api/requests/:rq_id');
        const rqId = decodeURIComponent(path.slice('/api/requests/'.length));
        const seen = polls.get(rqId);
        if (seen === undefined) {
          send(res, 404, { detail: 'Not found.' });
          return;
        }
        polls.set(rqId, seen + 1);
        if (seen < pollsBeforeFinished) {
          send(res, 200, { id: rqId, status: 'started', result_url: null });
          return;
        }
        const taskId = /target_id=(\d+)/.exec(rqId)?.[1] ?? '0';
        const proto = first(req.headers['x-forwarded-proto']) ?? 'http';
        const host = first(req.headers['x-forwarded-host']) ?? req.headers.host ?? 'localhost';
        const resultUrl = `${proto}://${host}/api/tasks/${taskId}/dataset/download?rq_id=${encodeURIComponent(rqId)}`;
        send(res, 200, { id: rqId, status: 'finished', result_url: resultUrl });
        return;
      }
      if (method === 'GET' && /^\/api\/tasks\/\d+\/dataset\/download$/.test(path)) {
        route('GET /api/tasks/:id/dataset/download');
        if (!polls.has(url.searchParams.get('rq_id') ?? '')) {
          send(res, 404, { detail: 'Not found.' });
          return;
        }
        sendBytes(res, exportBody);
        return;
      }
      send(res, 404, { detail: 'Not found.' });
    } finally {
      stats.inFlight -= 1;
    }
  };

  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    stats.requests += 1;
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { detail: 'A server error occurred.' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closed;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    token,
    username,
    password,
    stats,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function first(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s?.split(',')[0]?.trim() || undefined;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
