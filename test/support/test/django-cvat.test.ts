// What the fixture does like CVAT 2.x, for tests of the gateway's CVAT profile: the AllowAny
// logout, password change, the sessionfresh refresh, personal access tokens, TUS uploads, the
// public endpoints, the client address rule, the cvat:server application name and the leak mode.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  adminQuery,
  CVAT_SERVER_APPLICATION_NAME,
  type DjangoFixture,
  type DjangoLogin,
  startDjango,
  waitFor,
} from '../src/index.ts';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The `Set-Cookie` lines of a response by cookie name. */
function setCookies(res: Response): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of res.headers.getSetCookie()) out.set(line.slice(0, line.indexOf('=')), line);
  return out;
}
const deletes = (line: string | undefined): boolean =>
  line !== undefined && /=(""|);/.test(line) && /expires=Thu, 01 Jan 1970/i.test(line);

async function sessionRow(django: DjangoFixture, key: string): Promise<{ expire_date: Date } | undefined> {
  const client = new pg.Client({ connectionString: django.database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ expire_date: Date }>(
      'SELECT expire_date FROM django_session WHERE session_key = $1',
      [key],
    );
    return rows[0];
  } finally {
    await client.end();
  }
}

describe('CVAT-shaped authentication', () => {
  let django: DjangoFixture;
  beforeAll(async () => {
    django = await startDjango({ exportMs: 0 });
  });
  afterAll(async () => {
    await django?.stop();
  });
  const self = (headers: Record<string, string>): Promise<number> =>
    fetch(`${django.url}/api/users/self`, { headers }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });

  test('login sets sessionfresh; a request without it re-saves the session and sets it again', async () => {
    const res = await fetch(`${django.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'user', password: 'user-password-1' }),
    });
    const fresh = setCookies(res).get('sessionfresh');
    // min(one day, half of the two-week session age)
    expect(fresh).toMatch(/^sessionfresh=1;.*HttpOnly.*Max-Age=86400/);
    const key = /^sessionid=([a-z0-9]+)/.exec(setCookies(res).get('sessionid') ?? '')?.[1] ?? '';
    const client = new pg.Client({ connectionString: django.database.url });
    await client.connect();
    try {
      await client.query(
        "UPDATE django_session SET expire_date = now() + interval '1 hour' WHERE session_key = $1",
        [key],
      );
    } finally {
      await client.end();
    }
    const withFresh = await fetch(`${django.url}/api/users/self`, {
      headers: { cookie: `sessionid=${key}; sessionfresh=1` },
    });
    expect(withFresh.status).toBe(200);
    expect(withFresh.headers.getSetCookie()).toEqual([]);
    const soon = (await sessionRow(django, key))?.expire_date.getTime() ?? 0;
    expect(soon - Date.now()).toBeLessThan(2 * 3600_000);

    const stale = await fetch(`${django.url}/api/users/self`, { headers: { cookie: `sessionid=${key}` } });
    expect(stale.status).toBe(200);
    expect(setCookies(stale).get('sessionfresh')).toMatch(/^sessionfresh=1;/);
    const later = (await sessionRow(django, key))?.expire_date.getTime() ?? 0;
    expect(later - Date.now()).toBeGreaterThan(13 * 24 * 3600_000);
  });

  test('logout answers 200 and deletes sessionid and sessionfresh, the token too when authenticated', async () => {
    const created = await django.createUser({ username: 'quitter', password: 'quitter-password-1' });
    const login = await django.login('quitter');
    const cookie = `${login.cookie}; sessionfresh=1`;
    const out = await fetch(`${django.url}/api/auth/logout`, { method: 'POST', headers: { cookie } });
    expect(out.status).toBe(200);
    expect(await out.json()).toEqual({ detail: 'Successfully logged out.' });
    expect(deletes(setCookies(out).get('sessionid'))).toBe(true);
    expect(deletes(setCookies(out).get('sessionfresh'))).toBe(true);
    expect(await sessionRow(django, login.sessionId)).toBeUndefined();
    expect(await self({ authorization: `Token ${created.token}` })).toBe(401);

    // The session is gone now (as when it expired): still 200, and the cookies still go.
    const again = await fetch(`${django.url}/api/auth/logout`, { method: 'POST', headers: { cookie } });
    expect(again.status).toBe(200);
    expect(deletes(setCookies(again).get('sessionid'))).toBe(true);
    expect(deletes(setCookies(again).get('sessionfresh'))).toBe(true);

    // No credential at all: 200, nothing to delete (as Django: only cookies the request carried).
    const anonymous = await fetch(`${django.url}/api/auth/logout`, { method: 'POST' });
    expect(anonymous.status).toBe(200);
    expect(anonymous.headers.getSetCookie()).toEqual([]);
  });

  test('password change: the current session gets a new key, other sessions end, tokens stay', async () => {
    const user = await django.createUser({ username: 'mover', password: 'mover-password-1' });
    const current = await django.login('mover');
    const other = await django.login('mover');
    const pat = await django.createAccessToken('mover', { readOnly: false });
    const change = (headers: Record<string, string>, body: Record<string, string>): Promise<Response> =>
      fetch(`${django.url}/api/auth/password/change`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    const body = { old_password: 'mover-password-1', new_password1: 'mover-2', new_password2: 'mover-2' };

    expect((await change({ authorization: `Bearer ${pat.value}` }, body)).status).toBe(401);
    const wrong = await change(current.headers, { ...body, old_password: 'nope' });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toHaveProperty('old_password');
    expect((await change(current.headers, { ...body, new_password2: 'other' })).status).toBe(400);
    expect((await change({ cookie: current.cookie }, body)).status).toBe(403); // CSRF

    const ok = await change(current.headers, body);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ detail: 'New password has been saved.' });
    const newKey = /^sessionid=([a-z0-9]{32});/.exec(setCookies(ok).get('sessionid') ?? '')?.[1];
    expect(newKey).toBeDefined();
    expect(newKey).not.toBe(current.sessionId);
    expect(await self({ cookie: `sessionid=${newKey}` })).toBe(200);
    expect(await self({ cookie: `sessionid=${current.sessionId}` })).toBe(401);
    expect(await self({ cookie: `sessionid=${other.sessionId}` })).toBe(401);
    expect(await self({ authorization: `Token ${user.token}` })).toBe(200);
    expect(await self({ authorization: `Bearer ${pat.value}` })).toBe(200);
  });

  test('personal access tokens: Bearer, stored hashed, read-only, expiry, revocation', async () => {
    const readOnly = await django.createAccessToken('user');
    expect(readOnly.value).toMatch(/^[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}$/);
    const bearer = (value: string): Record<string, string> => ({ authorization: `Bearer ${value}` });
    expect(await self(bearer(readOnly.value))).toBe(200);
    const exportUrl = `${django.url}/api/tasks/3/dataset/export?format=COCO`;
    expect((await fetch(exportUrl, { method: 'POST', headers: bearer(readOnly.value) })).status).toBe(403);
    const writer = await django.createAccessToken('user', { readOnly: false, name: 'ci' });
    expect((await fetch(exportUrl, { method: 'POST', headers: bearer(writer.value) })).status).toBe(202);

    const stored = new pg.Client({ connectionString: django.database.url });
    await stored.connect();
    try {
      const { rows } = await stored.query<{ prefix: string; hashed_key: string }>(
        'SELECT prefix, hashed_key FROM upstream_accesstoken WHERE id = $1',
        [writer.id],
      );
      expect(rows[0]?.prefix).toBe(writer.value.slice(0, 8));
      expect(rows[0]?.hashed_key).not.toContain(writer.value.slice(9));
    } finally {
      await stored.end();
    }

    const selfToken = await fetch(`${django.url}/api/auth/access_tokens/self`, {
      headers: bearer(writer.value),
    });
    expect(await selfToken.json()).toMatchObject({ id: writer.id, name: 'ci', read_only: false });
    const login = await django.login('user');
    expect(
      (await fetch(`${django.url}/api/auth/access_tokens/self`, { headers: { cookie: login.cookie } }))
        .status,
    ).toBe(401);

    // Made and revoked through the API, with a credential other than a token.
    const made = await fetch(`${django.url}/api/auth/access_tokens`, {
      method: 'POST',
      headers: { ...login.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'api', read_only: true }),
    });
    expect(made.status).toBe(201);
    const madeToken = (await made.json()) as { id: number; value: string };
    expect(await self(bearer(madeToken.value))).toBe(200);
    const byBearer = await fetch(`${django.url}/api/auth/access_tokens/${madeToken.id}`, {
      method: 'DELETE',
      headers: bearer(writer.value),
    });
    expect(byBearer.status).toBe(401);
    const revoke = await fetch(`${django.url}/api/auth/access_tokens/${madeToken.id}`, {
      method: 'DELETE',
      headers: login.headers,
    });
    expect(revoke.status).toBe(204);
    expect(await self(bearer(madeToken.value))).toBe(401);

    await django.revokeAccessToken(readOnly.id);
    expect(await self(bearer(readOnly.value))).toBe(401);
    const expired = await django.createAccessToken('user', { expiryDate: new Date(Date.now() - 1000) });
    expect(await self(bearer(expired.value))).toBe(401);
    expect(await self(bearer(`${writer.value.slice(0, 9)}${'x'.repeat(32)}`))).toBe(401);
    expect(await self(bearer('not-a-token'))).toBe(401);
  });
});

describe('CVAT-shaped endpoints', () => {
  let django: DjangoFixture;
  let uploadDir: string;
  beforeAll(async () => {
    django = await startDjango({ workMs: 5 });
    uploadDir = django.uploadDir;
  });
  afterAll(async () => {
    await django?.stop();
    expect(existsSync(uploadDir)).toBe(false);
  });

  test('public: webhook events, guide assets, CORS preflight and the health check', async () => {
    const events = await fetch(`${django.url}/api/webhooks/events?type=project`);
    expect(events.status).toBe(200);
    expect(await events.json()).toMatchObject({ webhook_type: 'project' });

    const asset = await fetch(`${django.url}/api/assets/0b4c4c50-68f2-4d1f-9a0e-0f4f3b8a3e4b`);
    expect(asset.status).toBe(200);
    expect((await asset.arrayBuffer()).byteLength).toBe(4096);
    expect((await fetch(`${django.url}/api/assets/not-a-uuid`)).status).toBe(404);

    const preflight = await fetch(`${django.url}/api/tasks/1/data`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://ui.example',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'upload-offset',
      },
    });
    expect(preflight.status).toBe(200);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://ui.example');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('PATCH');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('upload-offset');

    const health = await fetch(`${django.url}/api/server/health/`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ DatabaseBackend: 'working' });

    // What still needs a credential does.
    expect((await fetch(`${django.url}/api/tasks`)).status).toBe(401);
  });

  test('the client address is X-Forwarded-For[-NUM_PROXIES], NUM_PROXIES = CVAT_NUM_PROXIES + 1', async () => {
    const client = async (xff?: string): Promise<unknown> =>
      (
        await fetch(`${django.url}/api/_fixture/client`, {
          headers: xff ? { 'x-forwarded-for': xff } : {},
        })
      ).json();
    expect(await client('10.0.0.1, 10.0.0.2')).toMatchObject({ client: '10.0.0.2', num_proxies: 1 });
    expect(await client()).toMatchObject({ client: '127.0.0.1' });
  });

  test('GET /api/tasks lists the tasks the user exported', async () => {
    const token = django.user('user').token;
    const auth = { authorization: `Token ${token}` };
    await fetch(`${django.url}/api/tasks/12/dataset/export?format=COCO`, { method: 'POST', headers: auth });
    const page = await fetch(`${django.url}/api/tasks`, { headers: auth });
    expect(await page.json()).toMatchObject({ count: 1, results: [{ id: 12 }] });
  });

  test('TUS uploads: create with an absolute Location, HEAD and PATCH at the offset, finish', async () => {
    const token = django.user('user').token;
    const auth = { authorization: `Token ${token}` };
    const file = randomBytes(300_001);
    const create = await fetch(`${django.url}/api/tasks/5/data/`, {
      method: 'POST',
      headers: {
        ...auth,
        'upload-length': String(file.length),
        'tus-resumable': '1.0.0',
        'upload-metadata': `filename ${Buffer.from('images.zip').toString('base64')}`,
        'x-forwarded-host': 'cvat.example.com',
        'x-forwarded-proto': 'https',
      },
    });
    expect(create.status).toBe(201);
    expect(create.headers.get('tus-resumable')).toBe('1.0.0');
    const location = create.headers.get('location') ?? '';
    expect(location).toMatch(/^https:\/\/cvat\.example\.com\/api\/tasks\/5\/data\/[0-9a-f-]{36}$/);
    const at = `${django.url}${new URL(location).pathname}`;
    const head = async (): Promise<string | null> =>
      (await fetch(at, { method: 'HEAD', headers: auth })).headers.get('upload-offset');
    expect(await head()).toBe('0');

    const patch = (offset: number, body: Uint8Array, type = 'application/offset+octet-stream') =>
      fetch(at, {
        method: 'PATCH',
        headers: { ...auth, 'tus-resumable': '1.0.0', 'upload-offset': String(offset), 'content-type': type },
        body,
      });
    const first = await patch(0, file.subarray(0, 200_000));
    expect(first.status).toBe(204);
    expect(first.headers.get('upload-offset')).toBe('200000');
    expect((await patch(0, file.subarray(0, 10))).status).toBe(409);
    expect((await patch(200_000, file.subarray(200_000), 'application/octet-stream')).status).toBe(415);
    expect((await patch(200_000, Buffer.concat([file.subarray(200_000), Buffer.alloc(1)]))).status).toBe(413);
    expect(await head()).toBe('200000');
    expect((await patch(200_000, file.subarray(200_000))).status).toBe(204);
    expect(await head()).toBe(String(file.length));

    // Someone else's upload does not exist for them.
    const outsider = await django.createUser({ username: 'peeker', password: 'peeker-password-1' });
    expect(
      (await fetch(at, { method: 'HEAD', headers: { authorization: `Token ${outsider.token}` } })).status,
    ).toBe(404);

    const start = await fetch(`${django.url}/api/tasks/5/data`, {
      method: 'POST',
      headers: { ...auth, 'upload-start': 'true' },
    });
    expect(start.status).toBe(202);
    const finish = await fetch(`${django.url}/api/tasks/5/data`, {
      method: 'POST',
      headers: { ...auth, 'upload-finish': 'true' },
    });
    expect(finish.status).toBe(202);
    expect(await finish.json()).toMatchObject({
      files: [{ filename: 'images.zip', bytes: file.length, sha256: sha256(file) }],
    });

    // Annotations of a job, Location from Origin when there is no X-Forwarded-Host (as CVAT).
    const annotations = await fetch(`${django.url}/api/jobs/9/annotations`, {
      method: 'POST',
      headers: { ...auth, 'upload-length': '3', 'tus-resumable': '1.0.0', origin: 'http://ui.example:8080' },
    });
    expect(annotations.headers.get('location')).toMatch(
      /^http:\/\/ui\.example:8080\/api\/jobs\/9\/annotations\/[0-9a-f-]{36}$/,
    );
    expect(existsSync(uploadDir)).toBe(true);
  });
});

describe('the cvat:server application name and the leak mode', () => {
  const limit = 4;
  let django: DjangoFixture;
  let login: DjangoLogin;
  beforeAll(async () => {
    django = await startDjango({
      applicationName: CVAT_SERVER_APPLICATION_NAME,
      connectionLimit: limit,
      leakEvery: 2,
      cvatNumProxies: 1,
      exportMs: 0,
      exportBytes: 1000,
      users: [{ username: 'bulk', password: 'bulk-password-1' }],
    });
    login = await django.login('bulk');
  });
  afterAll(async () => {
    await django?.stop();
  });

  /** Export and download one task with the session, as cvat_sdk >= 2.41 does; the download's status. */
  const exportAndDownload = async (taskId: number): Promise<number> => {
    const started = await fetch(`${django.url}/api/tasks/${taskId}/dataset/export?format=COCO`, {
      method: 'POST',
      headers: login.headers,
    });
    if (started.status !== 202) return started.status;
    const { rq_id: rqId } = (await started.json()) as { rq_id: string };
    const res = await fetch(
      `${django.url}/api/tasks/${taskId}/dataset/download?rq_id=${encodeURIComponent(rqId)}`,
      {
        headers: login.headers,
      },
    );
    await res.arrayBuffer();
    return res.status;
  };
  const roleConnections = async (): Promise<{ state: string; application_name: string; query: string }[]> =>
    (
      await adminQuery<{ state: string; application_name: string; query: string }>(
        `SELECT state, application_name, query FROM pg_stat_activity
          WHERE usename = $1 AND backend_type = 'client backend'`,
        [django.database.user],
      )
    ).rows;

  test("one download in two leaks an idle cvat:server connection whose last query is the session lookup; the role's limit then refuses", async () => {
    expect(await exportAndDownload(1)).toBe(200);
    expect(await exportAndDownload(2)).toBe(200);
    await waitFor(async () => (await roleConnections()).length === 1, { what: 'one leaked connection' });
    const [leaked] = await roleConnections();
    expect(leaked).toMatchObject({ state: 'idle', application_name: 'cvat:server' });
    expect(leaked?.query).toMatch(/FROM "django_session" WHERE .*"django_session"."session_key" = /);
    expect(await django.leaks()).toMatchObject({ every: 2, downloads: 2, leaked: 1 });

    for (let task = 3; task <= 2 * limit; task += 1) await exportAndDownload(task);
    expect((await django.leaks()).leaked).toBe(limit);
    const refused = await fetch(`${django.url}/api/users/self`, { headers: { cookie: login.cookie } });
    expect(refused.status).toBe(500);
    expect(await refused.json()).toMatchObject({ code: 'database_error' });

    expect(await django.closeLeaks()).toBe(limit);
    await waitFor(async () => (await roleConnections()).length === 0, { what: 'the leaks to close' });
    expect(await exportAndDownload(99)).toBe(200);
  });

  test('with CVAT_NUM_PROXIES 1 the client is one hop further left', async () => {
    const res = await fetch(`${django.url}/api/_fixture/client`, {
      headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.1, 10.0.0.2' },
    });
    expect(await res.json()).toMatchObject({ client: '10.0.0.1', num_proxies: 2 });
  });
});
