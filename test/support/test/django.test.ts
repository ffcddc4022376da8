import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { adminQuery, type DjangoFixture, isDjangoFixtureError, startDjango, waitFor } from '../src/index.ts';

function pattern(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) b[i] = i % 256;
  return b;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function getJson(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, init);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return { status: res.status, body: await res.json() };
}

// A zombie (exited, not yet reaped by an init that does not reap) counts as gone.
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function databaseExists(name: string): Promise<boolean> {
  const { rows } = await adminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rows.length === 1;
}

describe('the API surface', () => {
  let django: DjangoFixture;
  beforeAll(async () => {
    django = await startDjango({ exportMs: 3000, exportBytes: 300_001, workMs: 20 });
  });
  afterAll(async () => {
    await django?.stop();
  });

  test('login sets the session and CSRF cookies and answers the DRF token', async () => {
    const res = await fetch(`${django.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'user', password: 'user-password-1' }),
    });
    expect(res.status).toBe(200);
    const cookies = res.headers.getSetCookie();
    const session = cookies.find((c) => c.startsWith('sessionid='));
    expect(session).toMatch(/^sessionid=[a-z0-9]{32};.*HttpOnly/);
    expect(cookies.some((c) => /^csrftoken=[A-Za-z0-9]{64};/.test(c))).toBe(true);
    const body = (await res.json()) as { key: string };
    expect(body.key).toBe(django.user('user').token);

    const key = /^sessionid=([a-z0-9]+)/.exec(session ?? '')?.[1];
    const client = new pg.Client({ connectionString: django.database.url });
    await client.connect();
    try {
      const found = await client.query('SELECT 1 FROM django_session WHERE session_key = $1', [key]);
      expect(found.rowCount).toBe(1);
    } finally {
      await client.end();
    }
  });

  test('a refused login is a JSON 400', async () => {
    await expect(django.login('user', 'wrong-password')).rejects.toSatisfy(
      (e: unknown) => isDjangoFixtureError(e) && e.code === 'E_DJANGO_REQUEST' && e.status === 400,
    );
  });

  test('/api/users/self answers to a session cookie, a token and Basic, and 401 JSON to nothing', async () => {
    const staff = django.user('staff');
    const login = await django.login('staff');
    const expected = { id: staff.id, username: 'staff', email: 'staff@example.com', is_staff: true };
    const self = `${django.url}/api/users/self`;

    const bySession = await getJson(self, { headers: { cookie: `sessionid=${login.sessionId}` } });
    expect(bySession.status).toBe(200);
    expect(bySession.body).toMatchObject({ ...expected, is_superuser: false, is_active: true });

    const byToken = await getJson(self, { headers: { authorization: `Token ${staff.token}` } });
    expect(byToken).toMatchObject({ status: 200, body: expected });

    const byBasic = await getJson(self, { headers: { authorization: basic('staff', staff.password) } });
    expect(byBasic).toMatchObject({ status: 200, body: expected });

    const res = await fetch(self);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Token');
    expect(await res.json()).toEqual({ detail: 'Authentication credentials were not provided.' });

    const badToken = await getJson(self, { headers: { authorization: `Token ${'0'.repeat(40)}` } });
    expect(badToken.status).toBe(401);
    const badBasic = await getJson(self, { headers: { authorization: basic('staff', 'nope') } });
    expect(badBasic.status).toBe(401);
  });

  test('logout deletes the session (and, as in CVAT, the token)', async () => {
    const created = await django.createUser({ username: 'leaver', password: 'leaver-password-1' });
    const login = await django.login('leaver');
    expect(login.token).toBe(created.token);
    const self = `${django.url}/api/users/self`;
    expect((await fetch(self, { headers: { cookie: login.cookie } })).status).toBe(200);

    const out = await fetch(`${django.url}/api/auth/logout`, {
      method: 'POST',
      headers: { cookie: login.cookie },
    });
    expect(out.status).toBe(200);
    expect(out.headers.getSetCookie().some((c) => c.startsWith('sessionid="";'))).toBe(true);

    expect((await fetch(self, { headers: { cookie: login.cookie } })).status).toBe(401);
    expect((await fetch(self, { headers: { authorization: `Token ${login.token}` } })).status).toBe(401);
  });

  test('a password change ends the sessions made with the old one', async () => {
    await django.createUser({ username: 'changer', password: 'changer-password-1' });
    const login = await django.login('changer');
    const self = `${django.url}/api/users/self`;
    expect((await fetch(self, { headers: { cookie: login.cookie } })).status).toBe(200);
    const changed = await django.setPassword('changer', 'changer-password-2');
    expect(changed.password).toBe('changer-password-2');
    expect(changed.passwordHash).toMatch(/^pbkdf2_sha256\$260000\$/);
    expect((await fetch(self, { headers: { cookie: login.cookie } })).status).toBe(401);
    await expect(django.login('changer')).resolves.toMatchObject({ token: changed.token });
  });

  test('the export flow, end to end, with result_url honouring X-Forwarded-Host/-Proto', async () => {
    const user = django.user('user');
    const auth = { authorization: `Token ${user.token}` };
    const start = await getJson(`${django.url}/api/tasks/7/dataset/export?format=CVAT+for+images+1.1`, {
      method: 'POST',
      headers: auth,
    });
    expect(start.status).toBe(202);
    const { rq_id: rqId } = start.body as { rq_id: string };
    expect(rqId).toContain('target_id=7');
    const status = `${django.url}/api/requests/${encodeURIComponent(rqId)}`;

    const early = await getJson(status, { headers: auth });
    expect(early.status).toBe(200);
    expect(['queued', 'started']).toContain((early.body as { status: string }).status);
    expect((early.body as { result_url: unknown }).result_url).toBeNull();
    const tooSoon = await getJson(
      `${django.url}/api/tasks/7/dataset/download?rq_id=${encodeURIComponent(rqId)}`,
      {
        headers: auth,
      },
    );
    expect(tooSoon.status).toBe(409);

    const outsider = await django.createUser({ username: 'outsider', password: 'outsider-password-1' });
    const other = await getJson(status, { headers: { authorization: `Token ${outsider.token}` } });
    expect(other).toEqual({ status: 404, body: { detail: 'Not found.' } });

    let last: { status: string; result_url: string | null } = { status: '', result_url: null };
    await waitFor(
      async () => {
        last = (await getJson(status, { headers: auth })).body as typeof last;
        return last.status === 'finished';
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'the export to finish' },
    );
    expect(last.result_url).toBe(
      `${django.url}/api/tasks/7/dataset/download?rq_id=${encodeURIComponent(rqId)}`,
    );

    const proxied = await getJson(status, {
      headers: { ...auth, 'x-forwarded-host': 'cvat.example.com:8443', 'x-forwarded-proto': 'https' },
    });
    const proxiedUrl = (proxied.body as { result_url: string }).result_url;
    expect(proxiedUrl.startsWith('https://cvat.example.com:8443/api/tasks/7/dataset/download?rq_id=')).toBe(
      true,
    );

    const download = await fetch(last.result_url ?? '', { headers: auth });
    expect(download.status).toBe(200);
    expect(download.headers.get('content-length')).toBe('300001');
    const bytes = new Uint8Array(await download.arrayBuffer());
    expect(bytes.length).toBe(300_001);
    expect(sha256(bytes)).toBe(sha256(pattern(300_001)));

    const anonymous = await fetch(last.result_url ?? '');
    expect(anonymous.status).toBe(401);
  });

  test('an unsafe request with a session needs the CSRF token, as in CVAT', async () => {
    const login = await django.login('user');
    const url = `${django.url}/api/tasks/8/dataset/export?format=COCO+1.0`;
    const refused = await getJson(url, { method: 'POST', headers: { cookie: login.cookie } });
    expect(refused.status).toBe(403);
    expect((refused.body as { detail: string }).detail).toMatch(/^CSRF Failed/);
    const accepted = await getJson(url, { method: 'POST', headers: login.headers });
    expect(accepted.status).toBe(202);
  });

  test('upload counts and hashes what it reads, with a length or chunked', async () => {
    const body = randomBytes(1_048_583);
    const sized = await getJson(`${django.url}/api/stream/upload?chunk=4096`, { method: 'POST', body });
    expect(sized).toEqual({
      status: 200,
      body: { bytes: body.length, sha256: sha256(body), chunked: false },
    });

    const parts = [randomBytes(70_000), randomBytes(1), randomBytes(200_000)];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = parts.shift();
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const all = Buffer.concat([...parts]);
    const chunked = await getJson(`${django.url}/api/stream/upload`, {
      method: 'PUT',
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(chunked).toEqual({ status: 200, body: { bytes: 270_001, sha256: sha256(all), chunked: true } });
  });

  test('download streams N deterministic bytes', async () => {
    const res = await fetch(`${django.url}/api/stream/download?size=1000003&chunk=10000`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe('1000003');
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.length).toBe(1_000_003);
    expect(sha256(bytes)).toBe(sha256(pattern(1_000_003)));

    const chunked = await fetch(`${django.url}/api/stream/download?size=5000&contentLength=0`);
    expect(chunked.headers.get('content-length')).toBeNull();
    expect(chunked.headers.get('transfer-encoding')).toBe('chunked');
    expect((await chunked.arrayBuffer()).byteLength).toBe(5000);

    expect((await getJson(`${django.url}/api/stream/download?size=-1`)).status).toBe(400);
  });

  test('errors are JSON, never HTML', async () => {
    expect(await getJson(`${django.url}/no/such/path`)).toEqual({
      status: 404,
      body: { detail: 'Not found.' },
    });
    const about = await getJson(`${django.url}/api/server/about`);
    expect(about).toMatchObject({ status: 200, body: { name: 'Computer Vision Annotation Tool' } });
    const badJson = await getJson(`${django.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{',
    });
    expect(badJson.status).toBe(400);
  });
});

describe('holding database connections', () => {
  let django: DjangoFixture;
  beforeAll(async () => {
    // The work time is long enough that all five requests are surely in it at once, however
    // slowly a loaded machine lets them arrive.
    django = await startDjango({ workMs: 3000, threads: 8 });
  });
  afterAll(async () => {
    await django?.stop();
  });

  test('every in-flight request holds one connection for the work time, then lets it go', async () => {
    const token = django.user('user').token;
    await django.resetConcurrency();
    const inFlight = Array.from({ length: 5 }, async () => {
      const res = await fetch(`${django.url}/api/users/self`, {
        headers: { authorization: `Token ${token}` },
      });
      await res.arrayBuffer();
      return res.status;
    });
    // Settled here, so a failed assertion below never leaves a request to reject unobserved.
    const settled = Promise.allSettled(inFlight);
    const held = async (): Promise<{ state: string; query: string }[]> =>
      (
        await adminQuery<{ state: string; query: string }>(
          "SELECT state, query FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
          [django.database.name],
        )
      ).rows;
    try {
      // Each request first authenticates (the token query), then runs the view's query and
      // sleeps in Python: the connection sits idle, its last query the view's. Wait until all
      // five are in that sleep at once, then show what was seen.
      let seen: { state: string; query: string }[] = [];
      const working = { state: 'idle', query: 'SELECT 1' };
      await waitFor(
        async () => {
          seen = await held();
          return (
            seen.length === 5 && seen.every((r) => r.state === working.state && r.query === working.query)
          );
        },
        { timeoutMs: 10_000, intervalMs: 20, what: 'five connections idle in the work' },
      ).catch(() => {});
      expect(seen).toEqual(Array(5).fill(working));
      expect((await django.concurrency()).inFlight).toBe(5);

      expect(await Promise.all(inFlight)).toEqual([200, 200, 200, 200, 200]);
      // CONN_MAX_AGE 0: the connection closes with its request.
      await waitFor(async () => (await held()).length === 0, {
        timeoutMs: 10_000,
        what: 'connections to close',
      });
      expect(await django.concurrency()).toEqual({ inFlight: 0, peak: 5 });
    } finally {
      await settled;
    }
  });
});

test("workMode 'pg_sleep' holds the connection active, inside PostgreSQL", async () => {
  await using django = await startDjango({ workMs: 1500, workMode: 'pg_sleep' });
  const user = django.user('user');
  const request = fetch(`${django.url}/api/users/self`, {
    headers: { authorization: `Token ${user.token}` },
  });
  // Settled here, so a failed assertion never leaves the request to reject unobserved.
  const settled = Promise.allSettled([request]);
  try {
    // The request authenticates first (the token query), then sleeps inside PostgreSQL.
    let rows: { state: string; query: string }[] = [];
    await waitFor(
      async () => {
        ({ rows } = await adminQuery<{ state: string; query: string }>(
          'SELECT state, query FROM pg_stat_activity WHERE datname = $1',
          [django.database.name],
        ));
        return rows.length === 1 && rows[0]?.state === 'active' && /pg_sleep/.test(rows[0].query);
      },
      { timeoutMs: 10_000, intervalMs: 20, what: 'the request sleeping in PostgreSQL' },
    ).catch(() => {});
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ state: 'active' });
    expect(rows[0]?.query).toMatch(/pg_sleep/);
    expect((await request).status).toBe(200);
  } finally {
    await settled;
  }
});

describe('connectionLimit', () => {
  test('requests beyond the limit fail with "too many connections"; stop drops the role', async () => {
    const django = await startDjango({
      connectionLimit: 2,
      // Long enough that the two admitted requests surely overlap on a loaded machine.
      workMs: 3000,
      threads: 8,
      debugEndpoints: false,
      users: [{ username: 'bulk', password: 'bulk-password-1' }],
    });
    let stopped = false;
    let settled: Promise<unknown> = Promise.resolve();
    try {
      expect(django.database.user).not.toBe('postgres');
      const token = django.user('bulk').token;
      const requests = Array.from({ length: 6 }, async () => {
        const res = await fetch(`${django.url}/api/users/self`, {
          headers: { authorization: `Token ${token}` },
        });
        return { status: res.status, body: (await res.json()) as { detail?: string } };
      });
      // Settled here, so a failed assertion never leaves a request to reject unobserved.
      settled = Promise.allSettled(requests);
      // While the role's connections are all taken, the public endpoint (no database) still answers.
      await waitFor(
        async () => {
          const { rows } = await adminQuery('SELECT 1 FROM pg_stat_activity WHERE usename = $1', [
            django.database.user,
          ]);
          return rows.length === 2;
        },
        { timeoutMs: 10_000, what: "the role's two connections" },
      );
      expect((await fetch(`${django.url}/api/server/about`)).status).toBe(200);
      const results = await Promise.all(requests);
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 500);
      expect(ok.length).toBeGreaterThanOrEqual(1);
      expect(ok.length).toBeLessThanOrEqual(2);
      expect(ok.length + refused.length).toBe(6);
      for (const r of refused) expect(r.body.detail).toMatch(/too many connections for role/);

      // debugEndpoints off: the control endpoints do not exist
      expect((await fetch(`${django.url}/api/_fixture/concurrency`)).status).toBe(404);
      await expect(django.concurrency()).rejects.toSatisfy(
        (e: unknown) => isDjangoFixtureError(e) && e.code === 'E_DJANGO_DEBUG_DISABLED',
      );

      await django.stop();
      stopped = true;
      await django.stop();
      await expect(django.login('bulk')).rejects.toSatisfy(
        (e: unknown) => isDjangoFixtureError(e) && e.code === 'E_DJANGO_STOPPED',
      );
      const role = await adminQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', [django.database.user]);
      expect(role.rowCount).toBe(0);
      expect(await databaseExists(django.database.name)).toBe(false);
      expect(isAlive(django.pid)).toBe(false);
    } finally {
      await settled;
      if (!stopped) await django.stop();
    }
  });
});

describe('startup and shutdown', () => {
  test('bad options are refused before anything starts', async () => {
    await expect(startDjango({ threads: 0 })).rejects.toThrow(RangeError);
    await expect(startDjango({ threads: 0 })).rejects.toThrow(/threads/);
    await expect(startDjango({ workMode: 'busy' as 'sleep' })).rejects.toThrow(TypeError);
    await expect(startDjango({ users: [{ username: 'a b', password: 'x' }] })).rejects.toThrow(/username/);
  });

  test('a server that cannot start fails with its stderr, and leaves no database behind', async () => {
    const before = await adminQuery<{ datname: string }>('SELECT datname FROM pg_database');
    const error = await startDjango({ env: { SLUICE_FIXTURE_WORK_MODE: 'busy' }, users: [] }).catch(
      (e: unknown) => e,
    );
    expect(isDjangoFixtureError(error) && error.code).toBe('E_DJANGO_START');
    expect(isDjangoFixtureError(error) && error.logs).toMatch(/SLUICE_FIXTURE_WORK_MODE must be/);
    const after = await adminQuery<{ datname: string }>('SELECT datname FROM pg_database');
    const mine = new RegExp(`^sluice_django_${process.pid}_`);
    const leaked = after.rows
      .map((r) => r.datname)
      .filter((n) => mine.test(n) && !before.rows.some((b) => b.datname === n));
    expect(leaked).toEqual([]);
  });

  test('a killed test process does not leave gunicorn running', async () => {
    const here = fileURLToPath(new URL('../src/django.ts', import.meta.url));
    const script = `
      const { startDjango } = await import(${JSON.stringify(here)});
      const d = await startDjango({ users: [] });
      process.stdout.write(JSON.stringify({ pid: d.pid, db: d.database.name }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    try {
      await waitFor(() => out.includes('\n'), { timeoutMs: 60_000, what: "the child's fixture" }).catch(
        (e: unknown) => {
          throw new Error(`${String(e)}; the child's stderr: ${err}`);
        },
      );
      const { pid, db } = JSON.parse(out) as { pid: number; db: string };
      expect(isAlive(pid)).toBe(true);
      child.kill('SIGKILL');
      await waitFor(() => !isAlive(pid), {
        timeoutMs: 10_000,
        what: 'gunicorn to notice its parent is gone',
      });
      await adminQuery(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);
});
