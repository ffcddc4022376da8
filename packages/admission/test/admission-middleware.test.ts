import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { waitFor } from '@sluice/test-support';
import express, { type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AdmissionMiddleware,
  admission,
  CircuitBreaker,
  type CircuitBreakerOptions,
  Semaphore,
} from '../src/index.ts';
import { type Deferred, deferred, get, type Listening, listen, open } from './helpers.ts';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function track<T extends { close(): Promise<unknown> }>(x: T): T {
  cleanups.push(() => x.close());
  return x;
}

/** An app whose handler waits until the test lets each request go. */
function holdingApp(mw: AdmissionMiddleware) {
  const holds: Deferred[] = [];
  const entered: string[] = [];
  const app = express();
  app.use(mw);
  app.get('/hold', async (req: Request, res: Response) => {
    const d = deferred();
    holds.push(d);
    entered.push(String(req.headers['x-name'] ?? ''));
    await d.promise;
    res.json({ ok: true });
  });
  app.get('/ok', (_req: Request, res: Response) => {
    res.json({ ok: true });
  });
  return { app, holds, entered };
}

describe('admission(): admit, queue, shed', () => {
  it('lets requests through with an ample limit and releases each slot exactly once', async () => {
    const mw = track(admission({ limit: 100, queueWaitHeader: 'X-Queue-Wait-Ms' }));
    const releases: string[] = [];
    mw.gate.on('release', (e) => releases.push(e.key));
    const app = express();
    app.use(mw);
    app.get('/', (_req, res) => {
      res.json({ inFlight: mw.inFlight });
    });
    const replies = await Promise.all(Array.from({ length: 20 }, () => request(app).get('/')));
    for (const r of replies) {
      expect(r.status).toBe(200);
      expect(r.headers['x-queue-wait-ms']).toBe('0');
      expect(r.body.inFlight).toBeGreaterThanOrEqual(1);
    }
    expect(releases.length).toBe(20);
    expect([mw.inFlight, mw.queued, mw.available, mw.limit]).toEqual([0, 0, 100, 100]);
  });

  it('queues beyond the limit, then sheds with 503 JSON and Retry-After', async () => {
    const mw = track(
      admission({ limit: 1, maxQueue: 1, queueTimeoutMs: 10_000, queueWaitHeader: 'X-Queue-Wait-Ms' }),
    );
    const rejects: string[] = [];
    mw.on('reject', (e) => rejects.push(`${e.code} ${e.res.req.headers['x-name']}`));
    const { app, holds, entered } = holdingApp(mw);
    const server = track(await listen(app));
    const first = get(`${server.url}/hold`, { 'x-name': 'first' });
    await waitFor(() => holds.length === 1);
    const second = get(`${server.url}/hold`, { 'x-name': 'second' });
    await waitFor(() => mw.queued === 1);
    const shed = await get(`${server.url}/hold`, { 'x-name': 'third' });
    expect(shed.status).toBe(503);
    expect(Number(shed.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(shed.headers['content-type']).toMatch(/application\/json/);
    const body = JSON.parse(shed.body) as { code: string; message: string; retryAfterSeconds: number };
    expect(body.code).toBe('E_QUEUE_FULL');
    expect(body.message).toMatch(/full/);
    expect(body.retryAfterSeconds).toBe(Number(shed.headers['retry-after']));
    expect(rejects).toEqual(['E_QUEUE_FULL third']); // the event names the refused request
    await new Promise((r) => setTimeout(r, 30));
    holds[0]?.resolve();
    expect((await first).status).toBe(200);
    await waitFor(() => holds.length === 2);
    expect(entered).toEqual(['first', 'second']);
    holds[1]?.resolve();
    const r2 = await second;
    expect(r2.status).toBe(200);
    expect(Number(r2.headers['x-queue-wait-ms'])).toBeGreaterThanOrEqual(20);
    await waitFor(() => mw.inFlight === 0);
  });

  it('answers 503 E_QUEUE_TIMEOUT when the wait is too long', async () => {
    const mw = track(admission({ limit: 1, queueTimeoutMs: 150 }));
    const { app, holds } = holdingApp(mw);
    const server = track(await listen(app));
    const first = get(`${server.url}/hold`);
    await waitFor(() => holds.length === 1);
    const late = await get(`${server.url}/ok`);
    expect(late.status).toBe(503);
    expect(JSON.parse(late.body)).toMatchObject({ code: 'E_QUEUE_TIMEOUT' });
    holds[0]?.resolve();
    await first;
  });

  it('releases once whatever happens: handler errors, thrown async errors, clients that leave mid-response', async () => {
    const mw = track(admission({ limit: 5 }));
    let releases = 0;
    mw.gate.on('release', () => {
      releases += 1;
    });
    const completes: { statusCode: number; aborted: boolean; failure: boolean }[] = [];
    mw.on('complete', (e) => completes.push(e));
    const app = express();
    app.use(mw);
    app.get('/sync-throw', () => {
      throw new Error('boom');
    });
    app.get('/async-throw', async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('later boom');
    });
    app.get('/stream', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk');
      // never ends: the client leaves
    });
    app.get('/not-found', (_req, res) => {
      res.status(404).end();
    });
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: error.message });
    });
    const server = track(await listen(app));
    expect((await get(`${server.url}/sync-throw`)).status).toBe(500);
    expect((await get(`${server.url}/async-throw`)).status).toBe(500);
    expect((await get(`${server.url}/not-found`)).status).toBe(404);
    const streaming = open(`${server.url}/stream`);
    await new Promise<void>((resolve) =>
      streaming.on('response', (res) => res.once('data', () => resolve())),
    );
    expect(mw.inFlight).toBe(1);
    streaming.destroy();
    await waitFor(() => mw.inFlight === 0);
    await new Promise((r) => setTimeout(r, 20));
    expect(releases).toBe(4);
    expect(completes.map((c) => [c.statusCode, c.failure, c.aborted])).toEqual([
      [500, true, false],
      [500, true, false],
      [404, false, false],
      [200, false, true],
    ]);
  });

  it('never runs twice on one request', async () => {
    const mw = track(admission({ limit: 1, maxQueue: 0 }));
    const app = express();
    app.use(mw);
    app.use(mw);
    app.get('/', (_req, res) => {
      res.json({ inFlight: mw.inFlight });
    });
    const r = await request(app).get('/');
    expect(r.status).toBe(200);
    expect(r.body.inFlight).toBe(1);
  });

  it('two different gates on one request both apply and both release', async () => {
    const global = track(admission({ limit: 5 }));
    const perRoute = track(admission({ limit: 1, maxQueue: 0 }));
    const app = express();
    app.use(global);
    app.get('/', perRoute, (_req, res) => {
      res.json({ global: global.inFlight, perRoute: perRoute.inFlight });
    });
    const r = await request(app).get('/');
    expect(r.body).toEqual({ global: 1, perRoute: 1 });
    await waitFor(() => global.inFlight === 0 && perRoute.inFlight === 0);
  });

  it('classifies, keys and caps per client; a throwing classifier goes to the error handler', async () => {
    const mw = track(
      admission({
        limit: 4,
        perKeyLimit: 1,
        interactiveReserve: 0.5,
        classify: (req) => {
          if (req.url === '/bad') throw new Error('cannot classify');
          return req.url?.startsWith('/hold') && req.headers['x-bulk'] ? 'bulk' : 'interactive';
        },
        key: (req) => String(req.headers['x-user'] ?? 'anon'),
      }),
    );
    const { app, holds } = holdingApp(mw);
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: error.message });
    });
    const server = track(await listen(app));
    const a1 = get(`${server.url}/hold`, { 'x-user': 'alice', 'x-bulk': '1' });
    await waitFor(() => holds.length === 1);
    const a2 = get(`${server.url}/hold`, { 'x-user': 'alice', 'x-bulk': '1' });
    const b1 = get(`${server.url}/hold`, { 'x-user': 'bob', 'x-bulk': '1' });
    await waitFor(() => holds.length === 2 && mw.queued === 1);
    // bulk cap is 2 (reserve 0.5 of 4): carol's bulk request waits, her interactive one does not
    const c1 = get(`${server.url}/hold`, { 'x-user': 'carol', 'x-bulk': '1' });
    await waitFor(() => mw.queued === 2);
    expect((await get(`${server.url}/ok`, { 'x-user': 'dave' })).status).toBe(200);
    expect((await get(`${server.url}/bad`)).status).toBe(500);
    for (const h of holds) h.resolve();
    await waitFor(() => holds.length === 4);
    for (const h of holds) h.resolve();
    expect((await Promise.all([a1, a2, b1, c1])).map((r) => r.status)).toEqual([200, 200, 200, 200]);
  });

  it('validates options', () => {
    expect(() => admission({})).toThrow('limit is required when no gate is given, got undefined');
    expect(() => admission({ limit: 1, queueWaitHeader: 'bad header' })).toThrow(/queueWaitHeader/);
    expect(() => admission({ limit: 1, classify: 'bulk' as unknown as () => 'bulk' })).toThrow(/classify/);
    expect(() => admission({ limit: 1, latencySamples: 'some' as 'all' })).toThrow(/latencySamples/);
    expect(() => admission({ gate: {} as Semaphore })).toThrow(/gate/);
  });

  it('uses a gate and a breaker it is given, and leaves them open on close()', async () => {
    const gate = track(new Semaphore({ limit: 3 }));
    const breaker = track(new CircuitBreaker());
    const mw = admission({ gate, breaker });
    expect(mw.gate).toBe(gate);
    expect(mw.breaker).toBe(breaker);
    expect(mw.breakerState).toBe('closed');
    await mw.close();
    expect(gate.closed).toBe(false);
    expect(breaker.allows).toBe(true);
  });
});

describe('admission(): abort storm over real HTTP', () => {
  it('1000 requests aborted while queued or in flight leave inFlight = queued = 0', async () => {
    const mw = track(
      admission({
        limit: 10,
        maxQueue: 2000,
        queueTimeoutMs: 30_000,
        queueWaitHeader: 'X-Queue-Wait-Ms',
        classify: (req) => (req.headers['x-bulk'] ? 'bulk' : 'interactive'),
        key: (req) => String(req.headers['x-user']),
      }),
    );
    let releases = 0;
    let grants = 0;
    mw.gate.on('release', () => {
      releases += 1;
    });
    mw.gate.on('acquire', () => {
      grants += 1;
    });
    const app = express();
    app.use(mw);
    app.get('/slow', (_req, res) => {
      // holds its slot until the client goes away
      res.on('close', () => {});
    });
    app.get('/ok', (_req, res) => {
      res.json({ ok: true });
    });
    const server: Listening = track(await listen(app));
    const clients = Array.from({ length: 1000 }, (_, i) =>
      open(`${server.url}/slow`, { 'x-user': `u${i % 13}`, ...(i % 4 === 0 ? { 'x-bulk': '1' } : {}) }),
    );
    await waitFor(() => mw.inFlight + mw.queued === 1000, { timeoutMs: 20_000 });
    expect(mw.inFlight).toBe(10);
    expect(mw.queued).toBe(990);
    for (const c of clients) c.destroy();
    await waitFor(() => mw.inFlight === 0 && mw.queued === 0, { timeoutMs: 20_000 });
    expect(releases).toBe(grants);
    const next = await get(`${server.url}/ok`, { 'x-user': 'after' });
    expect(next.status).toBe(200);
    expect(next.headers['x-queue-wait-ms']).toBe('0');
    expect(mw.inFlight).toBe(0);
  });
});

describe('admission(): circuit breaker against a real upstream', () => {
  async function proxyApp(mw: AdmissionMiddleware, upstreamUrl: string, delayMs = 0) {
    const app = express();
    app.use(mw);
    app.get('/api', async (_req, res) => {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      try {
        const r = await fetch(`${upstreamUrl}/api`);
        res.status(r.status).send(await r.text());
      } catch {
        res.status(502).json({ error: 'upstream unreachable' });
      }
    });
    return track(await listen(app));
  }

  it('opens on 5xx from a failing upstream, then answers 503 at once without calling it', async () => {
    let upstreamCalls = 0;
    let upstreamStatus = 500;
    const upstream = track(
      await listen((_req, res) => {
        upstreamCalls += 1;
        res.statusCode = upstreamStatus;
        res.end('upstream says hi');
      }),
    );
    const mw = track(
      admission({
        limit: 5,
        breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 },
      }),
    );
    const states: string[] = [];
    mw.breaker?.on('state', (e) => states.push(e.to));
    const gateway = await proxyApp(mw, upstream.url);
    // 4xx never count as failures
    upstreamStatus = 404;
    for (let i = 0; i < 3; i += 1) expect((await get(`${gateway.url}/api`)).status).toBe(404);
    expect(mw.breakerState).toBe('closed');
    upstreamStatus = 500;
    for (let i = 0; i < 3; i += 1) expect((await get(`${gateway.url}/api`)).status).toBe(500);
    expect(mw.breakerState).toBe('closed'); // 3 of 6 = 50%: not above the threshold
    expect((await get(`${gateway.url}/api`)).status).toBe(500);
    await waitFor(() => mw.breakerState === 'open');
    const callsWhenOpen = upstreamCalls;
    const refused = await get(`${gateway.url}/api`);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(50);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(upstreamCalls).toBe(callsWhenOpen);
    expect(states).toEqual(['open']);
    expect(mw.inFlight).toBe(0);
  });

  it('lets bulk requests wait out an open circuit (bounded) while interactive ones are refused', async () => {
    let upstreamStatus = 500;
    const upstream = track(
      await listen((_req, res) => {
        res.statusCode = upstreamStatus;
        res.end('upstream');
      }),
    );
    const mw = track(
      admission({
        limit: 5,
        classify: (req) => (req.headers['x-bulk'] ? 'bulk' : 'interactive'),
        breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeoutMs: 300 },
        openCircuitWaitMs: { bulk: 10_000 },
      }),
    );
    const gateway = await proxyApp(mw, upstream.url);
    for (let i = 0; i < 2; i += 1) expect((await get(`${gateway.url}/api`)).status).toBe(500);
    await waitFor(() => mw.breakerState === 'open');
    expect((await get(`${gateway.url}/api`)).status).toBe(503);
    // A bulk request arrives while open: it waits; the upstream recovers, a trial closes the circuit.
    const bulk = get(`${gateway.url}/api`, { 'x-bulk': '1' });
    upstreamStatus = 200;
    await waitFor(() => mw.breakerState === 'half-open', { timeoutMs: 5_000 });
    expect((await get(`${gateway.url}/api`)).status).toBe(200);
    expect(mw.breakerState).toBe('closed');
    expect((await bulk).status).toBe(200);
  });

  it('counts connection errors (502) and leaves shed requests out', async () => {
    const dead = await listen(() => {});
    const deadUrl = dead.url;
    await dead.close(); // nothing listens there any more: connection refused
    const mw = track(
      admission({
        limit: 1,
        maxQueue: 0,
        breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 },
      }),
    );
    const gateway = await proxyApp(mw, deadUrl, 100);
    const replies = await Promise.all(Array.from({ length: 10 }, () => get(`${gateway.url}/api`)));
    const statuses = replies.map((r) => r.status);
    const shed = statuses.filter((s) => s === 503).length;
    expect(statuses.filter((s) => s === 502).length + shed).toBe(10);
    expect(shed).toBeGreaterThan(0);
    // only admitted requests reached the breaker
    expect(mw.breaker?.stats()).toMatchObject({ successes: 0, failures: 10 - shed });
    // connection errors keep counting until the circuit opens
    for (let i = 0; i < 5 && mw.breakerState !== 'open'; i += 1) {
      expect((await get(`${gateway.url}/api`)).status).toBe(502);
    }
    expect(mw.breakerState).toBe('open');
    const refused = await get(`${gateway.url}/api`);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'E_CIRCUIT_OPEN' });
  });
});

describe('admission(): breaker verdicts at the response head', () => {
  /** A breaker opened by one 500 and half-open again after 50 ms. */
  async function halfOpenBreaker(options: Partial<CircuitBreakerOptions> = {}): Promise<CircuitBreaker> {
    const breaker = track(new CircuitBreaker({ volumeThreshold: 1, resetTimeoutMs: 50, ...options }));
    breaker.begin().failure();
    await waitFor(() => breaker.state === 'half-open');
    return breaker;
  }

  /** An app whose `/download` writes its head at once and its body when the test says so. */
  function downloadApp(mw: AdmissionMiddleware) {
    const bodies: Deferred[] = [];
    const app = express();
    app.use(mw);
    app.get('/download', async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write('first chunk of a long download');
      const d = deferred();
      bodies.push(d);
      await d.promise;
      res.end('last chunk');
    });
    app.get('/hang', () => {}); // never answers
    app.get('/ok', (_req, res) => {
      res.json({ ok: true });
    });
    return { app, bodies };
  }

  it('a long half-open trial closes the circuit at its head; other requests pass during its body', async () => {
    const breaker = await halfOpenBreaker();
    const mw = track(admission({ limit: 10, breaker }));
    const { app, bodies } = downloadApp(mw);
    const server = track(await listen(app));
    const download = get(`${server.url}/download`);
    await waitFor(() => bodies.length === 1);
    expect(breaker.state).toBe('closed'); // decided at the head, while the body still streams
    const others = await Promise.all(Array.from({ length: 5 }, () => get(`${server.url}/ok`)));
    expect(others.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(mw.inFlight).toBe(1); // the download still holds its slot
    bodies[0]?.resolve();
    expect((await download).body).toBe('first chunk of a long downloadlast chunk');
    await waitFor(() => mw.inFlight === 0);
  });

  it('a half-open trial whose client leaves before the head leaves the circuit open', async () => {
    const breaker = await halfOpenBreaker();
    const states: string[] = [];
    breaker.on('state', (e) => states.push(e.to));
    const mw = track(admission({ limit: 10, breaker }));
    const { app } = downloadApp(mw);
    const server = track(await listen(app));
    const trial = open(`${server.url}/hang`);
    await waitFor(() => mw.inFlight === 1);
    const refused = await get(`${server.url}/ok`); // the trial runs: one at a time
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    trial.destroy();
    await waitFor(() => mw.inFlight === 0 && states.length > 0);
    // back to open (then half-open again after resetTimeoutMs), never closed by the void trial
    expect(states[0]).toBe('open');
    expect(states).not.toContain('closed');
  });

  it('a request with no head within timeoutMs counts as a failure: a hang opens the circuit', async () => {
    const breaker = track(new CircuitBreaker({ volumeThreshold: 1, timeoutMs: 100, resetTimeoutMs: 60_000 }));
    const failures: boolean[] = [];
    breaker.on('failure', (e) => failures.push(e.timedOut));
    const mw = track(admission({ limit: 10, breaker }));
    const { app } = downloadApp(mw);
    const server = track(await listen(app));
    const hung = open(`${server.url}/hang`);
    await waitFor(() => breaker.state === 'open');
    expect(failures).toEqual([true]);
    expect(mw.inFlight).toBe(1); // the slot is the gate's business: held until the client leaves
    hung.destroy();
    await waitFor(() => mw.inFlight === 0);
    const refused = await get(`${server.url}/ok`);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(50);
  });

  it('reportHead() and release(): a caller that relays the answer reports the head and frees the slot early', async () => {
    const breaker = track(new CircuitBreaker({ volumeThreshold: 1 }));
    const mw = track(admission({ limit: 1, maxQueue: 0, breaker }));
    const completes: { statusCode: number; failure: boolean; aborted: boolean }[] = [];
    mw.on('complete', (e) => completes.push(e));
    const rest = deferred();
    const server = track(
      await listen((req, res) => {
        mw(req, res, async () => {
          mw.reportHead(res, 502); // the upstream's head, before this relays it
          expect(breaker.state).toBe('open');
          res.writeHead(200); // too late to change the verdict
          res.write('buffered answer');
          mw.release(res); // the upstream is done: the client's transfer holds no slot
          mw.release(res);
          await rest.promise;
          res.end();
        });
      }),
    );
    const first = get(`${server.url}/`);
    await waitFor(() => completes.length === 1);
    expect(mw.inFlight).toBe(0);
    expect(completes).toEqual([expect.objectContaining({ statusCode: 502, failure: true, aborted: false })]);
    rest.resolve();
    expect((await first).status).toBe(200);
    expect(completes.length).toBe(1);
    mw.reportHead(new ServerResponse(new IncomingMessage(new Socket())), 500); // not admitted here: ignored
  });
});
