import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDENTITY_HEADERS } from '../src/headers.ts';
import { type AccessLogEntry, createGateway, type Gateway, isGatewayError } from '../src/index.ts';
import { adminUrl, memoryLogger, recordRequests } from './helpers.ts';

// A small real upstream that speaks CVAT's /api/users/self for one token and records every
// request it receives, so the test sees exactly what crossed the gateway.
const TOKEN = 'a'.repeat(40);
let upstream: Server;
let gateway: Gateway;
let base: string;
let entries: AccessLogEntry[];
const received: IncomingMessage['headers'][] = [];

beforeAll(async () => {
  upstream = createServer((req, res) => {
    if (req.url?.startsWith('/api/boom')) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"detail":"server error"}');
      return;
    }
    if (req.url?.startsWith('/api/users/self')) {
      const ok = req.headers.authorization === `Token ${TOKEN}`;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(ok ? { id: 7, username: 'alice', is_active: true } : { detail: 'nope' }));
      return;
    }
    received.push(req.headers);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gateway = createGateway({ upstream: origin, listen: '127.0.0.1:0', logger: memoryLogger().logger });
  entries = recordRequests(gateway);
  base = (await gateway.listen()).url;
});

afterAll(async () => {
  await gateway?.close(0);
  upstream?.close();
});

describe('header hygiene through the whole pipeline', () => {
  it('never lets a forged identity header reach the upstream, whatever its spelling', async () => {
    const forged: Record<string, string> = {};
    for (const name of IDENTITY_HEADERS) forged[name] = 'admin';
    forged['X-Sluice-User-Id'] = '1';
    forged['X-Sluice-Identity'] = '{"userId":1,"isSuperuser":true}';
    forged.X_Remote_User = 'admin';
    forged['X-Auth-Request-Groups'] = 'admins';
    const res = await fetch(`${base}/api/tasks`, {
      headers: { ...forged, authorization: `Token ${TOKEN}`, 'x-forwarded-for': '6.6.6.6' },
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(received).toHaveLength(1);
    const names = Object.keys(received[0] ?? {});
    const leaked = names.filter(
      (n) => n.startsWith('x-sluice') || n.includes('_') || IDENTITY_HEADERS.includes(n.replaceAll('_', '-')),
    );
    expect(leaked).toEqual([]);
    expect(received[0]?.authorization).toBe(`Token ${TOKEN}`);
    expect(received[0]?.['x-forwarded-for']).toBe('127.0.0.1');
    await waitFor(() => entries.some((e) => e.route === '/api/tasks'));
    const metrics = await (await fetch(`${adminUrl(gateway)}/metrics`)).text();
    const stripped = Number(/sluice_identity_headers_stripped_total (\d+)/.exec(metrics)?.[1]);
    expect(stripped).toBeGreaterThanOrEqual(IDENTITY_HEADERS.length);
  });

  it('strips them on public paths too, and never authenticates with them', async () => {
    received.length = 0;
    const res = await fetch(`${base}/api/tasks`, {
      headers: { 'x-remote-user': 'admin', 'x-sluice-user': 'admin' },
    });
    expect(res.status).toBe(401);
    await res.arrayBuffer();
    expect(received).toHaveLength(0);
    const about = await fetch(`${base}/api/server/about`, { headers: { 'x-remote-user': 'admin' } });
    expect(about.status).toBe(200);
    await about.arrayBuffer();
    expect(received[0]?.['x-remote-user']).toBeUndefined();
  });
});

describe('circuit breaker and lifecycle', () => {
  it('opens the breaker after repeated upstream failures and sheds with 503 E_CIRCUIT_OPEN', async () => {
    const changes: string[] = [];
    const off = gateway.on('breaker', ({ to }) => changes.push(to));
    const headers = { authorization: `Token ${TOKEN}` };
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${base}/api/boom`, { headers });
      await res.arrayBuffer();
      if (res.status === 503) break;
    }
    const shed = await fetch(`${base}/api/tasks`, { headers });
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await shed.json()) as { code: string }).code).toBe('E_CIRCUIT_OPEN');
    expect(gateway.status().breaker).toBe('open');
    expect(changes).toContain('open');
    const metrics = await (await fetch(`${adminUrl(gateway)}/metrics`)).text();
    expect(metrics).toContain('sluice_breaker_state{state="open"} 1');
    expect(metrics).toMatch(/sluice_admission_rejections_total\{reason="E_CIRCUIT_OPEN"\} [1-9]/);
    off();
  });

  it('closes once (idempotent), emits draining and closed, and refuses listen() after', async () => {
    const other = createGateway({
      upstream: 'http://127.0.0.1:9',
      listen: '127.0.0.1:0',
      logger: memoryLogger().logger,
    });
    await other.listen();
    const seen: string[] = [];
    other.on('draining', () => seen.push('draining'));
    other.on('closed', () => seen.push('closed'));
    const first = other.close(0);
    expect(other.close(0)).toBe(first);
    expect(await first).toEqual({ completed: 0, cutOff: 0 });
    expect(seen).toEqual(['draining', 'closed']);
    expect(other.status().state).toBe('closed');
    const refused = await other.listen().catch((e: unknown) => e);
    expect(isGatewayError(refused, 'E_CLOSED')).toBe(true);
  });
});

describe('cache lifetime without Redis', () => {
  it('validates a credential once per cacheTtlMs, not once per L1 lifetime', async () => {
    let clock = Date.now();
    let validations = 0;
    const counting = createServer((req, res) => {
      if (req.url?.startsWith('/api/users/self')) validations += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 9, username: 'bob', is_active: true }));
    });
    counting.listen(0, '127.0.0.1');
    await once(counting, 'listening');
    const embedded = createGateway({
      upstream: `http://127.0.0.1:${(counting.address() as AddressInfo).port}`,
      listen: '127.0.0.1:0',
      cacheTtlMs: 60_000,
      now: () => clock,
      logger: memoryLogger().logger,
    });
    try {
      const url = `${(await embedded.listen()).url}/api/tasks/1`;
      const get = async (): Promise<number> => {
        const res = await fetch(url, { headers: { authorization: `Token ${'b'.repeat(40)}` } });
        await res.arrayBuffer();
        return res.status;
      };
      expect(await get()).toBe(200);
      expect(validations).toBe(1);
      clock += 30_000; // past the 5 s L1 lifetime used with Redis, inside the 60 s TTL
      expect(await get()).toBe(200);
      expect(validations).toBe(1);
      clock += 31_000; // past the TTL: validated again
      expect(await get()).toBe(200);
      expect(validations).toBe(2);
    } finally {
      await embedded.close(0);
      counting.close();
    }
  });
});
