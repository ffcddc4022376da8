import { deleteKeys, sharedRedisUrl, uniquePrefix, waitFor } from '@sluice/test-support';
import express, { type Express } from 'express';
import request from 'supertest';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type CacheOutcome,
  createSessionCache,
  type SessionCache,
  type SessionCacheMiddlewareOptions,
  sessionCache,
} from '../src/index.ts';
import { drfToken, identityFor, sessionKey, TableValidator } from './helpers.ts';

const pepper = 'cache outcome test pepper, 32 byte';
const prefix = uniquePrefix('session-cache-outcome');
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});
afterAll(async () => {
  await deleteKeys(sharedRedisUrl, prefix);
});

/**
 * An app that records `req.sluice.cache` when each response finishes, so answers the middleware
 * gives itself (401, 503) are seen too.
 */
function recordingApp(options: SessionCacheMiddlewareOptions): {
  app: Express;
  outcomes: (CacheOutcome | undefined)[];
  cache: SessionCache;
} {
  const outcomes: (CacheOutcome | undefined)[] = [];
  const mw = sessionCache({ env: {}, ...options });
  closers.push(() => mw.close());
  const app = express();
  app.use((req, res, next) => {
    res.on('finish', () => outcomes.push(req.sluice?.cache));
    next();
  });
  app.use(mw);
  app.get('/{*path}', (_req, res) => res.send('ok'));
  return { app, outcomes, cache: mw.cache };
}

const alice = sessionKey(1);
const aliceToken = drfToken(1);

describe('req.sluice.cache', () => {
  it('records the tier that answered: validator, then l1; a key id, never the credential', async () => {
    const v = new TableValidator().add(alice, identityFor(1)).add(aliceToken, identityFor(1, 'token'));
    const { app, outcomes, cache } = recordingApp({ validator: v, pepper, l2: false });
    await request(app).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    await request(app).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    await request(app).get('/x').set('authorization', `Token ${aliceToken}`).expect(200);
    const id = cache.keyOf({ kind: 'session', sessionKey: alice }).slice(0, 12);
    expect(outcomes).toEqual([
      { tier: 'validator', status: 'valid', reason: undefined, kind: 'session', keyId: id },
      { tier: 'l1', status: 'valid', reason: undefined, kind: 'session', keyId: id },
      { tier: 'validator', status: 'valid', reason: undefined, kind: 'token', keyId: expect.any(String) },
    ]);
    const text = JSON.stringify(outcomes);
    expect(text).not.toContain(alice);
    expect(text).not.toContain(aliceToken);
    expect(text).not.toContain(cache.keyOf({ kind: 'session', sessionKey: alice }));
  });

  it('records refusals: negative entries by tier, and credentials refused before any lookup', async () => {
    const v = new TableValidator();
    Object.assign(v, { kinds: ['session', 'token'] });
    const { app, outcomes } = recordingApp({ validator: v, pepper, l2: false, publicPaths: ['/open'] });
    const stranger = sessionKey(99);
    await request(app).get('/x').set('cookie', `sessionid=${stranger}`).expect(401);
    await request(app).get('/x').set('cookie', `sessionid=${stranger}`).expect(401);
    await request(app).get('/x').expect(401);
    await request(app).get('/x').set('cookie', 'sessionid=short').expect(401);
    await request(app).get('/x').set('authorization', 'Bearer abc.def.ghi').expect(401);
    await request(app).get('/open').set('cookie', `sessionid=${stranger}`).expect(200);
    expect(outcomes.map((o) => o && [o.tier, o.status, o.reason, o.kind])).toEqual([
      ['validator', 'invalid', 'not-found', 'session'],
      ['l1', 'invalid', 'not-found', 'session'],
      ['none', 'invalid', 'no-credential', undefined],
      ['none', 'invalid', 'malformed', undefined],
      ['none', 'invalid', 'unsupported-credential', 'bearer'],
      ['none', 'public', undefined, undefined],
    ]);
    expect(outcomes[0]?.keyId).toHaveLength(12);
    expect(outcomes[2]?.keyId).toBeUndefined();
    expect(v.calls).toBe(1);
  });

  it('records errors with their code, whether the middleware answers 503 or lets the request through', async () => {
    const v = new TableValidator().add(alice, identityFor(1));
    v.fail = new Error('connection refused');
    const rejecting = recordingApp({ validator: v, pepper, l2: false });
    await request(rejecting.app).get('/x').set('cookie', `sessionid=${alice}`).expect(503);
    const lenient = recordingApp({ validator: v, pepper, l2: false, onValidatorError: 'next' });
    await request(lenient.app).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    for (const outcomes of [rejecting.outcomes, lenient.outcomes]) {
      expect(outcomes).toEqual([
        {
          tier: 'validator',
          status: 'error',
          reason: 'E_VALIDATOR_UNAVAILABLE',
          kind: 'session',
          keyId: expect.any(String),
        },
      ]);
    }
    await rejecting.cache.close();
    await request(rejecting.app).get('/x').set('cookie', `sessionid=${alice}`).expect(503);
    expect(rejecting.outcomes[1]).toMatchObject({ tier: 'none', status: 'error', reason: 'E_CLOSED' });
  });

  it("records 'l2' when another instance's answer is read from Redis", async () => {
    const v = new TableValidator().add(alice, identityFor(1));
    const l2 = { redis: sharedRedisUrl, prefix };
    const caches = [0, 1].map(() => createSessionCache({ validator: v, pepper, env: {}, l2 }));
    for (const c of caches) closers.push(() => c.close());
    for (const c of caches) await waitFor(() => c.l2State === 'up', { what: 'L2 up', intervalMs: 5 });
    const [a, b] = caches.map((cache) => recordingApp({ cache }));
    if (!a || !b) throw new Error('two apps expected');
    await request(a.app).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    await request(b.app).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    await request(b.app).get('/x').set('cookie', `sessionid=${alice}`).expect(200);
    expect([...a.outcomes, ...b.outcomes].map((o) => o?.tier)).toEqual(['validator', 'l2', 'l1']);
    expect(v.calls).toBe(1);
  });
});
