import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
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
      res.end(JSON.stringify({ method: req.method, url: req.url, bytes }));
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
