import { spawn, spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import {
  type DjangoFixture,
  deleteKeys,
  sharedRedisUrl,
  startDjango,
  uniquePrefix,
  waitFor,
} from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessLogEntry, createGateway, type Gateway } from '../src/index.ts';
import { adminUrl, memoryLogger, openChromium, recordRequests } from './helpers.ts';

// The gateway with the upstream's database and a shared Redis: database validation, the budget
// sized from max_connections, the connection monitor, the reaper and the session purge, and two
// gateways sharing the cache's L2 and the semaphore.
const APP = 'cvat-fixture';
let django: DjangoFixture;
let prefix: string;
let a: Gateway;
let b: Gateway;
let aUrl: string;
let bUrl: string;
let aEntries: AccessLogEntry[];
let bEntries: AccessLogEntry[];

beforeAll(async () => {
  django = await startDjango({ label: 'gw_db', applicationName: APP });
  prefix = uniquePrefix('gateway');
  const common = {
    upstream: django.url,
    listen: '127.0.0.1:0',
    databaseUrl: django.database.url,
    redisUrl: sharedRedisUrl,
    redisPrefix: prefix,
    secretKey: django.secretKey,
    upstreamApplicationName: APP,
    monitorIntervalMs: 300,
    dbReserve: 2,
  } as const;
  a = createGateway({
    ...common,
    reaper: true,
    reaperIdleMs: 1_000,
    reaperIntervalMs: 1_000,
    sessionPurge: true,
    sessionPurgeIntervalMs: 1_000,
    logger: memoryLogger().logger,
  });
  b = createGateway({ ...common, logger: memoryLogger().logger });
  aEntries = recordRequests(a);
  bEntries = recordRequests(b);
  aUrl = (await a.listen()).url;
  bUrl = (await b.listen()).url;
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.close(1_000), b?.close(1_000)]);
  if (prefix) await deleteKeys(sharedRedisUrl, prefix);
  await django?.stop();
});

function psql(args: string[]): ReturnType<typeof spawnSync> {
  return spawnSync('psql', [django.database.url, '-v', 'ON_ERROR_STOP=1', '-q', ...args], {
    encoding: 'utf8',
  });
}

describe('sluice-gateway with a database and Redis', () => {
  it("validates against Django's tables and shares the cache between gateways through Redis", async () => {
    const session = await django.login('user');
    const viaA = await fetch(`${aUrl}/api/users/self`, { headers: { cookie: session.cookie } });
    expect(viaA.status).toBe(200);
    await viaA.arrayBuffer();
    const viaB1 = await fetch(`${bUrl}/api/users/self`, { headers: { cookie: session.cookie } });
    expect(viaB1.status).toBe(200);
    await viaB1.arrayBuffer();
    const viaB2 = await fetch(`${bUrl}/api/users/self`, { headers: { cookie: session.cookie } });
    await viaB2.arrayBuffer();
    await waitFor(() => bEntries.filter((e) => e.route === '/api/users/self').length === 2);
    expect(aEntries.find((e) => e.route === '/api/users/self')?.cacheTier).toBe('validator');
    expect(bEntries.filter((e) => e.route === '/api/users/self').map((e) => e.cacheTier)).toEqual([
      'l2',
      'l1',
    ]);
    expect(a.status().cache.validator).toBe('database');
    expect(a.status().admission.semaphore).toBe('redis');
  });

  it('sizes the budget from max_connections and reports database and Redis readiness', async () => {
    const status = a.status();
    expect(status.admission.limitSource).toBe('database');
    expect(status.admission.limit).toBeGreaterThanOrEqual(1);
    expect(status.database?.maxConnections).toBeGreaterThan(0);
    expect(status.database?.connections).toBeGreaterThan(0);
    const ready = await fetch(`${adminUrl(a)}/readyz`);
    expect(ready.status).toBe(200);
    const report = (await ready.json()) as { status: string; checks: Record<string, { ok: boolean }> };
    expect(report.status).toBe('ready');
    expect(Object.keys(report.checks).sort()).toEqual(['database', 'redis', 'upstream']);
    const metrics = await (await fetch(`${adminUrl(a)}/metrics`)).text();
    expect(metrics).toMatch(/sluice_db_connections [1-9]\d*/);
    expect(metrics).toMatch(/sluice_db_max_connections [1-9]\d*/);
    expect(metrics).toMatch(/sluice_pool_connections\{state="max"\} 4/);
  });

  it("reaps the upstream's idle connections and purges expired sessions", async () => {
    // A connection the upstream left idle: psql waiting on its stdin, under Django's application name.
    const url = new URL(django.database.url);
    url.searchParams.set('application_name', APP);
    const leaked = spawn('psql', [url.toString()], { stdio: ['pipe', 'ignore', 'ignore'] });
    // Its last query the session lookup, as the connections CVAT leaks (the reaper's default filter).
    leaked.stdin?.write("SELECT session_data FROM django_session WHERE session_key = 'leakedsessionkey';\n");
    const idleBackends = (): number =>
      Number(
        String(
          psql([
            '-At',
            '-c',
            `SELECT count(*) FROM pg_stat_activity WHERE application_name = '${APP}' AND state = 'idle' AND datname = current_database()`,
          ]).stdout,
        ).trim(),
      );
    try {
      await waitFor(() => idleBackends() === 1, { timeoutMs: 10_000, what: 'the idle connection' });
      await waitFor(() => (a.status().database?.reaped ?? 0) >= 1, { timeoutMs: 15_000, what: 'the reaper' });
      // A terminated backend leaves pg_stat_activity as it exits, a moment after the signal.
      await waitFor(() => idleBackends() === 0, { timeoutMs: 10_000, what: 'the reaped backend to exit' });
    } finally {
      leaked.kill('SIGKILL');
    }
    const inserted = psql([
      '-c',
      "INSERT INTO django_session (session_key, session_data, expire_date) VALUES ('expiredsluicegatewaytestkey0000', 'e30', now() - interval '1 day')",
    ]);
    expect(inserted.status).toBe(0);
    await waitFor(() => (a.status().database?.purged ?? 0) >= 1, { timeoutMs: 15_000, what: 'the purge' });
    const left = psql(['-At', '-c', 'SELECT count(*) FROM django_session WHERE expire_date < now()']);
    expect(String(left.stdout).trim()).toBe('0');
  }, 45_000);

  it('shows live figures on the status page in headless Chromium', async () => {
    const browser = await openChromium();
    try {
      const { page } = browser;
      await page.goto(`${adminUrl(a)}/sluice/status`);
      await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
      expect(await page.textContent('#state')).toBe('running');
      // The limit follows the database's free connections, which parallel suites move: the page
      // refreshes by itself, so wait until it shows the gateway's current figure.
      await expect
        .poll(
          async () =>
            (await page.textContent('#limit')) === a.status().admission.limit.toLocaleString('en-US'),
          {
            timeout: 10_000,
            interval: 200,
          },
        )
        .toBe(true);
      expect(await page.textContent('#validator')).toBe('database');
      expect(await page.textContent('#breaker')).toBe('closed');
      expect(Number((await page.textContent('#db-connections'))?.replace(/,/g, ''))).toBeGreaterThan(0);
      expect(await page.textContent('#hit-ratio')).toMatch(/^\d+\.\d%$/);
      // It refreshes by itself: new requests show up without a reload.
      const before = await page.textContent('#requests');
      for (let i = 0; i < 3; i++) await (await fetch(`${aUrl}/api/server/about`)).arrayBuffer();
      // (The page's Content-Security-Policy forbids eval, so poll from here.)
      await expect
        .poll(() => page.textContent('#requests'), { timeout: 10_000, interval: 200 })
        .not.toBe(before);
      const file = await browser.screenshot('gateway-status-page');
      expect((await stat(file)).size).toBeGreaterThan(10_000);
      expect(browser.errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
