import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createProxy, type ProxyOutcome } from '../src/proxy/forward.ts';

// A small real HTTP upstream (not a mock): it records what it receives and answers per path.
type Route = (req: IncomingMessage, res: ServerResponse) => void;
let upstream: Server;
let upstreamOrigin: string;
const routes = new Map<string, Route>();
const seen: { headers: IncomingMessage['headers']; url: string }[] = [];

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

let gateway: Server;
let gatewayOrigin: string;
let pool: Pool;
const outcomes: ProxyOutcome[] = [];

beforeAll(async () => {
  upstream = createServer((req, res) => {
    seen.push({ headers: req.headers, url: req.url ?? '' });
    const route = routes.get((req.url ?? '').split('?')[0] ?? '');
    if (route) route(req, res);
    else {
      res.writeHead(200, {
        'content-type': 'application/json',
        connection: 'keep-alive, x-hop',
        'x-hop': '1',
      });
      res.end(JSON.stringify({ ok: true }));
    }
  });
  upstreamOrigin = await listen(upstream);
  pool = new Pool(upstreamOrigin, { connections: 8, headersTimeout: 1_000 });
  const proxy = createProxy({ upstream: upstreamOrigin, dispatcher: pool, headersTimeoutMs: 1_000 });
  gateway = createServer((req, res) => {
    void proxy(req, res).then((o) => outcomes.push(o));
  });
  gatewayOrigin = await listen(gateway);
});

afterEach(() => {
  routes.clear();
  seen.length = 0;
  outcomes.length = 0;
});

afterAll(async () => {
  await pool.close();
  gateway.close();
  upstream.close();
});

function rawGet(
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; headers: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gatewayOrigin}${path}`, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('createProxy', () => {
  it('removes identity and hop-by-hop headers and sets X-Forwarded-* from the connection', async () => {
    const res = await rawGet('/api/tasks?page=2', {
      host: 'cvat.example:8090',
      'x-remote-user': 'admin',
      X_Remote_User: 'admin',
      'x-sluice-user-id': '1',
      'x-forwarded-user': 'admin',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.example',
      'x-real-ip': '6.6.6.6',
      'remote-user': 'admin',
      'x-auth-request-user': 'admin',
      connection: 'keep-alive, x-custom-hop',
      'x-custom-hop': 'drop me',
      te: 'trailers',
      'x-keep': 'yes',
    });
    expect(res.status).toBe(200);
    const got = seen[0];
    expect(got?.url).toBe('/api/tasks?page=2');
    const names = Object.keys(got?.headers ?? {});
    for (const forged of [
      'x-remote-user',
      'x_remote_user',
      'x-sluice-user-id',
      'x-forwarded-user',
      'remote-user',
      'x-auth-request-user',
      'x-custom-hop',
      'te',
    ]) {
      expect(names).not.toContain(forged);
    }
    expect(got?.headers['x-keep']).toBe('yes');
    expect(got?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(got?.headers['x-real-ip']).toBe('127.0.0.1');
    expect(got?.headers['x-forwarded-host']).toBe('cvat.example:8090');
    expect(got?.headers['x-forwarded-proto']).toBe('http');
    expect(got?.headers.host).toBe('cvat.example:8090');
    // Response: the upstream's Connection-listed header is hop-by-hop too.
    expect(res.headers['x-hop']).toBeUndefined();
    expect(outcomes[0]?.status).toBe(200);
  });

  it('answers 502 JSON when the upstream refuses connections', async () => {
    const dead = createServer();
    const deadOrigin = await listen(dead);
    await new Promise((r) => dead.close(r));
    const deadPool = new Pool(deadOrigin, { connections: 1 });
    const proxy = createProxy({ upstream: deadOrigin, dispatcher: deadPool });
    const server = createServer((req, res) => void proxy(req, res));
    const origin = await listen(server);
    try {
      const res = await fetch(`${origin}/api/tasks`);
      expect(res.status).toBe(502);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      expect(await res.json()).toMatchObject({ detail: expect.any(String), code: 'E_UPSTREAM_UNAVAILABLE' });
    } finally {
      server.close();
      await deadPool.close();
    }
  });

  it('answers 504 when the upstream sends no headers in time', async () => {
    routes.set('/slow', (_req, res) => {
      setTimeout(() => res.end('late'), 3_000).unref();
    });
    const res = await fetch(`${gatewayOrigin}/slow`);
    expect(res.status).toBe(504);
    expect(((await res.json()) as { code: string }).code).toBe('E_UPSTREAM_TIMEOUT');
  });

  it('aborts the upstream request when the client goes away', async () => {
    let upstreamClosed: () => void = () => {};
    const closed = new Promise<void>((r) => {
      upstreamClosed = r;
    });
    routes.set('/hang', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      req.socket.on('close', () => upstreamClosed());
    });
    const controller = new AbortController();
    const res = await fetch(`${gatewayOrigin}/hang`, { signal: controller.signal });
    expect(res.status).toBe(200);
    controller.abort();
    await closed;
    await expect.poll(() => outcomes.length).toBe(1);
    expect(outcomes[0]?.status).toBe(499);
    expect(outcomes[0]?.errorCode).toBe('E_CLIENT_ABORTED');
  });

  it('streams a request body upstream and the response back, bytes intact', async () => {
    routes.set('/echo', (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    });
    const body = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) % 251;
    const res = await fetch(`${gatewayOrigin}/echo`, { method: 'POST', body });
    expect(res.status).toBe(200);
    const back = Buffer.from(await res.arrayBuffer());
    expect(back.equals(body)).toBe(true);
    expect(seen[0]?.headers['content-length']).toBe(String(body.length));
  });
});
