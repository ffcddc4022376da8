import { stat } from 'node:fs/promises';
import {
  DEFAULT_DJANGO_USERS,
  type DjangoFixture,
  type LoadRun,
  startDjango,
  startLoad,
  waitFor,
} from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway, type StatusSnapshot } from '../src/index.ts';
import { adminUrl, memoryLogger, openChromium } from './helpers.ts';

// The status page during an incident: one user runs a bulk export (more than the budget and the
// queue hold) while another works interactively and a client keeps sending a bad token. The page,
// status.json and the metrics must name the bulk user as the heaviest and say why requests are shed.
const APP = 'cvat-fixture';
let django: DjangoFixture;
let gateway: Gateway;
let url: string;
let admin: string;

beforeAll(async () => {
  django = await startDjango({
    label: 'gw_status',
    applicationName: APP,
    workMs: 250,
    threads: 8,
    users: [...DEFAULT_DJANGO_USERS, { username: 'exporter', password: 'exporter-password-1' }],
  });
  gateway = createGateway({
    upstream: django.url,
    listen: '127.0.0.1:0',
    databaseUrl: django.database.url,
    secretKey: django.secretKey,
    upstreamApplicationName: APP,
    monitorIntervalMs: 500,
    dbReserve: 2,
    dbBudget: 4,
    queueMax: 6,
    logger: memoryLogger().logger,
  });
  url = (await gateway.listen()).url;
  admin = adminUrl(gateway);
}, 60_000);

afterAll(async () => {
  await gateway?.close(1_000);
  await django?.stop();
});

const status = async (): Promise<StatusSnapshot> =>
  (await (await fetch(`${admin}/sluice/status.json`)).json()) as StatusSnapshot;

describe('the status page during a bulk load', () => {
  let bulk: LoadRun | undefined;
  let interactive: LoadRun | undefined;
  afterAll(async () => {
    await Promise.all([bulk?.stop(), interactive?.stop()]);
  });

  it('names the heaviest user and client, shows sheds by reason, and draws the last minutes', async () => {
    const exporter = await django.login('exporter');
    const user = await django.login('user');
    // The export script: more exports at once than the budget (4) and the queue (6) hold.
    bulk = startLoad({
      target: url,
      concurrency: 14,
      ratePerSecond: 30,
      maxRequests: 100_000,
      durationMs: 90_000,
      request: (i) => ({
        method: 'POST',
        path: `/api/tasks/${(i % 50) + 1}/dataset/export?format=COCO`,
        headers: exporter.headers,
      }),
    });
    // A person in the UI, and a client whose token was revoked.
    interactive = startLoad({
      target: url,
      concurrency: 2,
      ratePerSecond: 3,
      maxRequests: 100_000,
      durationMs: 90_000,
      request: (i) =>
        i % 3 === 2
          ? { path: '/api/users/self', headers: { authorization: `Token ${'0'.repeat(40)}` } }
          : { path: '/api/users/self', headers: { cookie: user.cookie } },
    });

    await waitFor(
      async () => {
        const s = await status();
        // The page's shed figures come from finished 2-s buckets, so wait on those, not the counters.
        const { queue_full = 0, unauthenticated = 0 } = s.recent.shedByReason;
        return s.users.top[0]?.name === 'exporter' && queue_full > 0 && unauthenticated > 0;
      },
      { timeoutMs: 30_000, what: 'exporter as the heaviest user, requests shed and a bad token refused' },
    );
    const s = await status();
    const top = s.users.top[0];
    expect(top?.name).toBe('exporter');
    expect((top?.inFlight ?? 0) + (top?.queued ?? 0)).toBeGreaterThan(0);
    expect(top?.shedByReason.queue_full).toBeGreaterThan(0);
    expect(s.users.top.find((u) => u.name === 'user')?.shedPerMinute ?? 0).toBe(0);
    expect(s.clients.top[0]?.id).toBe('127.0.0.1');
    expect(JSON.stringify(s)).not.toContain(exporter.sessionId);
    expect(s.users.tracked).toBeLessThanOrEqual(s.users.capacity);

    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`sluice_top_user_requests_per_second\\{user="${top?.id}"\\} [0-9.]+`));
    expect(metrics).toMatch(/sluice_shed_total\{reason="queue_full"\} [1-9]/);
    expect(metrics).toMatch(/sluice_shed_total\{reason="unauthenticated"\} [1-9]/);
    expect(metrics).not.toContain('127.0.0.1');

    const browser = await openChromium();
    try {
      const { page } = browser;
      await page.goto(`${admin}/sluice/status`);
      await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
      // (The page's Content-Security-Policy forbids eval, so poll from here.)
      await expect
        .poll(() => page.textContent('#heaviest-user-who'), { timeout: 10_000, interval: 250 })
        .toContain('exporter');
      expect(await page.textContent('#users tr:first-child td:first-child')).toContain('exporter');
      expect(await page.textContent('#heaviest-client-who')).toBe('127.0.0.1');
      await expect
        .poll(() => page.textContent('#sps-reasons'), { timeout: 10_000, interval: 250 })
        .toContain('queue full');
      expect(await page.textContent('#chart-requests-legend')).toContain('shed: queue full');
      expect(await page.textContent('#chart-slots-legend')).toContain('breaker');
      expect(await page.isVisible('#db-embedded')).toBe(false);
      // Let the charts gather about half a minute of 2-s buckets before the screenshot.
      await waitFor(async () => (await status()).history.requestsPerSecond.length >= 14, {
        timeoutMs: 40_000,
        what: 'half a minute of history',
      });
      await page.waitForTimeout(2_500);
      await expect
        .poll(() => page.textContent('#heaviest-user-who'), { timeout: 10_000, interval: 250 })
        .toContain('exporter');
      const file = await browser.screenshot('gateway-status-incident');
      expect((await stat(file)).size).toBeGreaterThan(30_000);
      expect(browser.errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 120_000);

  it('says what it cannot see in embedded mode', async () => {
    await Promise.all([bulk?.stop(), interactive?.stop()]);
    const embedded = createGateway({
      upstream: django.url,
      listen: '127.0.0.1:0',
      logger: memoryLogger().logger,
    });
    const embeddedUrl = (await embedded.listen()).url;
    const browser = await openChromium();
    try {
      const session = await django.login('user');
      for (let i = 0; i < 3; i++)
        await (
          await fetch(`${embeddedUrl}/api/users/self`, { headers: { cookie: session.cookie } })
        ).arrayBuffer();
      const { page } = browser;
      await page.goto(`${adminUrl(embedded)}/sluice/status`);
      await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
      expect(await page.isVisible('#db-embedded')).toBe(true);
      expect(await page.isVisible('#db-chart')).toBe(false);
      expect(await page.textContent('#db-embedded')).toContain('cannot see PostgreSQL');
      expect(await page.textContent('#db-health')).toBe('database not watched');
      await expect
        .poll(() => page.textContent('#heaviest-user-who'), { timeout: 10_000, interval: 250 })
        .toContain('user');
      await browser.screenshot('gateway-status-embedded');
      expect(browser.errors).toEqual([]);
    } finally {
      await browser.close();
      await embedded.close(0);
    }
  }, 60_000);
});
