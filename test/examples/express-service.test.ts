import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createService, type Service } from '../../examples/express-service/src/service.ts';
import { adminQuery, type DjangoFixture, type DjangoLogin, startDjango } from '../support/src/index.ts';

// The example service against the real Django fixture: real sessions and tokens, real tables.
describe('examples/express-service beside Django', () => {
  let django: DjangoFixture;
  let service: Service;
  let login: DjangoLogin;

  beforeAll(async () => {
    django = await startDjango({ label: 'ex_express' });
    service = createService({
      DATABASE_URL: django.database.url,
      SLUICE_POOL_MAX: '3',
      DJANGO_SECRET_KEY: django.secretKey,
    });
    login = await django.login('user');
  });
  afterAll(async () => {
    await service?.close();
    await django?.stop();
  });

  it('serves /healthz without a credential and refuses /api without one', async () => {
    await request(service.app).get('/healthz').expect(200, { ok: true });
    const res = await request(service.app).get('/api/me').expect(401);
    expect(res.body.code).toBe('E_UNAUTHENTICATED');
  });

  it('authenticates a Django session cookie, then serves it from the cache', async () => {
    const before = service.auth.cache.stats().validatorCalls;
    for (let i = 0; i < 5; i += 1) {
      const res = await request(service.app).get('/api/me').set('cookie', login.cookie).expect(200);
      expect(res.body).toMatchObject({ username: 'user', credentialKind: 'session', isStaff: false });
    }
    expect(service.auth.cache.stats().validatorCalls - before).toBe(1);
  });

  it('authenticates a DRF token and answers a query through the shared pool', async () => {
    const token = django.user('user').token;
    const acquiredBefore = service.pool.stats().acquired;
    const res = await request(service.app)
      .get('/api/profile')
      .set('authorization', `Token ${token}`)
      .expect(200);
    expect(res.body).toMatchObject({ username: 'user', email: 'user@example.com' });
    // One validation of the token plus the profile query, both on the one shared pool.
    expect(service.pool.stats().acquired - acquiredBefore).toBe(2);
  });

  it('refuses a wrong token and, before any query, a malformed one', async () => {
    await request(service.app)
      .get('/api/me')
      .set('authorization', `Token ${'0'.repeat(40)}`)
      .expect(401);
    const calls = service.auth.cache.stats().validatorCalls;
    await request(service.app).get('/api/me').set('authorization', 'Token not-a-token!').expect(401);
    await request(service.app).get('/api/me').set('cookie', 'sessionid=%%%').expect(401);
    expect(service.auth.cache.stats().validatorCalls).toBe(calls);
  });

  it('shows its counters to staff only', async () => {
    await request(service.app).get('/api/sluice/stats').set('cookie', login.cookie).expect(403);
    const staff = django.user('staff').token;
    const res = await request(service.app)
      .get('/api/sluice/stats')
      .set('authorization', `Token ${staff}`)
      .expect(200);
    expect(res.body.pool.max).toBe(3);
    expect(res.body.cache.validatorCalls).toBeGreaterThan(0);
    expect(res.body.middleware.authenticated).toBeGreaterThan(0);
  });

  it('holds at most SLUICE_POOL_MAX connections under concurrent load', async () => {
    const token = django.user('user').token;
    const responses = await Promise.all(
      Array.from({ length: 40 }, () =>
        request(service.app).get('/api/profile').set('authorization', `Token ${token}`),
      ),
    );
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const { rows } = await adminQuery<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'sluice'",
      [django.database.name],
    );
    expect(rows[0]?.n ?? 0).toBeLessThanOrEqual(3);
    expect(service.pool.stats().total).toBeLessThanOrEqual(3);
  });
});
