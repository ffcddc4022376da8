import { CVAT_SERVER_APPLICATION_NAME, type DjangoFixture, startDjango, waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessLogEntry, createGateway, type Gateway } from '../src/index.ts';
import { memoryLogger, recordRequests } from './helpers.ts';

// The gateway in front of a CVAT-shaped Django (the fixture: CVAT's authentication classes in
// CVAT's order, an AllowAny logout that deletes the DRF token, password change, access tokens,
// public endpoints, CVAT's client-address rule), on the gateway's defaults plus the database.

let django: DjangoFixture;
let gateway: Gateway;
let base: string;
let log: AccessLogEntry[];

beforeAll(async () => {
  django = await startDjango({
    label: 'gwcvat',
    applicationName: CVAT_SERVER_APPLICATION_NAME,
    cvatNumProxies: 1,
    connectionLimit: 12,
    threads: 8,
  });
  gateway = createGateway({
    upstream: django.url,
    listen: '127.0.0.1:0',
    databaseUrl: django.database.url,
    secretKey: django.secretKey,
    poolMax: 2,
    dbBudget: 6,
    trustProxy: 1,
    logger: memoryLogger().logger,
  });
  log = recordRequests(gateway);
  base = (await gateway.listen()).url;
}, 60_000);

afterAll(async () => {
  await gateway?.close(1_000);
  await django?.stop();
});

const last = (route: string): AccessLogEntry | undefined => log.filter((e) => e.route === route).at(-1);
const basic = (username: string, password: string): string =>
  `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

describe("CVAT's public endpoints reach CVAT", () => {
  it('logout answers 200 and deletes the cookies even for an expired session', async () => {
    const res = await fetch(`${base}/api/auth/logout`, {
      method: 'POST',
      headers: { cookie: 'sessionid=abcdefghijklmnopqrstuvwxyz012345; sessionfresh=1' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie().join('\n')).toMatch(/sessionid="";/);
  });

  it('webhook events, public assets and CORS preflight get the upstream answer, not a 401', async () => {
    expect((await fetch(`${base}/api/webhooks/events?type=project`)).status).toBe(200);
    const asset = await fetch(`${base}/api/assets/0f9c7a2e-1c0b-4f4e-9d2a-6b1f7c0e5d3a`);
    expect(asset.status).toBe(200);
    expect(last('/api/assets/:id')?.cacheTier).toBe('anonymous');
    const preflight = await fetch(`${base}/api/tasks`, {
      method: 'OPTIONS',
      headers: { origin: 'https://cvat.example', 'access-control-request-method': 'POST' },
    });
    const direct = await fetch(`${django.url}/api/tasks`, {
      method: 'OPTIONS',
      headers: { origin: 'https://cvat.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(direct.status);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(
      direct.headers.get('access-control-allow-origin'),
    );
  });

  it("answers DRF's 401 on CVAT's known routes without a credential, with no upstream request", async () => {
    const res = await fetch(`${base}/api/tasks`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Token');
    expect(await res.json()).toMatchObject({ detail: 'Authentication credentials were not provided.' });
    expect(last('/api/tasks')?.upstreamMs).toBeUndefined();
  });
});

describe("CVAT's credential order", () => {
  it('lets a valid Basic credential through beside an expired session cookie, as DRF does', async () => {
    const user = django.user('user');
    const res = await fetch(`${base}/api/users/self`, {
      headers: {
        cookie: 'sessionid=expiredexpiredexpiredexpired0000',
        authorization: basic(user.username, user.password),
      },
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { username: string }).username).toBe('user');
  });
});

describe('cache coherence with CVAT', () => {
  it("logout forgets every credential of the user: CVAT deleted the user's DRF token too", async () => {
    const login = await django.login('user');
    const token = { authorization: `Token ${login.token}` };
    expect((await fetch(`${base}/api/users/self`, { headers: token })).status).toBe(200);
    expect((await fetch(`${base}/api/users/self`, { headers: token })).status).toBe(200);
    // The access log records a request when its connection closes, which may be after fetch resolves.
    await waitFor(() => last('/api/users/self')?.cacheTier === 'l1', { timeoutMs: 2_000 });
    const out = await fetch(`${base}/api/auth/logout`, { method: 'POST', headers: { ...login.headers } });
    expect(out.status).toBe(200);
    // The token was cached as valid; after the logout it is asked about again, and refused.
    const after = await fetch(`${base}/api/users/self`, { headers: token });
    expect(after.status).toBe(401);
    expect(await after.json()).toMatchObject({ detail: 'Invalid token.' });
  });

  it("a password change ends the user's other sessions at the gateway too", async () => {
    await django.createUser({ username: 'changer', password: 'changer-password-1' });
    const a = await django.login('changer');
    const b = await django.login('changer');
    for (const s of [a, b]) {
      expect((await fetch(`${base}/api/users/self`, { headers: { cookie: s.cookie } })).status).toBe(200);
    }
    const changed = await fetch(`${base}/api/auth/password/change`, {
      method: 'POST',
      headers: { ...a.headers, 'content-type': 'application/json', origin: base },
      body: JSON.stringify({
        old_password: 'changer-password-1',
        new_password1: 'changer-password-2',
        new_password2: 'changer-password-2',
      }),
    });
    expect(changed.status).toBe(200);
    expect((await fetch(`${base}/api/users/self`, { headers: { cookie: b.cookie } })).status).toBe(401);
  });

  it('keeps a valid credential when CVAT answers 401 only because the view takes another kind', async () => {
    const pat = await django.createAccessToken('staff');
    const bearer = { authorization: `Bearer ${pat.value}` };
    expect((await fetch(`${base}/api/users/self`, { headers: bearer })).status).toBe(200);
    const refused = await fetch(`${base}/api/auth/password/change`, {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(refused.status).toBe(401);
    // DRF's "not provided" is ambiguous: the gateway checked the token again, found it valid and
    // kept it: the next request is answered from L1.
    await waitFor(() => last('/api/auth/password/change')?.status === 401);
    expect((await fetch(`${base}/api/users/self`, { headers: bearer })).status).toBe(200);
    // The access log records a request when its connection closes, which may be after fetch resolves.
    await waitFor(() => last('/api/users/self')?.cacheTier === 'l1', { timeoutMs: 2_000 });
  });
});

describe('the client address CVAT sees', () => {
  it('is the right-most untrusted X-Forwarded-For entry, one hop more than before', async () => {
    const login = await django.login('staff');
    // A proxy in front of the gateway (this test, trusted: --trust-proxy 1) says who the client is;
    // the client itself tried to claim another address first.
    const res = await fetch(`${base}/api/_fixture/client`, {
      headers: {
        cookie: login.cookie,
        'x-forwarded-for': '198.51.100.9, 203.0.113.7',
        'x-real-ip': '10.9.9.9',
      },
    });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { client: string; x_forwarded_for: string };
    expect(seen.client).toBe('203.0.113.7');
    expect(seen.x_forwarded_for).toBe('203.0.113.7, 127.0.0.1');
  });
});

describe('shedding', () => {
  it('answers 429 with Retry-After when the queue is full (the CVAT UI retries it)', async () => {
    const small = createGateway({
      upstream: django.url,
      listen: '127.0.0.1:0',
      dbBudget: 1,
      queueMax: 0,
      adminListen: false,
      logger: memoryLogger().logger,
    });
    const { url } = await small.listen();
    try {
      const slow = fetch(`${url}/api/server/health/`);
      await waitFor(() => small.status().admission.inFlight === 1, { timeoutMs: 5_000 }).catch(
        () => undefined,
      );
      const answers = await Promise.all(Array.from({ length: 6 }, () => fetch(`${url}/api/server/about`)));
      const shed = answers.filter((r) => r.status === 429);
      expect(shed.length).toBeGreaterThan(0);
      expect(Number(shed[0]?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await shed[0]?.json()).toMatchObject({ code: 'E_QUEUE_FULL', detail: expect.any(String) });
      await (await slow).arrayBuffer();
    } finally {
      await small.close(500);
    }
  });
});
