import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compareReports,
  credentialFromLogin,
  formatReport,
  resolveOptions,
  retryAfterMs,
  runBulkExport,
  summarize,
} from '../../examples/bulk-export/src/index.ts';
import { type FakeCvat, freePort, startFakeCvat } from '../support/src/index.ts';

describe('bulk-export against a CVAT-shaped server', () => {
  let cvat: FakeCvat;
  beforeAll(async () => {
    cvat = await startFakeCvat({ pollsBeforeFinished: 2, exportBytes: 1000 });
  });
  afterAll(async () => {
    await cvat.close();
  });

  it('runs export, poll and download for every task at the chosen concurrency', async () => {
    const before = cvat.stats.peakInFlight;
    const report = await runBulkExport({
      baseUrl: cvat.url,
      credential: { kind: 'token', token: cvat.token },
      tasks: 12,
      concurrency: 4,
      pollIntervalMs: 5,
    });
    expect(report.succeeded).toBe(12);
    expect(report.failed).toBe(0);
    // one export, three polls (started, started, finished), one download per task
    expect(report.requests).toBe(12 * 5);
    expect(report.statusCounts).toEqual({ 200: 12 * 4, 202: 12 });
    expect(report.bytesDownloaded).toBe(12 * 1000);
    expect(report.resultUrlOrigins).toEqual({ [cvat.url]: 12 });
    expect(report.latencyMs.task.count).toBe(12);
    expect(report.latencyMs.request.count).toBe(60);
    expect(cvat.stats.routes['POST /api/tasks/:id/dataset/export']).toBeGreaterThanOrEqual(12);
    expect(Math.max(before, cvat.stats.peakInFlight)).toBeLessThanOrEqual(4);
    expect(formatReport(report)).toContain('| succeeded / failed');
    expect(compareReports([{ label: 'direct', report }])).toContain('| direct');
  });

  it('logs in with a username and password, then uses the key it gets', async () => {
    const report = await runBulkExport({
      baseUrl: cvat.url,
      credential: { kind: 'login', username: cvat.username, password: cvat.password },
      taskIds: [7, 8],
      pollIntervalMs: 1,
    });
    expect(report.succeeded).toBe(2);
    expect(report.requests).toBe(1 + 2 * 5);
  });

  it('splits the workers over several logins, each made once, and uses the session as cvat_sdk 2.41+', async () => {
    const login = {
      kind: 'login',
      username: cvat.username,
      password: cvat.password,
      use: 'session',
    } as const;
    const report = await runBulkExport({
      baseUrl: cvat.url,
      credential: [login, login, login],
      tasks: 6,
      concurrency: 6,
      pollIntervalMs: 1,
    });
    expect(report.succeeded).toBe(6);
    expect(report.requests).toBe(3 + 6 * 5);
  });

  it('runs every task on the logins that worked when another was refused', async () => {
    const report = await runBulkExport({
      baseUrl: cvat.url,
      credential: [
        { kind: 'login', username: cvat.username, password: 'wrong' },
        { kind: 'token', token: cvat.token },
      ],
      tasks: 4,
      concurrency: 4,
      pollIntervalMs: 1,
    });
    expect(report.succeeded).toBe(4);
    expect(report.statusCounts).toMatchObject({ 400: 1 });
    expect(report.sampleErrors.some((e) => e.startsWith('login: login answered 400'))).toBe(true);
  });

  it('fails every task at the login stage when the login is refused', async () => {
    const report = await runBulkExport({
      baseUrl: cvat.url,
      credential: { kind: 'login', username: cvat.username, password: 'wrong' },
      tasks: 3,
    });
    expect(report.failed).toBe(3);
    expect(report.failuresByStage).toEqual({ 'login http 400': 3 });
  });

  it('counts 401s as http failures at the export stage', async () => {
    const report = await runBulkExport({
      baseUrl: cvat.url,
      credential: { kind: 'token', token: 'f'.repeat(40) },
      tasks: 2,
    });
    expect(report.failuresByStage).toEqual({ 'export http 401': 2 });
    expect(report.statusCounts).toEqual({ 401: 2 });
  });

  it('gives up polling after maxPolls', async () => {
    const slow = await startFakeCvat({ pollsBeforeFinished: 50 });
    try {
      const report = await runBulkExport({
        baseUrl: slow.url,
        credential: { kind: 'token', token: slow.token },
        tasks: 2,
        pollIntervalMs: 1,
        maxPolls: 3,
      });
      expect(report.failuresByKind).toEqual({ 'poll-exhausted': 2 });
      expect(report.requests).toBe(2 * 4);
    } finally {
      await slow.close();
    }
  });

  it('stops at the deadline, counting unstarted and interrupted tasks', async () => {
    const slow = await startFakeCvat({ pollsBeforeFinished: 1000 });
    try {
      const started = Date.now();
      const report = await runBulkExport({
        baseUrl: slow.url,
        credential: { kind: 'token', token: slow.token },
        tasks: 50,
        concurrency: 5,
        pollIntervalMs: 20,
        maxPolls: 1000,
        deadlineMs: 300,
      });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(report.tasks).toBe(50);
      expect(report.succeeded).toBe(0);
      expect(report.failuresByKind).toEqual({ deadline: 50 });
    } finally {
      await slow.close();
    }
  });

  it('reports what an overloaded server answers, by stage and status', async () => {
    const busy = await startFakeCvat({ workMs: 30, maxInFlight: 3 });
    try {
      const report = await runBulkExport({
        baseUrl: busy.url,
        credential: { kind: 'token', token: busy.token },
        tasks: 40,
        concurrency: 20,
        pollIntervalMs: 1,
      });
      expect(report.failed).toBeGreaterThan(0);
      expect(report.statusCounts['500']).toBeGreaterThan(0);
      expect(report.failuresByKind.http).toBe(report.failed);
      expect(Object.keys(report.failuresByStage).every((k) => / http 500$/.test(k))).toBe(true);
      expect(report.sampleErrors.join(' ')).toContain('too many clients');
    } finally {
      await busy.close();
    }
  });
});

describe('bulk-export without a server', () => {
  it('counts refused connections by code', async () => {
    const port = await freePort();
    const report = await runBulkExport({
      baseUrl: `http://127.0.0.1:${port}`,
      credential: { kind: 'token', token: 'a'.repeat(40) },
      tasks: 3,
      concurrency: 3,
    });
    expect(report.failed).toBe(3);
    expect(report.connectionErrors).toEqual({ ECONNREFUSED: 3 });
    expect(report.failuresByStage).toEqual({ 'export connection ECONNREFUSED': 3 });
  });

  it('times a request out after requestTimeoutMs', async () => {
    const server = createServer(() => {
      // never answers
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const report = await runBulkExport({
        baseUrl: `http://127.0.0.1:${port}`,
        credential: { kind: 'token', token: 'a'.repeat(40) },
        tasks: 2,
        requestTimeoutMs: 200,
      });
      expect(report.timeouts).toBe(2);
      expect(report.failuresByKind).toEqual({ timeout: 2 });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('retries a 503 after Retry-After when asked to', async () => {
    let calls = 0;
    const server = createServer((req, res) => {
      calls += 1;
      if (calls === 1) {
        res.writeHead(503, { 'retry-after': '0', 'content-type': 'application/json' });
        res.end('{"detail":"queue full"}');
        return;
      }
      if (req.url?.startsWith('/api/tasks/1/dataset/export')) {
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end('{"rq_id":"r1"}');
        return;
      }
      if (req.url?.startsWith('/api/requests/')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"status":"finished","result_url":"/download"}`);
        return;
      }
      res.writeHead(200);
      res.end('zip');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const report = await runBulkExport({
        baseUrl: `http://127.0.0.1:${port}`,
        credential: { kind: 'token', token: 'a'.repeat(40) },
        taskIds: [1],
        pollIntervalMs: 1,
        retries: 2,
      });
      expect(report.succeeded).toBe(1);
      expect(report.statusCounts).toEqual({ 200: 2, 202: 1, 503: 1 });
      expect(report.bytesDownloaded).toBe(3);
    } finally {
      server.close();
    }
  });
});

describe('bulk-export helpers', () => {
  it('refuses unbounded or malformed options, naming them', () => {
    const credential = { kind: 'token' as const, token: 'x' };
    expect(() => resolveOptions({ baseUrl: 'nope', credential })).toThrow(/baseUrl/);
    expect(() => resolveOptions({ baseUrl: 'ftp://h', credential })).toThrow(/baseUrl/);
    expect(() => resolveOptions({ baseUrl: 'http://h', credential, concurrency: 0 })).toThrow(RangeError);
    expect(() => resolveOptions({ baseUrl: 'http://h', credential, maxPolls: 1.5 })).toThrow(/maxPolls/);
    expect(() => resolveOptions({ baseUrl: 'http://h', credential, taskIds: [] })).toThrow(/taskIds/);
    expect(() => resolveOptions({ baseUrl: 'http://h', credential, taskIds: [1], tasks: 1 })).toThrow(
      TypeError,
    );
    expect(() => resolveOptions({ baseUrl: 'http://h', credential: [] })).toThrow(/credential/);
    expect(() => resolveOptions({ baseUrl: 'http://h', credential: { kind: 'token', token: '' } })).toThrow(
      /credential\.token/,
    );
    expect(resolveOptions({ baseUrl: 'http://h', credential, tasks: 3, firstTaskId: 5 }).taskIds).toEqual([
      5, 6, 7,
    ]);
  });

  it('reads a login answer as cvat_sdk does: the key first, else the session cookie', () => {
    const headers = { 'set-cookie': ['csrftoken=c1; Path=/', 'sessionid=s1; HttpOnly'] };
    expect(credentialFromLogin({ status: 200, headers, text: '{"key":"k1"}', bytes: 0 })).toEqual({
      kind: 'token',
      token: 'k1',
    });
    expect(credentialFromLogin({ status: 200, headers, text: '{}', bytes: 0 })).toEqual({
      kind: 'session',
      sessionId: 's1',
      csrfToken: 'c1',
    });
    expect(() => credentialFromLogin({ status: 200, headers: {}, text: '{}', bytes: 0 })).toThrow(
      /sessionid/,
    );
    const fresh = { 'set-cookie': [...headers['set-cookie'], 'sessionfresh=1; Max-Age=86400'] };
    expect(
      credentialFromLogin({ status: 200, headers: fresh, text: '{"key":"k1"}', bytes: 0 }, 'session'),
    ).toEqual({
      kind: 'session',
      sessionId: 's1',
      csrfToken: 'c1',
      sessionFresh: true,
    });
  });

  it('parses Retry-After in seconds and as a date', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });

  it('summarizes latency with nearest-rank percentiles', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(summarize(values)).toMatchObject({ count: 100, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
    expect(summarize([])).toMatchObject({ count: 0, p50: 0 });
  });
});
