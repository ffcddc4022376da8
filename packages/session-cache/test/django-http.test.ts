import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Credential, extractCredential } from '@sluice/django';
import { createPool, type SluicePool, sharedPool } from '@sluice/pool';
import {
  adminQuery,
  type DjangoFixture,
  deleteKeys,
  sharedRedisUrl,
  startDjango,
  uniquePrefix,
  waitFor,
} from '@sluice/test-support';
import express from 'express';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  compositeValidator,
  createSessionCache,
  djangoDatabaseValidator,
  introspectionValidator,
  isSessionCacheError,
  type SessionCache,
  type SessionCacheMiddleware,
  sessionCache,
  type Validator,
} from '../src/index.ts';
import { countingQueryable } from './helpers.ts';
import { get, many } from './http-client.ts';

let django: DjangoFixture;
let pool: SluicePool;
let counting: ReturnType<typeof countingQueryable>;
const prefix = uniquePrefix('session-cache-http');
const pepper = 'django-http test pepper, 32 bytes';
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  django = await startDjango({ label: 'sc_http' });
  pool = createPool({
    connectionString: django.database.url,
    max: 4,
    applicationName: 'sluice-session-cache-test',
  });
  counting = countingQueryable(pool);
}, 120_000);
afterEach(async () => {
  vi.unstubAllEnvs();
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await deleteKeys(sharedRedisUrl, prefix);
  await pool?.close();
  await django?.stop();
});

/** Counts validate() calls of a real validator. */
function counted(inner: Validator): Validator & { calls: number; hold: (() => Promise<void>) | undefined } {
  const v = {
    kinds: inner.kinds,
    calls: 0,
    hold: undefined as (() => Promise<void>) | undefined,
    async validate(c: Credential, o: { signal: AbortSignal }) {
      v.calls += 1;
      await v.hold?.();
      return inner.validate(c, o);
    },
  };
  return v;
}

async function serve(mw: SessionCacheMiddleware): Promise<{ url: string; agent: http.Agent }> {
  const app = express();
  app.use(mw);
  app.get('/api/whoami', (req, res) => {
    res.json({ id: req.sluice?.identity?.userId ?? null });
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => resolve(s));
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  cleanups.push(async () => {
    agent.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await mw.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, agent };
}

describe('sessionCache() in front of real Django sessions', () => {
  it('1000 concurrent requests with one cold session: the validator runs exactly once', async () => {
    const login = await django.login('user');
    const validator = counted(djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey }));
    const mw = sessionCache({ validator, pepper, env: {}, l2: false, validatorTimeoutMs: 20_000 });
    // hold the one validation until every request has arrived and joined it
    validator.hold = () =>
      waitFor(() => mw.cache.stats().coalesced === 999, { timeoutMs: 20_000, intervalMs: 5 });
    const { url, agent } = await serve(mw);
    const before = counting.count;
    const answers = await Promise.all(
      Array.from({ length: 1000 }, () => get(agent, `${url}/api/whoami`, { cookie: login.cookie })),
    );
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1000);
    expect(new Set(answers.map((a) => a.body))).toEqual(
      new Set([JSON.stringify({ id: django.user('user').id })]),
    );
    expect(validator.calls).toBe(1);
    expect(counting.count - before).toBe(2);
    expect(mw.cache.stats()).toMatchObject({ misses: 1, coalesced: 999, validatorCalls: 1 });
  }, 60_000);

  it('10,000 malformed credentials: all 401, zero database queries, no validator call', async () => {
    const validator = counted(djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey }));
    const mw = sessionCache({ validator, pepper, env: {}, l2: { redis: sharedRedisUrl, prefix } });
    const { url, agent } = await serve(mw);
    const shapes: ((i: number) => Record<string, string>)[] = [
      (i) => ({ cookie: `sessionid=${'A'.repeat(8 + (i % 30))}` }),
      (i) => ({ cookie: `sessionid=abc${i % 5}` }),
      (i) => ({ cookie: `sessionid=${'x'.repeat(41 + (i % 10))}` }),
      (i) => ({ cookie: `sessionid=abcdefgh-${i}` }),
      (i) => ({ authorization: `Token ${'g'.repeat(40)}${i % 3 === 0 ? '' : 'z'}` }),
      (i) => ({ authorization: `Token ${(i * 7919).toString(16)}` }),
      () => ({ authorization: 'Basic %%%not-base64%%%' }),
      (i) => ({ authorization: `Basic ${Buffer.from(`:no-username-${i}`).toString('base64')}` }),
    ];
    const headersFor = (i: number) => (shapes[i % shapes.length] as (i: number) => Record<string, string>)(i);
    // every one of them is malformed as Sluice reads it
    for (let i = 0; i < 10_000; i += 1) {
      expect(extractCredential(headersFor(i))?.kind, JSON.stringify(headersFor(i))).toBe('malformed');
    }
    const before = counting.count;
    const statuses = await many(
      10_000,
      64,
      async (i) => (await get(agent, `${url}/api/whoami`, headersFor(i))).status,
    );
    expect(statuses.every((s) => s === 401)).toBe(true);
    expect(counting.count - before).toBe(0);
    expect(validator.calls).toBe(0);
    expect(mw.stats().malformed).toBe(10_000);
    expect(mw.cache.stats()).toMatchObject({ misses: 0, l2Hits: 0, l2Errors: 0 });
  }, 60_000);

  it('works with no arguments from the environment (DATABASE_URL, DJANGO_SECRET_KEY)', async () => {
    vi.stubEnv('DATABASE_URL', django.database.url);
    vi.stubEnv('DJANGO_SECRET_KEY', django.secretKey);
    vi.stubEnv('REDIS_URL', '');
    vi.stubEnv('SLUICE_INTROSPECTION_URL', '');
    // The application's own shared pool for the same database, of another size: the cache's pool
    // is its own, so there is nothing to match.
    const mine = sharedPool({ connectionString: django.database.url, max: 2 });
    cleanups.push(() => mine.close());
    const mw = sessionCache();
    const { url, agent } = await serve(mw);
    const login = await django.login('staff');
    const ok = await get(agent, `${url}/api/whoami`, { cookie: login.cookie });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ id: django.user('staff').id });
    const tok = await get(agent, `${url}/api/whoami`, { authorization: `Token ${login.token}` });
    expect(tok.status).toBe(200);
    expect(mw.cache.l2State).toBe('disabled');
    const refused = await get(agent, `${url}/api/whoami`, { authorization: 'Bearer abc' });
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body).code).toBe('E_UNAUTHENTICATED');
  });

  it('an expired session cookie with valid Basic credentials is the Basic user; a Token beats any cookie (as Django)', async () => {
    const database = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const remote = introspectionValidator({ url: `${django.url}/api/users/self`, timeoutMs: 10_000 });
    const validator = compositeValidator({
      session: database,
      token: database,
      bearer: remote,
      basic: remote,
    });
    const { url, agent } = await serve(sessionCache({ validator, pepper, env: {}, l2: false }));
    const user = django.user('user');
    const staff = await django.login('staff');
    await pool.query(
      "UPDATE django_session SET expire_date = now() - interval '1 second' WHERE session_key = $1",
      [staff.sessionId],
    );
    const cases: [Record<string, string>, number | null][] = [
      // the expired session: DRF's SessionAuthentication returns nothing, BasicAuthentication answers
      [
        {
          cookie: staff.cookie,
          authorization: `Basic ${Buffer.from(`user:${user.password}`).toString('base64')}`,
        },
        user.id,
      ],
      // a Token and another user's valid session: TokenAuthentication comes first
      [
        {
          cookie: (await django.login('staff')).cookie,
          authorization: `Token ${(await django.login('user')).token}`,
        },
        user.id,
      ],
      // the expired session with wrong Basic credentials: refused by both
      [
        { cookie: staff.cookie, authorization: `Basic ${Buffer.from('user:wrong').toString('base64')}` },
        null,
      ],
    ];
    for (const [headers, expected] of cases) {
      const ours = await get(agent, `${url}/api/whoami`, headers);
      const djangos = await fetch(`${django.url}/api/users/self`, { headers });
      expect(ours.status, JSON.stringify(headers)).toBe(expected === null ? 401 : 200);
      expect(djangos.status, JSON.stringify(headers)).toBe(expected === null ? 401 : 200);
      if (expected !== null) {
        expect(JSON.parse(ours.body)).toEqual({ id: expected });
        expect(((await djangos.json()) as { id: number }).id).toBe(expected);
      }
    }
  });

  it('a validation that timed out while queued for a pool connection never runs its query', async () => {
    const applicationName = `sc-abort-${process.pid}`;
    const small = createPool({ connectionString: django.database.url, max: 1, applicationName });
    cleanups.push(() => small.close());
    const queries = countingQueryable(small);
    const cache = createSessionCache({
      validator: djangoDatabaseValidator({ pool: queries, secretKey: django.secretKey }),
      pepper,
      env: {},
      l2: false,
      validatorTimeoutMs: 300,
    });
    cleanups.push(() => cache.close());
    const login = await django.login('user');
    const held = await small.connect(); // the pool's only connection
    try {
      await held.query("SELECT 'held by the test'");
      const error = await cache
        .lookup({ kind: 'session', sessionKey: login.sessionId })
        .catch((e: unknown) => e);
      expect(isSessionCacheError(error, 'E_VALIDATOR_TIMEOUT')).toBe(true);
      expect(queries.count).toBe(1); // asked the pool, which queued it
      expect(small.stats().waiting).toBe(0); // and dropped it when the signal aborted
    } finally {
      held.release();
    }
    await new Promise((r) => setTimeout(r, 200)); // time for a query that was still queued to run
    expect(queries.ran).toBe(0);
    // what the server saw on the pool's one connection: the test's query, never the session lookup
    const { rows } = await adminQuery<{ query: string }>(
      'SELECT query FROM pg_stat_activity WHERE application_name = $1',
      [applicationName],
    );
    expect(rows.map((r) => r.query)).toEqual(["SELECT 'held by the test'"]);
    // the pool is free again: the next lookup validates for real
    expect(await cache.lookup({ kind: 'session', sessionKey: login.sessionId })).toMatchObject({
      status: 'valid',
    });
    expect(queries.ran).toBe(2);
  });

  it("after Django's logout: rejected once invalidated, or once the TTL passes", async () => {
    let now = Date.now();
    const validator = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const cache = createSessionCache({
      validator,
      pepper,
      env: {},
      l2: false,
      ttlMs: 30_000,
      l1: { ttlMs: 30_000 },
      now: () => now,
    });
    cleanups.push(() => cache.close());
    const { url, agent } = await serve(sessionCache({ cache }));
    const a = await django.login('user');
    const b = await django.login('user');
    for (const l of [a, b])
      expect((await get(agent, `${url}/api/whoami`, { cookie: l.cookie })).status).toBe(200);
    for (const l of [a, b]) {
      const out = await fetch(`${django.url}/api/auth/logout`, { method: 'POST', headers: l.headers });
      expect(out.status).toBe(200);
    }
    // a: the application invalidates on logout -> rejected at once
    await cache.invalidate({ kind: 'session', sessionKey: a.sessionId });
    expect((await get(agent, `${url}/api/whoami`, { cookie: a.cookie })).status).toBe(401);
    // b: nobody told the cache -> still served from the cache until the TTL passes
    expect((await get(agent, `${url}/api/whoami`, { cookie: b.cookie })).status).toBe(200);
    now += 30_000;
    expect((await get(agent, `${url}/api/whoami`, { cookie: b.cookie })).status).toBe(401);
  });

  it('two instances share Redis: an L2 hit for the other, and invalidate() on one rejects on the other within 100 ms', async () => {
    const va = counted(djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey }));
    const vb = counted(djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey }));
    // A generous command timeout: a loaded machine must not turn a slow answer into an L2 miss.
    const l2 = { redis: sharedRedisUrl, prefix, timeoutMs: 2000 };
    const a: SessionCache = createSessionCache({ validator: va, pepper, env: {}, l2 });
    const b: SessionCache = createSessionCache({ validator: vb, pepper, env: {}, l2 });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await waitFor(() => [a, b].every((c) => c.l2State === 'up' && c.busState === 'subscribed'), {
      intervalMs: 5,
    });
    const A = await serve(sessionCache({ cache: a }));
    const B = await serve(sessionCache({ cache: b }));
    const login = await django.login('staff');
    expect((await get(A.agent, `${A.url}/api/whoami`, { cookie: login.cookie })).status).toBe(200);
    expect(
      (await get(B.agent, `${B.url}/api/whoami`, { authorization: `Token ${login.token}` })).status,
    ).toBe(200);
    expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: login.cookie })).status).toBe(200);
    expect(vb.calls).toBe(1); // the token only: the session was an L2 hit
    expect(b.stats().l2Hits).toBe(1);
    expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: login.cookie })).status).toBe(200); // now from B's L1

    // Pub/sub delivers in a few ms; a TTL or a poll would miss every try. Timed on a shared,
    // loaded machine, so the best of three logouts must be within 100 ms, and each must arrive.
    const delays: number[] = [];
    for (const l of [login, await django.login('staff'), await django.login('staff')]) {
      if (l !== login) {
        expect((await get(A.agent, `${A.url}/api/whoami`, { cookie: l.cookie })).status).toBe(200);
        expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: l.cookie })).status).toBe(200);
      }
      const out = await fetch(`${django.url}/api/auth/logout`, { method: 'POST', headers: l.headers });
      expect(out.status).toBe(200);
      let off = () => {};
      const heard = new Promise<number>((resolve) => {
        off = b.on('invalidate', (e) => e.origin === 'remote' && resolve(performance.now()));
      });
      const started = performance.now();
      await a.invalidate({ kind: 'session', sessionKey: l.sessionId });
      delays.push((await heard) - started);
      off();
      expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: l.cookie })).status).toBe(401);
    }
    expect(Math.min(...delays)).toBeLessThan(100);
  });

  it("a password change: invalidateUser() on one instance makes the other refuse the user's old sessions at once", async () => {
    const l2 = { redis: sharedRedisUrl, prefix, timeoutMs: 2000 };
    const make = () =>
      createSessionCache({
        validator: djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey }),
        pepper,
        env: {},
        l2,
        ttlMs: 60_000,
        l1: { ttlMs: 60_000 },
      });
    const a = make();
    const b = make();
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await waitFor(() => [a, b].every((c) => c.l2State === 'up' && c.busState === 'subscribed'), {
      intervalMs: 5,
    });
    const B = await serve(sessionCache({ cache: b }));
    const changer = await django.createUser({ username: 'pw-changer', password: 'first-password-1' });
    const sessions = [await django.login('pw-changer'), await django.login('pw-changer')];
    const token = sessions[1]?.token ?? '';
    for (const l of sessions)
      expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: l.cookie })).status).toBe(200);
    expect((await get(B.agent, `${B.url}/api/whoami`, { authorization: `Token ${token}` })).status).toBe(200);
    await django.setPassword('pw-changer', 'second-password-2');
    // cached: still answered from B's L1 although Django would refuse the sessions now
    expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: sessions[0]?.cookie ?? '' })).status).toBe(
      200,
    );
    const heard = new Promise<void>((resolve) =>
      b.on('invalidate:user', (e) => e.origin === 'remote' && resolve()),
    );
    const result = await a.invalidateUser(changer.id);
    expect(result).toMatchObject({ userId: changer.id, propagated: true });
    expect(result.evicted).toBe(3); // two sessions and the token, found through the user's set in Redis
    await heard;
    for (const l of sessions)
      expect((await get(B.agent, `${B.url}/api/whoami`, { cookie: l.cookie })).status).toBe(401);
    // tokens survive a password change in Django: revalidated, still valid
    expect((await get(B.agent, `${B.url}/api/whoami`, { authorization: `Token ${token}` })).status).toBe(200);
  });
});
