import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Validator } from '@sluice/session-cache';
import { type OwnPostgres, startOwnPostgres, waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../src/index.ts';
import { adminUrl, memoryLogger } from './helpers.ts';

// A PostgreSQL the suite owns and crashes (SIGKILL of every server process), a small Node upstream
// that stands in for Django (it answers 200 to everything but two failure paths), and a gateway in database mode whose
// database URL points at that PostgreSQL.
let pg: OwnPostgres;
let upstream: Server;
let gateway: Gateway;
let url: string;
let upstreamHits = 0;

// Stands in for a credential the cache already holds: it accepts one token without any I/O, so
// only the guard can keep the request from the upstream while the database is down.
const TOKEN = 'a'.repeat(40);
const validator: Validator = {
  kinds: ['token'],
  async validate(credential) {
    return credential.kind === 'token' && credential.token === TOKEN
      ? {
          valid: true,
          identity: {
            userId: 7,
            username: 'user',
            isActive: true,
            isStaff: false,
            isSuperuser: false,
            credentialKind: 'token',
            expiresAt: null,
          },
        }
      : { valid: false, reason: 'unknown token' };
  },
};
const auth = { headers: { authorization: `Token ${TOKEN}` } };

beforeAll(async () => {
  pg = await startOwnPostgres();
  upstream = createServer((req, res) => {
    upstreamHits += 1;
    req.resume();
    if (req.url === '/api/broken') {
      // Django failing for a reason of its own, with the database up.
      res.writeHead(500, { 'content-type': 'text/plain', 'x-upstream': 'django' });
      res.end('upstream failure');
      return;
    }
    if (req.url === '/api/dies-under-me') {
      // PostgreSQL dies while Django serves this request: Django starts its 500 page at once,
      // before the gateway has had time to notice, and the rest of the body comes later (the
      // gateway must drop it and free the upstream connection).
      void pg.kill().then(() => {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.write('<h1>Server Error (500)</h1>');
        const rest = setTimeout(() => res.end('<p>OperationalError</p>'), 1_500);
        rest.unref();
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url }));
  });
  upstream.listen(0, '127.0.0.1');
  await new Promise((resolve) => upstream.once('listening', resolve));
  const port = (upstream.address() as AddressInfo).port;
  gateway = createGateway({
    upstream: `http://127.0.0.1:${port}`,
    listen: '127.0.0.1:0',
    databaseUrl: pg.url(),
    dbBudget: 8,
    upstreamConnections: 16,
    monitorIntervalMs: 60_000,
    databaseProbeIntervalMs: 100,
    readyTimeoutMs: 1_000,
    validator,
    logger: memoryLogger().logger,
  });
  url = (await gateway.listen()).url;
}, 60_000);

afterAll(async () => {
  await gateway?.close(1_000);
  await new Promise((resolve) => upstream?.close(resolve));
  await pg?.stop();
});

describe('database outage (database mode)', () => {
  it('answers 503 E_DATABASE_UNAVAILABLE with Retry-After while PostgreSQL is down, then 2xx again', async () => {
    const before = await fetch(`${url}/api/projects`, auth);
    expect(before.status).toBe(200);
    await before.body?.cancel();

    const changes: string[] = [];
    gateway.on('database', ({ state }) => changes.push(state));
    await pg.kill();
    // The gateway's idle pooled connection breaks at once: that alone must reveal the outage.
    await waitFor(() => gateway.status().database?.health.state === 'down', {
      timeoutMs: 10_000,
      what: 'the gateway to see the database down',
    });

    const hitsBefore = upstreamHits;
    const down = await fetch(`${url}/api/projects?page=1`, auth);
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('1');
    const body = (await down.json()) as { code: string; message: string; retryAfterSeconds: number };
    expect(body.code).toBe('E_DATABASE_UNAVAILABLE');
    expect(body.retryAfterSeconds).toBe(1);
    expect(typeof body.message).toBe('string');
    expect(upstreamHits).toBe(hitsBefore);

    // A public path needs no database: still forwarded.
    const about = await fetch(`${url}/api/server/about`);
    expect(about.status).toBe(200);
    await about.body?.cancel();

    const ready = await fetch(`${adminUrl(gateway)}/readyz`);
    expect(ready.status).toBe(503);
    await ready.body?.cancel();
    const metrics = await (await fetch(`${adminUrl(gateway)}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_db_up 0$/m);
    const status = gateway.status().database?.health;
    expect(status?.state).toBe('down');
    expect(status?.outages).toBe(1);
    expect(status?.downSince).toEqual(expect.any(Number));

    await pg.start();
    await waitFor(
      async () => {
        const res = await fetch(`${url}/api/projects`, auth);
        await res.body?.cancel();
        return res.status === 200;
      },
      { timeoutMs: 15_000, what: 'full service after PostgreSQL is back' },
    );
    expect(gateway.status().database?.health.state).toBe('up');
    expect(changes).toEqual(['down', 'up']);
    const readyAgain = await fetch(`${adminUrl(gateway)}/readyz`);
    expect(readyAgain.status).toBe(200);
    await readyAgain.body?.cancel();
    expect(await (await fetch(`${adminUrl(gateway)}/metrics`)).text()).toMatch(/^sluice_db_up 1$/m);
  }, 60_000);

  it('forwards an upstream 5xx unchanged while the database is up', async () => {
    const res = await fetch(`${url}/api/broken`, auth);
    expect(res.status).toBe(500);
    expect(res.headers.get('x-upstream')).toBe('django');
    expect(res.headers.get('retry-after')).toBeNull();
    expect(await res.text()).toBe('upstream failure');
    expect(gateway.status().database?.health.state).toBe('up');
  });

  it('answers 503 instead of the upstream 5xx of a request the database died under', async () => {
    expect(gateway.status().database?.health.state).toBe('up');
    const outagesBefore = gateway.status().database?.health.outages ?? 0;
    const res = await fetch(`${url}/api/dies-under-me`, auth);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    const body = (await res.json()) as { code: string; retryAfterSeconds: number };
    expect(body.code).toBe('E_DATABASE_UNAVAILABLE');
    expect(body.retryAfterSeconds).toBe(1);
    expect(gateway.status().database?.health.state).toBe('down');
    expect(gateway.status().database?.health.outages).toBe(outagesBefore + 1);

    await pg.start();
    await waitFor(
      async () => {
        const again = await fetch(`${url}/api/projects`, auth);
        await again.body?.cancel();
        return again.status === 200;
      },
      { timeoutMs: 15_000, what: 'full service after PostgreSQL is back' },
    );
  }, 60_000);

  it('forwards requests as before with the guard turned off', async () => {
    const port = (upstream.address() as AddressInfo).port;
    const unguarded = createGateway({
      upstream: `http://127.0.0.1:${port}`,
      listen: '127.0.0.1:0',
      databaseUrl: pg.url(),
      dbBudget: 4,
      upstreamConnections: 8,
      databaseGuard: false,
      readyTimeoutMs: 1_000,
      validator,
      logger: memoryLogger().logger,
    });
    try {
      const { url: u } = await unguarded.listen();
      expect(unguarded.status().database?.health.state).toBe('unguarded');
      const res = await fetch(`${u}/api/projects`, auth);
      expect(res.status).toBe(200);
      await res.body?.cancel();
      expect(await (await fetch(`${adminUrl(unguarded)}/metrics`)).text()).toMatch(/^sluice_db_up 1$/m);
    } finally {
      await unguarded.close(1_000);
    }
  });
});
