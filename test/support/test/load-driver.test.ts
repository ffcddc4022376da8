import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { classifyResponse, mergeReports, runLoad, startLoad, wellFormed503 } from '../src/index.ts';

let server: Server;
let base: string;
let hits = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    hits += 1;
    const path = req.url ?? '/';
    if (path.startsWith('/ok')) res.end('fine');
    else if (path.startsWith('/auth')) res.writeHead(401).end();
    else if (path.startsWith('/shed')) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' });
      res.end(JSON.stringify({ code: 'E_QUEUE_FULL' }));
    } else if (path.startsWith('/bare503')) res.writeHead(503).end('busy');
    else if (path.startsWith('/boom')) res.writeHead(500).end();
    else if (path.startsWith('/reset')) req.socket.destroy();
    else if (path.startsWith('/half')) {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part');
      setTimeout(() => req.socket.destroy(), 5);
    } else if (path.startsWith('/hang')) {
      // never answers
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const paths = ['/ok', '/auth', '/shed', '/bare503', '/boom', '/reset', '/half', '/hang'];

test('every request lands in exactly one bucket', async () => {
  const report = await runLoad({
    target: base,
    concurrency: 8,
    maxRequests: 80,
    durationMs: 20_000,
    timeoutMs: 2_000,
    request: (i) => ({ path: paths[i % paths.length] ?? '/ok' }),
  });
  expect(report.sent).toBe(80);
  expect(report.lost).toBe(0);
  expect(report.inFlight).toBe(0);
  expect(report.ok).toBe(10);
  expect(report.unauthorized).toBe(10);
  expect(report.shed).toBe(10);
  expect(report.byShedCode).toEqual({ E_QUEUE_FULL: 10 });
  expect(report.other).toBe(20);
  expect(report.byOther).toEqual({ '500': 10, '503 no Retry-After': 10 });
  expect(report.errors).toBe(30);
  expect(report.byError.CLIENT_TIMEOUT).toBe(10);
  expect((report.byError.ECONNRESET ?? 0) + (report.byError.RESPONSE_ABORTED ?? 0)).toBe(20);
  expect(report.ok + report.unauthorized + report.shed + report.other + report.errors).toBe(report.sent);
});

test('a run is bounded by time and stop() ends it early with everything accounted', async () => {
  const before = hits;
  const run = startLoad({
    target: `${base}`,
    concurrency: 4,
    maxRequests: 1_000_000,
    durationMs: 60_000,
    request: () => ({ path: '/ok' }),
  });
  await new Promise((r) => setTimeout(r, 200));
  const mid = run.snapshot();
  expect(mid.sent).toBeGreaterThan(0);
  const report = await run.stop();
  expect(report.lost).toBe(0);
  expect(report.ok).toBe(report.sent);
  expect(hits - before).toBe(report.sent);
  const timed = await runLoad({
    target: base,
    concurrency: 2,
    maxRequests: 1_000_000,
    durationMs: 150,
    request: () => ({ path: '/ok' }),
  });
  expect(timed.durationMs).toBeLessThan(5_000);
  expect(timed.lost).toBe(0);
});

test('pacing holds the rate, and window() accounts for a slice of the run', async () => {
  const run = startLoad({
    target: base,
    concurrency: 4,
    maxRequests: 20,
    durationMs: 10_000,
    ratePerSecond: 50,
    request: () => ({ path: '/ok' }),
  });
  const start = Date.now();
  const report = await run.done;
  expect(report.sent).toBe(20);
  expect(Date.now() - start).toBeGreaterThanOrEqual(300);
  const records = run.records();
  const mid = records[10]!.startedAt;
  const slice = run.window(0, mid);
  expect(slice.sent).toBeGreaterThan(0);
  expect(slice.sent).toBeLessThan(20);
  expect(slice.lost).toBe(0);
});

test('only loopback targets and bounded runs are accepted', () => {
  expect(() =>
    startLoad({ target: 'http://example.com', concurrency: 1, maxRequests: 1, durationMs: 1 }),
  ).toThrow(RangeError);
  expect(() => startLoad({ target: base, concurrency: 0, maxRequests: 1, durationMs: 1 })).toThrow(
    /concurrency/,
  );
  expect(() =>
    startLoad({ target: base, concurrency: 1, maxRequests: Number.POSITIVE_INFINITY, durationMs: 1 }),
  ).toThrow(/maxRequests/);
  expect(() =>
    startLoad({ target: 'ftp://127.0.0.1', concurrency: 1, maxRequests: 1, durationMs: 1 }),
  ).toThrow(TypeError);
});

test('a 503 is well formed only with Retry-After and a JSON code', () => {
  const json = { 'content-type': 'application/json; charset=utf-8' };
  expect(wellFormed503({ ...json, 'retry-after': '1' }, '{"code":"E_X"}')).toEqual({ ok: true, code: 'E_X' });
  expect(wellFormed503({ ...json }, '{"code":"E_X"}').ok).toBe(false);
  expect(wellFormed503({ ...json, 'retry-after': 'soon' }, '{"code":"E_X"}').ok).toBe(false);
  expect(wellFormed503({ 'retry-after': '1' }, '{"code":"E_X"}').ok).toBe(false);
  expect(wellFormed503({ ...json, 'retry-after': '1' }, '{"error":"x"}').ok).toBe(false);
  expect(classifyResponse(204, {}, '').kind).toBe('ok');
  expect(classifyResponse(429, {}, '').kind).toBe('other');
});

test('mergeReports adds up side-by-side runs and keeps the worst p99', async () => {
  const run = (path: string) =>
    runLoad({ target: base, concurrency: 2, maxRequests: 6, durationMs: 10_000, request: () => ({ path }) });
  const [a, b] = await Promise.all([run('/ok'), run('/shed')]);
  const merged = mergeReports(a, b);
  expect(merged.sent).toBe(12);
  expect(merged.ok).toBe(6);
  expect(merged.shed).toBe(6);
  expect(merged.byStatus).toEqual({ '200': 6, '503': 6 });
  expect(merged.byShedCode).toEqual({ E_QUEUE_FULL: 6 });
  expect(merged.lost).toBe(0);
  expect(merged.latencyMs.p99).toBe(Math.max(a.latencyMs.p99, b.latencyMs.p99));
});
