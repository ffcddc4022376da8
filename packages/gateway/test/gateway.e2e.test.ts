import { createPool } from '@sluice/pool';
import { type DjangoFixture, freePort, startDjango, waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessLogEntry, createGateway, type Gateway } from '../src/index.ts';
import { METRIC_NAMES } from '../src/metrics.ts';
import { adminUrl, memoryLogger, recordRequests } from './helpers.ts';

// End to end against the real Django fixture (gunicorn + PostgreSQL), the gateway embedded:
// no database URL, no Redis, so credentials are validated through /api/users/self.
let django: DjangoFixture;
let gateway: Gateway;
let base: string;
let log: ReturnType<typeof memoryLogger>;
let entries: AccessLogEntry[];

beforeAll(async () => {
  django = await startDjango({ label: 'gw_e2e', exportMs: 300, exportBytes: 200_000, threads: 8 });
  log = memoryLogger();
  gateway = createGateway({ upstream: django.url, listen: '127.0.0.1:0', dbBudget: 4, logger: log.logger });
  entries = recordRequests(gateway);
  base = (await gateway.listen()).url;
}, 60_000);

afterAll(async () => {
  await gateway?.close(1_000);
  await django?.stop();
});

async function login(username = 'user'): Promise<{ cookie: string; csrf: string; token: string }> {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: django.user(username).password }),
  });
  expect(res.status).toBe(200);
  const cookies = res.headers.getSetCookie();
  const pick = (name: string): string => {
    const line = cookies.find((c) => c.startsWith(`${name}=`)) ?? '';
    return line.slice(name.length + 1).split(';')[0] ?? '';
  };
  const sessionId = pick('sessionid');
  const csrf = pick('csrftoken');
  expect(sessionId).toMatch(/^[a-z0-9]{32}$/);
  const { key } = (await res.json()) as { key: string };
  return { cookie: `sessionid=${sessionId}; csrftoken=${csrf}`, csrf, token: key };
}

function lastEntry(route: string): AccessLogEntry | undefined {
  return entries.filter((e) => e.route === route).at(-1);
}

describe('sluice-gateway in front of Django (embedded mode)', () => {
  it('logs in through the gateway, then serves the cookie from the cache', async () => {
    const { cookie } = await login();
    const first = await fetch(`${base}/api/users/self`, { headers: { cookie } });
    expect(first.status).toBe(200);
    expect(((await first.json()) as { username: string }).username).toBe('user');
    const second = await fetch(`${base}/api/users/self`, { headers: { cookie } });
    expect(second.status).toBe(200);
    await second.arrayBuffer();
    await waitFor(() => entries.filter((e) => e.route === '/api/users/self').length >= 2);
    const [a, b] = entries.filter((e) => e.route === '/api/users/self');
    expect(a?.cacheTier).toBe('validator');
    expect(b?.cacheTier).toBe('l1');
    expect(b?.userId).toBe(django.user('user').id);
    expect(lastEntry('/api/auth/login')?.cacheTier).toBe('public');

    const anonymous = await fetch(`${base}/api/users/self`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { code: string }).code).toBe('E_UNAUTHENTICATED');
    // No credential ever reaches the log.
    expect(log.text()).not.toContain(cookie.slice(10, 42));
  });

  it('runs the export flow as bulk, with a result_url that points at the gateway', async () => {
    const { cookie, csrf } = await login();
    const headers = { cookie, 'x-csrftoken': csrf };
    const started = await fetch(`${base}/api/tasks/7/dataset/export?format=COCO%201.0`, {
      method: 'POST',
      headers,
    });
    expect(started.status).toBe(202);
    const { rq_id: rqId } = (await started.json()) as { rq_id: string };
    let resultUrl: string | null = null;
    await waitFor(
      async () => {
        const res = await fetch(`${base}/api/requests/${encodeURIComponent(rqId)}`, { headers });
        const body = (await res.json()) as { status: string; result_url: string | null };
        resultUrl = body.result_url;
        return body.status === 'finished';
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'the export to finish' },
    );
    expect(resultUrl).not.toBeNull();
    const url = new URL(resultUrl as unknown as string);
    expect(url.origin).toBe(base);
    const download = await fetch(url, { headers });
    expect(download.status).toBe(200);
    expect((await download.arrayBuffer()).byteLength).toBe(200_000);
    await waitFor(() => lastEntry('/api/tasks/:id/dataset/download')?.status === 200);
    expect(lastEntry('/api/tasks/:id/dataset/export')?.class).toBe('bulk');
    expect(lastEntry('/api/requests/:id')?.class).toBe('interactive');
    expect(lastEntry('/api/tasks/:id/dataset/download')?.class).toBe('bulk');
    expect(lastEntry('/api/users/self')?.class).toBe('interactive');
  });

  it('invalidates the credential when the upstream accepts a logout', async () => {
    const { cookie } = await login();
    expect((await fetch(`${base}/api/users/self`, { headers: { cookie } })).status).toBe(200);
    const out = await fetch(`${base}/api/auth/logout`, { method: 'POST', headers: { cookie } });
    expect(out.status).toBe(200);
    await out.arrayBuffer();
    const after = await fetch(`${base}/api/users/self`, { headers: { cookie } });
    expect(after.status).toBe(401);
    await after.arrayBuffer();
    await waitFor(() => lastEntry('/api/users/self')?.status === 401);
    // Had the cache still vouched for it, the request would have reached Django (upstreamMs set).
    const last = lastEntry('/api/users/self');
    expect(last?.cacheTier).toBe('validator');
    expect(last?.upstreamMs).toBeUndefined();
  });

  it('evicts a credential the cache called valid when the upstream answers 401', async () => {
    const { cookie } = await login('staff');
    const sessionId = /sessionid=([a-z0-9]+)/.exec(cookie)?.[1];
    expect((await fetch(`${base}/api/users/self`, { headers: { cookie } })).status).toBe(200);
    // Behind the gateway's back, Django stops accepting the session (its row is gone, as after a
    // logout elsewhere). Done in one quick statement, so the gateway's L1 entry (5 s at most) still
    // vouches for it however loaded the machine is; a password change hashes for a while.
    await using db = createPool({ connectionString: django.database.url, max: 1 });
    const deleted = await db.query('DELETE FROM django_session WHERE session_key = $1', [sessionId]);
    expect(deleted.rowCount).toBe(1);
    const vouched = await fetch(`${base}/api/users/self`, { headers: { cookie } });
    expect(vouched.status).toBe(401); // Django's answer: the cache still said valid
    await vouched.arrayBuffer();
    await waitFor(() => lastEntry('/api/users/self')?.status === 401);
    expect(lastEntry('/api/users/self')?.cacheTier).toBe('l1');
    expect(lastEntry('/api/users/self')?.upstreamMs).toBeDefined();
    const evicted = await fetch(`${base}/api/users/self`, { headers: { cookie } });
    expect(evicted.status).toBe(401);
    await evicted.arrayBuffer();
    await waitFor(() => lastEntry('/api/users/self')?.error === 'E_UNAUTHENTICATED');
    // The session was checked again after Django's 401 and is known invalid now: the gateway
    // answers itself, without the upstream.
    expect(lastEntry('/api/users/self')?.upstreamMs).toBeUndefined();
    expect(lastEntry('/api/users/self')?.error).toBe('E_UNAUTHENTICATED');
  });

  it('frees the admission slot when the client aborts a slow download', async () => {
    const { token } = await login();
    const headers = { authorization: `Token ${token}` };
    const controller = new AbortController();
    const res = await fetch(`${base}/api/stream/download?size=1000000&chunk=1000&delayMs=200`, {
      headers,
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    await reader?.read();
    expect(gateway.admission.inFlight).toBe(1);
    controller.abort();
    await waitFor(() => gateway.admission.inFlight === 0, {
      timeoutMs: 15_000,
      what: 'the slot to come back',
    });
    await waitFor(() => lastEntry('/api/stream/download')?.status !== undefined);
    expect(lastEntry('/api/stream/download')?.error).toBe('E_CLIENT_ABORTED');
    const next = await fetch(`${base}/api/users/self`, { headers });
    expect(next.status).toBe(200);
    await next.arrayBuffer();
  });

  it('serves /healthz, /readyz and /metrics', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${adminUrl(gateway)}/readyz`);
    expect(ready.status).toBe(200);
    const report = (await ready.json()) as { status: string; checks: Record<string, { ok: boolean }> };
    expect(report.status).toBe('ready');
    expect(report.checks.upstream?.ok).toBe(true);
    const metrics = await (await fetch(`${adminUrl(gateway)}/metrics`)).text();
    for (const name of METRIC_NAMES) expect(metrics).toContain(name);
    expect(metrics).toMatch(/sluice_requests_total\{class="interactive",status="200"\} \d+/);
    expect(metrics).toMatch(/sluice_cache_hits_total\{tier="l1"\} [1-9]/);
    expect(metrics).toMatch(/sluice_admission_limit 4/);
  });
});

describe('upstream down', () => {
  it('answers 502 JSON and counts the upstream error', async () => {
    const port = await freePort();
    const down = createGateway({
      upstream: `http://127.0.0.1:${port}`,
      listen: '127.0.0.1:0',
      logger: memoryLogger().logger,
    });
    const { url } = await down.listen();
    try {
      const res = await fetch(`${url}/api/server/about`);
      expect(res.status).toBe(502);
      expect(await res.json()).toEqual({
        detail: expect.any(String),
        code: 'E_UPSTREAM_UNAVAILABLE',
        message: expect.any(String),
      });
      const ready = await fetch(`${adminUrl(down)}/readyz`);
      expect(ready.status).toBe(503);
      const body = (await ready.json()) as { checks: { upstream: { ok: boolean; error: string } } };
      expect(body.checks.upstream.ok).toBe(false);
      expect(body.checks.upstream.error).toMatch(/ECONNREFUSED/);
      expect(down.status().requests.upstreamErrors).toBe(1);
    } finally {
      await down.close(0);
    }
  });
});
