import express, { type Express } from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createSessionCache,
  isSessionCacheError,
  type SessionCache,
  type SessionCacheMiddleware,
  type SessionCacheMiddlewareOptions,
  sessionCache,
} from '../src/index.ts';
import { drfToken, identityFor, sessionKey, TableValidator } from './helpers.ts';

const pepper = 'middleware test pepper, 32 bytes!';
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

function app(
  validator: TableValidator,
  options: SessionCacheMiddlewareOptions = {},
): { app: Express; mw: SessionCacheMiddleware } {
  const mw = sessionCache({ validator, pepper, env: {}, l2: false, ...options });
  closers.push(() => mw.close());
  const a = express();
  a.use(mw);
  a.get('/{*path}', (req, res) => {
    // typed through declaration merging: no casts
    const identity = req.sluice?.identity;
    res.json({ identity: identity ?? null, reason: req.sluice?.unauthenticatedReason ?? null });
  });
  return { app: a, mw };
}

const alice = sessionKey(1);
const aliceToken = drfToken(1);

describe('sessionCache() middleware', () => {
  it('sets req.sluice.identity for a valid session cookie or token', async () => {
    const v = new TableValidator()
      .add(alice, identityFor(1, 'session'))
      .add(aliceToken, identityFor(1, 'token'));
    const { app: a, mw } = app(v);
    const r1 = await request(a).get('/x').set('cookie', `sessionid=${alice}`);
    expect(r1.status).toBe(200);
    expect(r1.body.identity).toMatchObject({ userId: 1, username: 'user1', credentialKind: 'session' });
    const r2 = await request(a).get('/x').set('authorization', `Token ${aliceToken}`);
    expect(r2.body.identity).toMatchObject({ userId: 1, credentialKind: 'token' });
    await request(a).get('/x').set('cookie', `sessionid=${alice}`);
    expect(v.calls).toBe(2);
    expect(mw.stats()).toMatchObject({ authenticated: 3, unauthenticated: 0 });
    expect(mw.cache.stats().l1Hits).toBe(1);
  });

  it('answers 401 JSON E_UNAUTHENTICATED without a credential or with an invalid one', async () => {
    const { app: a } = app(new TableValidator());
    const none = await request(a).get('/x');
    expect(none.status).toBe(401);
    expect(none.headers['content-type']).toMatch(/application\/json/);
    expect(none.headers['cache-control']).toBe('no-store');
    expect(none.body).toEqual({
      code: 'E_UNAUTHENTICATED',
      message: 'Authentication credentials were not provided.',
    });
    const bad = await request(a)
      .get('/x')
      .set('cookie', `sessionid=${sessionKey(99)}`);
    expect(bad.status).toBe(401);
    expect(bad.body).toEqual({ code: 'E_UNAUTHENTICATED', message: 'Invalid credentials.' });
    expect(JSON.stringify(bad.body)).not.toContain(sessionKey(99));
  });

  it('answers 503 JSON with Retry-After when the validator fails', async () => {
    const v = new TableValidator();
    v.fail = new Error('connection refused');
    const { app: a } = app(v, { retryAfterSeconds: 7 });
    const r = await request(a).get('/x').set('cookie', `sessionid=${alice}`);
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('7');
    expect(r.body.code).toBe('E_VALIDATOR_UNAVAILABLE');
    expect(r.body.message).not.toContain('connection refused');
  });

  it("onUnauthenticated: 'next' and onValidatorError: 'next' continue with identity null", async () => {
    const v = new TableValidator();
    const { app: a } = app(v, { onUnauthenticated: 'next', onValidatorError: 'next' });
    expect((await request(a).get('/x')).body).toEqual({ identity: null, reason: 'no-credential' });
    expect(
      (
        await request(a)
          .get('/x')
          .set('cookie', `sessionid=${sessionKey(2)}`)
      ).body,
    ).toEqual({
      identity: null,
      reason: 'not-found',
    });
    v.fail = new Error('down');
    expect(
      (
        await request(a)
          .get('/x')
          .set('cookie', `sessionid=${sessionKey(3)}`)
      ).body,
    ).toEqual({
      identity: null,
      reason: 'validator-error',
    });
  });

  it("lets public paths through without looking at credentials (the kit's path syntax)", async () => {
    const v = new TableValidator();
    const { app: a, mw } = app(v, {
      publicPaths: ['/healthz', '/static/', '/api/assets/*/public', /^\/api\/server\/about$/g],
    });
    const open = [
      '/healthz',
      '/healthz/',
      '/healthz/deep',
      '/static/app.js',
      '/api/assets/9f/public',
      '/api/server/about',
    ];
    for (const path of [...open, '/api/server/about']) {
      const r = await request(a)
        .get(path)
        .set('cookie', `sessionid=${sessionKey(4)}`);
      expect(r.status, path).toBe(200);
    }
    for (const path of ['/healthzx', '/static', '/api/assets/9f/private', '/api/assets/a/b/public']) {
      expect((await request(a).get(path)).status, path).toBe(401);
    }
    expect(v.calls).toBe(0);
    expect(mw.stats().publicPaths).toBe(open.length + 1);
  });

  it('tries Basic after a refused session, as DRF does; Token stands alone; a refused Basic is a 401', async () => {
    const basic = (user: string, password: string) =>
      `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    const v = new TableValidator()
      .add(alice, identityFor(1, 'session'))
      .add(aliceToken, identityFor(1, 'token'))
      .add('bob-password', { ...identityFor(2, 'basic'), username: 'bob' });
    const { app: a, mw } = app(v);
    const expired = sessionKey(50);
    // an unknown session, then Basic: the Basic user, twice (the second time both answers come from L1)
    for (let i = 0; i < 2; i += 1) {
      const r = await request(a)
        .get('/x')
        .set('cookie', `sessionid=${expired}`)
        .set('authorization', basic('bob', 'bob-password'));
      expect(r.status).toBe(200);
      expect(r.body.identity).toMatchObject({ userId: 2, credentialKind: 'basic' });
    }
    expect(v.calls).toBe(2);
    // a valid session wins over Basic, which is then never looked at
    const both = await request(a)
      .get('/x')
      .set('cookie', `sessionid=${alice}`)
      .set('authorization', basic('bob', 'x'));
    expect(both.body.identity).toMatchObject({ userId: 1, credentialKind: 'session' });
    // a Token wins over any cookie; a refused Token does not fall through to the session
    const token = await request(a)
      .get('/x')
      .set('cookie', `sessionid=${expired}`)
      .set('authorization', `Token ${aliceToken}`);
    expect(token.body.identity).toMatchObject({ userId: 1, credentialKind: 'token' });
    const badToken = await request(a)
      .get('/x')
      .set('cookie', `sessionid=${alice}`)
      .set('authorization', `Token ${drfToken(9)}`);
    expect(badToken.status).toBe(401);
    // a refused session followed by refused or malformed Basic: 401
    expect(
      (
        await request(a)
          .get('/x')
          .set('cookie', `sessionid=${expired}`)
          .set('authorization', basic('bob', 'no'))
      ).status,
    ).toBe(401);
    expect(
      (await request(a).get('/x').set('cookie', `sessionid=${expired}`).set('authorization', 'Basic !!!!'))
        .status,
    ).toBe(401);
    expect(mw.stats()).toMatchObject({
      sessionFallbacks: 4,
      authenticated: 4,
      unauthenticated: 3,
      malformed: 1,
    });
  });

  it('never runs twice on one request', async () => {
    const v = new TableValidator().add(alice, identityFor(1));
    const mw = sessionCache({ validator: v, pepper, env: {}, l2: false });
    closers.push(() => mw.close());
    const a = express();
    a.use(mw);
    a.use(mw);
    a.use('/nested', mw);
    a.get('/{*path}', (_req, res) => res.send('ok'));
    await request(a).get('/nested/x').set('cookie', `sessionid=${alice}`).expect(200);
    expect(mw.stats().authenticated).toBe(1);
    expect(mw.cache.stats().misses + mw.cache.stats().l1Hits).toBe(1);
  });

  it('refuses malformed credentials before any I/O', async () => {
    const v = new TableValidator();
    const { app: a, mw } = app(v);
    const malformed: [string, string][] = [
      ['cookie', 'sessionid=NOT*A*SESSION*KEY'],
      ['cookie', 'sessionid=short'],
      ['authorization', 'Token not-hex'],
      ['authorization', 'Basic !!!not-base64!!!'],
    ];
    for (const [name, value] of malformed) {
      const r = await request(a).get('/x').set(name, value);
      expect(r.status, value).toBe(401);
    }
    expect(v.calls).toBe(0);
    expect(mw.stats().malformed).toBe(malformed.length);
    expect(mw.cache.stats()).toMatchObject({ misses: 0, l1Hits: 0, validatorCalls: 0 });
  });

  it('refuses credential kinds the validator does not handle without calling it', async () => {
    const v = new TableValidator();
    Object.assign(v, { kinds: ['session'] });
    const { app: a } = app(v);
    expect((await request(a).get('/x').set('authorization', 'Bearer abc.def.ghi')).status).toBe(401);
    expect(v.calls).toBe(0);
  });

  it('reads a custom session cookie name', async () => {
    const v = new TableValidator().add(alice, identityFor(1));
    const { app: a } = app(v, { cookieName: 'cvat_sid' });
    expect((await request(a).get('/x').set('cookie', `cvat_sid=${alice}`)).status).toBe(200);
    expect((await request(a).get('/x').set('cookie', `sessionid=${alice}`)).status).toBe(401);
  });

  it('shares a cache built with createSessionCache(); invalidateRequest() evicts what a request carried', async () => {
    const v = new TableValidator().add(alice, identityFor(1));
    const cache: SessionCache = createSessionCache({ validator: v, pepper, env: {}, l2: false });
    closers.push(() => cache.close());
    const mw = sessionCache({ cache });
    const a = express();
    a.use(mw);
    a.get('/upstream-401', async (req, res) => {
      // what the gateway does when the upstream answers 401 for a credential the cache accepted
      const result = await cache.invalidateRequest(req);
      res.status(401).json({ evicted: result?.keyId ?? null });
    });
    a.get('/{*path}', (_req, res) => res.send('ok'));
    await request(a).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    await request(a).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    expect(v.calls).toBe(1);
    const evicted = await request(a).get('/upstream-401').set('cookie', `sessionid=${alice}`);
    expect(evicted.body.evicted).toBe(cache.keyOf({ kind: 'session', sessionKey: alice }).slice(0, 12));
    v.valid.delete(alice);
    await request(a).get('/x').set('cookie', `sessionid=${alice}`).expect(401);
    expect(v.calls).toBe(2);
    expect(await cache.invalidateRequest({})).toBeUndefined();
    await mw.close();
    expect(cache.closed).toBe(false);
  });

  it('answers 503 after its cache is closed', async () => {
    const v = new TableValidator().add(alice, identityFor(1));
    const { app: a, mw } = app(v);
    await mw.close();
    await mw.close();
    const r = await request(a).get('/x').set('cookie', `sessionid=${alice}`);
    expect(r.status).toBe(503);
    expect(r.body.code).toBe('E_CLOSED');
  });

  it('validates its options at construction', () => {
    const v = new TableValidator();
    const base = { validator: v, pepper, env: {}, l2: false as const };
    expect(() => sessionCache({ ...base, onUnauthenticated: 'ignore' as never })).toThrow(
      /options.onUnauthenticated/,
    );
    expect(() => sessionCache({ ...base, onValidatorError: 'x' as never })).toThrow(
      /options.onValidatorError/,
    );
    expect(() => sessionCache({ ...base, publicPaths: ['healthz'] })).toThrow(/options.publicPaths\[0\]/);
    expect(() => sessionCache({ ...base, publicPaths: ['/a/../b'] })).toThrow(/options.publicPaths\[0\]/);
    expect(() => sessionCache({ ...base, publicPaths: '/x' as never })).toThrow(
      /options.publicPaths should be an array/,
    );
    expect(() => sessionCache({ ...base, cookieName: 'a;b' })).toThrow(/options.cookieName/);
    expect(() => sessionCache({ ...base, retryAfterSeconds: 0 })).toThrow(RangeError);
    expect(() => sessionCache({ ...base, maxHeaderBytes: -1 })).toThrow(/options.maxHeaderBytes/);
    const cache = createSessionCache(base);
    closers.push(() => cache.close());
    expect(() => sessionCache({ cache, validator: v })).toThrow(
      /options.validator cannot be combined with options.cache/,
    );
    expect(() => sessionCache({ cache: {} as never })).toThrow(/options.cache/);
    let error: unknown;
    try {
      sessionCache({ env: {} });
    } catch (e) {
      error = e;
    }
    expect(isSessionCacheError(error, 'E_CONFIGURATION')).toBe(true);
    expect((error as Error).message).toMatch(/DATABASE_URL.*SLUICE_INTROSPECTION_URL/s);
  });

  it('is a named function', () => {
    const { mw } = app(new TableValidator());
    expect(mw.name).toBe('sessionCache');
  });
});
