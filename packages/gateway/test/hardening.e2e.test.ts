import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { Credential } from '@sluice/django';
import type { Validator } from '@sluice/session-cache';
import { waitFor } from '@sluice/test-support';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway, type GatewayOptions } from '../src/index.ts';
import { createProxy } from '../src/proxy/forward.ts';
import { memoryLogger } from './helpers.ts';

// Requests that must be answered and must never pin an upstream connection or an admission slot:
// non-path request targets, CONNECT, Upgrade, and uploads whose body stops arriving. Raw sockets,
// because fetch cannot send any of these.

/** Sends `text` on a fresh socket; resolves with everything received until the server closes it. */
function raw(
  port: number,
  text: string,
  { timeoutMs = 10_000 }: { timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; received: ${JSON.stringify(received)}`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.write(text);
  });
}

/** Sends `text` and resolves with the first response head + body (Content-Length framed), leaving the socket open. */
function rawOnce(port: number, text: string, timeoutMs = 10_000): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const done = (error?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
    };
    const timer = setTimeout(
      () => done(new Error(`no answer within ${timeoutMs} ms; received: ${JSON.stringify(received)}`)),
      timeoutMs,
    );
    socket.setEncoding('utf8');
    socket.on('error', (error) => done(error));
    socket.on('close', () =>
      done(new Error(`closed without an answer; received: ${JSON.stringify(received)}`)),
    );
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = received.slice(0, end);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      const body = received.slice(end + 4);
      if (Buffer.byteLength(body) < length) return;
      socket.removeAllListeners('close');
      done();
      resolve({ head, body });
    });
    socket.write(text);
  });
}

let upstream: Server;
let upstreamUrl: string;
let upstreamRequests = 0;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    upstreamRequests += 1;
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url, bytes, headers: req.headers }));
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

/** A gateway in front of the test upstream for one describe block, listening on a free port. */
function gatewayFor(options: Omit<GatewayOptions, 'upstream' | 'listen' | 'logger'>): {
  readonly gateway: Gateway;
  readonly port: number;
} {
  let gateway: Gateway | undefined;
  let port = 0;
  beforeAll(async () => {
    gateway = createGateway({
      ...options,
      upstream: upstreamUrl,
      listen: '127.0.0.1:0',
      logger: memoryLogger().logger,
    });
    port = (await gateway.listen()).port;
  });
  afterAll(async () => {
    await gateway?.close(500);
  });
  return {
    get gateway(): Gateway {
      if (!gateway) throw new Error('the gateway starts in beforeAll');
      return gateway;
    },
    get port(): number {
      return port;
    },
  };
}

describe('request targets that are not a path', () => {
  const gw = gatewayFor({ dbBudget: 2, upstreamConnections: 2 });

  it('answers 200 x `OPTIONS *` with 400 JSON and still forwards normal requests', async () => {
    const before = upstreamRequests;
    for (let batch = 0; batch < 10; batch += 1) {
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => raw(gw.port, 'OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n')),
      );
      for (const answer of answers) {
        expect(answer).toMatch(/^HTTP\/1\.1 400 /);
        expect(answer).toContain('"code":"E_BAD_REQUEST"');
      }
    }
    for (const target of ['GET *', 'M-SEARCH *', 'GET http://example.test/']) {
      const answer = await raw(gw.port, `${target} HTTP/1.1\r\nHost: gw\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    }
    expect(upstreamRequests).toBe(before);
    expect(gw.gateway.status().admission.inFlight).toBe(0);
    const ok = await fetch(`${gw.gateway.address()?.url}/hello`, { signal: AbortSignal.timeout(5_000) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ method: 'GET', url: '/hello' });
  });
});

describe('the proxy on its own', () => {
  it('refuses a non-path target without dispatching, so the upstream pool never fills up', async () => {
    const dispatcher = new Pool(upstreamUrl, { connections: 2 });
    const proxy = createProxy({ upstream: upstreamUrl, dispatcher });
    const server = createServer((req, res) => void proxy(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => raw(port, 'OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n')),
      );
      for (const answer of answers) expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      const ok = await fetch(`http://127.0.0.1:${port}/after`, { signal: AbortSignal.timeout(5_000) });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ url: '/after' });
    } finally {
      server.closeAllConnections();
      server.close();
      await dispatcher.close();
    }
  });
});

describe('CONNECT and Upgrade', () => {
  const gw = gatewayFor({ dbBudget: 2 });

  it('answers CONNECT with 405 JSON and closes the connection', async () => {
    const answer = await raw(gw.port, 'CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 405 /);
    expect(answer).toContain('"code":"E_METHOD_NOT_ALLOWED"');
  });

  it('answers an Upgrade request as a plain request instead of dropping it', async () => {
    const { head, body } = await rawOnce(
      gw.port,
      'GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(body)).toMatchObject({ method: 'GET', url: '/ws' });
  });
});

describe('client body idle timeout', () => {
  const gw = gatewayFor({ dbBudget: 1, queueTimeoutMs: 20_000, clientBodyTimeoutMs: 300, clientMinRate: 0 });

  it('answers 408 to a stalled upload and frees its admission slot', async () => {
    const answer = await raw(
      gw.port,
      'POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n' +
        'x'.repeat(10),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"code":"E_CLIENT_TIMEOUT"');
    expect(gw.gateway.status().admission.inFlight).toBe(0);
    // The only slot (dbBudget 1) is free again.
    const ok = await fetch(`${gw.gateway.address()?.url}/after`, {
      method: 'POST',
      body: 'done',
      signal: AbortSignal.timeout(5_000),
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ bytes: 4 });
  });

  it('lets an upload that keeps arriving finish', async () => {
    const socket = connect(gw.port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    socket.write('POST /slow HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\nConnection: close\r\n\r\n');
    for (let i = 0; i < 10; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      socket.write('y'.repeat(10));
    }
    await once(socket, 'close');
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received).toContain('"bytes":100');
  });
});

describe('client headers timeout', () => {
  const gw = gatewayFor({ clientHeadersTimeoutMs: 1_000 });

  it('answers 408 and closes a connection whose headers trickle in too slowly', async () => {
    const socket = connect(gw.port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    socket.on('error', () => undefined);
    const started = Date.now();
    const trickle = setInterval(() => socket.write('X'), 200);
    socket.write('GET /slow-headers HTTP/1.1\r\nHost: gw\r\nX-Trickle: ');
    await once(socket, 'close');
    clearInterval(trickle);
    const ms = Date.now() - started;
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    // headersTimeout 1 s, checked every second: cut between 1 s and about 2 s, not Node's 60-90 s
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(5_000);
    expect(gw.gateway.status().admission.inFlight).toBe(0);
  });
});

/** Accepts one token and one session key (no I/O), and counts its calls. */
const TOKEN = 'a'.repeat(40);
const SESSION = 's'.repeat(32);
const calls: string[] = [];
const validator: Validator = {
  kinds: ['token', 'session', 'bearer', 'basic'],
  async validate(credential: Credential) {
    calls.push(credential.kind);
    const ok =
      (credential.kind === 'token' && credential.token === TOKEN) ||
      (credential.kind === 'session' && credential.sessionKey === SESSION);
    return ok
      ? {
          valid: true as const,
          identity: {
            userId: 7,
            username: 'u',
            isActive: true,
            isStaff: false,
            isSuperuser: false,
            credentialKind: credential.kind,
            expiresAt: null,
          },
        }
      : { valid: false as const, reason: 'not-found' };
  },
};

describe('one canonical path decides everything', () => {
  const gw = gatewayFor({ dbBudget: 2, validator });

  it('gives an encoded path the decision of its decoded form, and refuses encoded slashes', async () => {
    const before = upstreamRequests;
    for (const path of ['/api/tasks', '/%61pi/tasks', '/api/t%61sks', '/%61%70%69/tasks/1']) {
      const { head } = await rawOnce(gw.port, `GET ${path} HTTP/1.1\r\nHost: gw\r\n\r\n`);
      expect(head, path).toMatch(/^HTTP\/1\.1 401 /);
    }
    for (const path of [
      '/api%2Ftasks',
      '/api/auth/login/..%2F..%2Ftasks',
      '/api/auth/login/../../tasks',
      '/api/%zz',
    ]) {
      const { head } = await rawOnce(gw.port, `GET ${path} HTTP/1.1\r\nHost: gw\r\n\r\n`);
      expect(head, path).toMatch(/^HTTP\/1\.1 400 /);
    }
    // A flood of encoded requests for a protected path reaches the upstream 0 times.
    await Promise.all(
      Array.from({ length: 200 }, () =>
        fetch(`${gw.gateway.address()?.url}/%61pi/tasks`).then((r) => r.arrayBuffer()),
      ),
    );
    expect(upstreamRequests).toBe(before);
  });
});

describe('Connection cannot remove what the gateway decided on', () => {
  const gw = gatewayFor({ dbBudget: 2, validator });

  it('refuses Connection naming Authorization, Cookie, Host or Content-Length', async () => {
    const before = upstreamRequests;
    for (const named of ['authorization', 'Cookie', 'host', 'content-length', 'keep-alive, Authorization']) {
      const { head } = await rawOnce(
        gw.port,
        `GET /api/users/self HTTP/1.1\r\nHost: gw\r\nAuthorization: Token ${TOKEN}\r\n` +
          `Cookie: sessionid=${'b'.repeat(32)}\r\nConnection: ${named}\r\n\r\n`,
      );
      expect(head, named).toMatch(/^HTTP\/1\.1 400 /);
    }
    expect(upstreamRequests).toBe(before);
    // The identity the gateway validated is the one the upstream receives.
    const ok = await fetch(`${gw.gateway.address()?.url}/api/users/self`, {
      headers: { authorization: `Token ${TOKEN}`, connection: 'keep-alive' },
    });
    expect(ok.status).toBe(200);
    const seen = (await ok.json()) as { headers: Record<string, string> };
    expect(seen.headers.authorization).toBe(`Token ${TOKEN}`);
  });
});

describe('Host', () => {
  const gw = gatewayFor({ dbBudget: 2 });

  it('must be one host[:port]', async () => {
    for (const host of ['a.example/evil?', 'user@evil.example:80', 'a.example evil', 'a.example:99999999']) {
      const { head } = await rawOnce(gw.port, `GET /x HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      expect(head, host).toMatch(/^HTTP\/1\.1 400 /);
    }
    const twice = await rawOnce(gw.port, 'GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n');
    expect(twice.head).toMatch(/^HTTP\/1\.1 400 /);
    const ok = await rawOnce(gw.port, 'GET /x HTTP/1.1\r\nHost: cvat.example:8443\r\n\r\n');
    expect(ok.head).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(ok.body).headers['x-forwarded-host']).toBe('cvat.example:8443');
  });
});

describe('the client address without trusted proxies', () => {
  const gw = gatewayFor({ dbBudget: 2 });

  it("ignores the client's own X-Forwarded-For and X-Real-IP", async () => {
    const res = await fetch(`${gw.gateway.address()?.url}/who`, {
      headers: {
        'x-forwarded-for': '203.0.113.1',
        'x-real-ip': '203.0.113.2',
        'x-userinfo': 'e30',
        'x-api-key': 'k',
      },
    });
    const { headers } = (await res.json()) as { headers: Record<string, string> };
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-real-ip']).toBe('127.0.0.1');
    expect(headers['x-userinfo']).toBeUndefined();
    expect(headers['x-api-key']).toBeUndefined();
  });
});

describe('operational endpoints', () => {
  const gw = gatewayFor({ dbBudget: 2 });

  it('answer only on the admin listener; the public port keeps /healthz without detail', async () => {
    const publicUrl = gw.gateway.address()?.url;
    const health = await fetch(`${publicUrl}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    for (const path of ['/metrics', '/readyz', '/sluice/status', '/sluice/status.json']) {
      const res = await fetch(`${publicUrl}${path}`);
      // The upstream's own answer: the gateway's figures are not on the public port.
      expect(((await res.json()) as { url: string }).url, path).toBe(path);
    }
    const admin = gw.gateway.adminAddress()?.url;
    expect(admin).toMatch(/^http:\/\/127\.0\.0\.1:/);
    expect(await (await fetch(`${admin}/metrics`)).text()).toContain('sluice_requests_total');
    expect((await fetch(`${admin}/sluice/status.json`)).status).toBe(200);
  });
});

describe('connection caps', () => {
  const gw = gatewayFor({ dbBudget: 2, maxConnections: 16, maxConnectionsPerClient: 4 });

  /** `n` connections from 127.0.0.1; `busy`: each with a request in progress (its body never sent). */
  async function hold(n: number, busy: boolean): Promise<Socket[]> {
    return Promise.all(
      Array.from({ length: n }, async () => {
        const socket = connect(gw.port, '127.0.0.1');
        socket.on('error', () => undefined);
        await once(socket, 'connect');
        if (busy) {
          socket.write('POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n');
          await once(socket, 'data'); // 100 Continue: the request is in progress
        }
        return socket;
      }),
    );
  }

  it("refuse a client's connections beyond its cap with the gateway's own 503, and serve others", async () => {
    const held = await hold(4, true);
    try {
      await waitFor(() => (gw.gateway.status().connections?.open ?? 0) === 4, { timeoutMs: 5_000 });
      const refused = await raw(gw.port, 'GET /x HTTP/1.1\r\nHost: gw\r\n\r\n');
      expect(refused).toMatch(/^HTTP\/1\.1 503 /);
      expect(refused).toContain('E_TOO_MANY_CONNECTIONS');
      // Another address is served.
      const other = connect({ port: gw.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
      await once(other, 'connect');
      other.write('GET /x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n');
      let answer = '';
      other.setEncoding('utf8');
      other.on('data', (c: string) => {
        answer += c;
      });
      await once(other, 'close');
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      const status = gw.gateway.status();
      expect(status.connections?.refused.perClient).toBe(1);
      expect(status.requests.upstreamErrors).toBe(0);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  it('refuses idle connections beyond the cap too (closing them would race a client reusing one)', async () => {
    await waitFor(() => (gw.gateway.status().connections?.open ?? 0) === 0, { timeoutMs: 5_000 });
    const idle = await hold(4, false);
    try {
      await waitFor(() => (gw.gateway.status().connections?.open ?? 0) === 4, { timeoutMs: 5_000 });
      expect(await raw(gw.port, 'GET /x HTTP/1.1\r\nHost: gw\r\n\r\n')).toContain('E_TOO_MANY_CONNECTIONS');
      expect(idle.every((s) => !s.destroyed)).toBe(true);
    } finally {
      for (const s of idle) s.destroy();
    }
  });
});

describe('connection caps behind a trusted proxy', () => {
  const gw = gatewayFor({
    dbBudget: 2,
    maxConnections: 16,
    maxConnectionsPerClient: 2,
    trustProxy: ['127.0.0.1'],
  });

  it('does not apply the per-address cap to a trusted proxy, which carries many clients', async () => {
    const held = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const socket = connect(gw.port, '127.0.0.1');
        socket.on('error', () => undefined);
        await once(socket, 'connect');
        return socket;
      }),
    );
    try {
      await waitFor(() => (gw.gateway.status().connections?.open ?? 0) === 4, { timeoutMs: 5_000 });
      expect(
        await raw(
          gw.port,
          'GET /x HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n',
        ),
      ).toMatch(/^HTTP\/1\.1 200 /);
      expect(gw.gateway.status().connections?.refused.perClient).toBe(0);
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

describe('credentials that cannot push out known ones', () => {
  const gw = gatewayFor({ dbBudget: 4, validator, cacheMax: 1_000 });

  it('keeps a warm token in L1 through a flood of unknown session keys', async () => {
    const url = `${gw.gateway.address()?.url}/api/users/self`;
    expect((await fetch(url, { headers: { authorization: `Token ${TOKEN}` } })).status).toBe(200);
    const tokenCalls = (): number => calls.filter((k) => k === 'token').length;
    const before = tokenCalls();
    for (let batch = 0; batch < 30; batch++) {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          fetch(url, { headers: { cookie: `sessionid=${`${batch}x${i}`.padEnd(32, 'q')}` } }).then((r) =>
            r.arrayBuffer(),
          ),
        ),
      );
    }
    expect((await fetch(url, { headers: { authorization: `Token ${TOKEN}` } })).status).toBe(200);
    expect(tokenCalls()).toBe(before);
  }, 60_000);
});

describe('smaller edges', () => {
  const gw = gatewayFor({ dbBudget: 2, validator });

  it('sends 100 Continue only once the credential is accepted', async () => {
    const refused = await rawOnce(
      gw.port,
      'POST /api/tasks HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n',
    );
    expect(refused.head).toMatch(/^HTTP\/1\.1 401 /);
    const accepted = await rawOnce(
      gw.port,
      `POST /api/tasks HTTP/1.1\r\nHost: gw\r\nAuthorization: Token ${TOKEN}\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n`,
    );
    expect(accepted.head).toMatch(/^HTTP\/1\.1 100 Continue/);
  });

  it('accepts a valid session among more than 8 KiB of cookies', async () => {
    const filler = Array.from({ length: 40 }, (_, i) => `pref${i}=${'v'.repeat(300)}`).join('; ');
    const res = await fetch(`${gw.gateway.address()?.url}/api/users/self`, {
      headers: { cookie: `${filler}; sessionid=${SESSION}` },
    });
    expect(res.status).toBe(200);
  });
});
