import { createPool, type SluicePool } from '@sluice/pool';
import { adminQuery, type DjangoFixture, startDjango } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSessionCache,
  djangoDatabaseValidator,
  introspectionValidator,
  type Validator,
} from '../src/index.ts';
import { countingQueryable } from './helpers.ts';

// Sessions and tokens here are made by logging in to the real Django fixture; the validators
// read the fixture's own tables.
let django: DjangoFixture;
let pool: SluicePool;
let counting: ReturnType<typeof countingQueryable>;

beforeAll(async () => {
  django = await startDjango({ label: 'sc_validators' });
  pool = createPool({
    connectionString: django.database.url,
    max: 4,
    applicationName: 'sluice-session-cache-test',
  });
  counting = countingQueryable(pool);
}, 120_000);
afterAll(async () => {
  await pool?.close();
  await django?.stop();
});

const signal = () => new AbortController().signal;
const session = (sessionKey: string) => ({ kind: 'session' as const, sessionKey });
const token = (t: string) => ({ kind: 'token' as const, token: t });

async function dbQuery(sql: string, params: unknown[]): Promise<void> {
  await pool.query(sql, params);
}

describe('djangoDatabaseValidator against the real fixture', () => {
  it('validates a real session (signature and auth hash verified) and a real DRF token', async () => {
    const v = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const login = await django.login('staff');
    const user = django.user('staff');
    const before = counting.count;
    const s = await v.validate(session(login.sessionId), { signal: signal() });
    expect(s).toMatchObject({
      valid: true,
      identity: {
        userId: user.id,
        username: 'staff',
        isActive: true,
        isStaff: true,
        isSuperuser: false,
        credentialKind: 'session',
      },
    });
    expect(counting.count - before).toBe(2);
    // SESSION_COOKIE_AGE defaults to two weeks
    const expiresAt = s.valid ? (s.identity.expiresAt ?? 0) : 0;
    expect(Math.abs(expiresAt - (Date.now() + 1_209_600_000))).toBeLessThan(120_000);
    const t = await v.validate(token(login.token), { signal: signal() });
    expect(t).toMatchObject({
      valid: true,
      identity: { userId: user.id, credentialKind: 'token', expiresAt: null },
    });
    expect(counting.count - before).toBe(3);
  });

  it('reads sessions unverified without a secret key, and refuses them under a wrong one', async () => {
    const login = await django.login('user');
    const unverified = djangoDatabaseValidator({ pool: counting });
    expect(await unverified.validate(session(login.sessionId), { signal: signal() })).toMatchObject({
      valid: true,
    });
    const wrong = djangoDatabaseValidator({ pool: counting, secretKey: 'not-the-secret-key-at-all' });
    expect(await wrong.validate(session(login.sessionId), { signal: signal() })).toEqual({
      valid: false,
      reason: 'session-bad-signature',
    });
    const fallback = djangoDatabaseValidator({
      pool: counting,
      secretKey: 'a-rotated-new-secret-key',
      fallbackKeys: [django.secretKey],
      verifyAuthHash: true,
    });
    expect(await fallback.validate(session(login.sessionId), { signal: signal() })).toMatchObject({
      valid: true,
    });
  });

  it('rejects sessions after logout, unknown tokens and sessions, without querying for malformed ones', async () => {
    const v = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const login = await django.login('user');
    const res = await fetch(`${django.url}/api/auth/logout`, { method: 'POST', headers: login.headers });
    expect(res.status).toBe(200);
    expect(await v.validate(session(login.sessionId), { signal: signal() })).toEqual({
      valid: false,
      reason: 'session-not-found',
    });
    // dj-rest-auth (as CVAT) deletes the token on logout
    expect(await v.validate(token(login.token), { signal: signal() })).toEqual({
      valid: false,
      reason: 'token-not-found',
    });
    const before = counting.count;
    expect(await v.validate(session('NOT-A-KEY'), { signal: signal() })).toEqual({
      valid: false,
      reason: 'malformed',
    });
    expect(await v.validate(token('xyz'), { signal: signal() })).toEqual({
      valid: false,
      reason: 'malformed',
    });
    expect(counting.count).toBe(before);
  });

  it('rejects a session whose expire_date has passed', async () => {
    const v = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const login = await django.login('user');
    expect((await v.validate(session(login.sessionId), { signal: signal() })).valid).toBe(true);
    await dbQuery(
      "UPDATE django_session SET expire_date = now() - interval '1 second' WHERE session_key = $1",
      [login.sessionId],
    );
    expect(await v.validate(session(login.sessionId), { signal: signal() })).toEqual({
      valid: false,
      reason: 'session-not-found',
    });
  });

  it('a changed password invalidates other sessions when verifyAuthHash is on (as Django does)', async () => {
    const user = await django.createUser({ username: 'changer', password: 'first-password-1' });
    const login = await django.login('changer');
    const strict = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const lax = djangoDatabaseValidator({
      pool: counting,
      secretKey: django.secretKey,
      verifyAuthHash: false,
    });
    expect((await strict.validate(session(login.sessionId), { signal: signal() })).valid).toBe(true);
    await django.setPassword(user.username, 'second-password-2');
    expect(await strict.validate(session(login.sessionId), { signal: signal() })).toEqual({
      valid: false,
      reason: 'auth-hash-mismatch',
    });
    expect((await lax.validate(session(login.sessionId), { signal: signal() })).valid).toBe(true);
    // Django agrees: the old session no longer authenticates
    const self = await fetch(`${django.url}/api/users/self`, { headers: { cookie: login.cookie } });
    expect([401, 403]).toContain(self.status);
  });

  it('rejects inactive users, tampered session data and sessions of deleted users', async () => {
    const v = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
    const u = await django.createUser({ username: 'leaver', password: 'leaver-password-1' });
    const login = await django.login('leaver');
    await dbQuery('UPDATE auth_user SET is_active = false WHERE id = $1', [u.id]);
    expect(await v.validate(session(login.sessionId), { signal: signal() })).toEqual({
      valid: false,
      reason: 'user-inactive',
    });
    expect(await v.validate(token(login.token), { signal: signal() })).toEqual({
      valid: false,
      reason: 'user-inactive',
    });

    const other = await django.login('user');
    const { rows } = await pool.query<{ session_data: string }>(
      'SELECT session_data FROM django_session WHERE session_key = $1',
      [other.sessionId],
    );
    const data = rows[0]?.session_data ?? '';
    const tampered = `${data.slice(0, -3)}${data.endsWith('AAA') ? 'BBB' : 'AAA'}`;
    await dbQuery('UPDATE django_session SET session_data = $2 WHERE session_key = $1', [
      other.sessionId,
      tampered,
    ]);
    expect(await v.validate(session(other.sessionId), { signal: signal() })).toEqual({
      valid: false,
      reason: 'session-bad-signature',
    });
  });

  it('honours custom (validated) table names', async () => {
    await adminQuery(`SELECT 1`);
    await dbQuery('CREATE SCHEMA IF NOT EXISTS sluice_alt', []);
    await dbQuery('CREATE OR REPLACE VIEW sluice_alt.sessions AS SELECT * FROM public.django_session', []);
    const v = djangoDatabaseValidator({
      pool: counting,
      secretKey: django.secretKey,
      tables: { session: 'sluice_alt.sessions', user: 'auth_user', token: 'authtoken_token' },
    });
    const login = await django.login('user');
    expect((await v.validate(session(login.sessionId), { signal: signal() })).valid).toBe(true);
  });
});

describe('introspectionValidator against the real fixture', () => {
  it('validates sessions, tokens and Basic credentials through /api/users/self; refused ones are invalid', async () => {
    const v: Validator = introspectionValidator({ url: `${django.url}/api/users/self`, timeoutMs: 10_000 });
    const login = await django.login('staff');
    const staff = django.user('staff');
    const expected = { valid: true, identity: { userId: staff.id, username: 'staff', isStaff: true } };
    expect(await v.validate(session(login.sessionId), { signal: signal() })).toMatchObject(expected);
    expect(await v.validate(token(login.token), { signal: signal() })).toMatchObject(expected);
    expect(
      await v.validate({ kind: 'basic', username: 'staff', password: staff.password }, { signal: signal() }),
    ).toMatchObject(expected);
    expect((await v.validate(token('0'.repeat(40)), { signal: signal() })).valid).toBe(false);
    expect(
      (await v.validate({ kind: 'basic', username: 'staff', password: 'wrong' }, { signal: signal() })).valid,
    ).toBe(false);
  });

  it('through the cache, a refused credential is cached negatively', async () => {
    const cache = createSessionCache({
      validator: introspectionValidator({ url: `${django.url}/api/users/self`, timeoutMs: 10_000 }),
      l2: false,
      env: {},
    });
    try {
      expect((await cache.lookup(token('1'.repeat(40)))).status).toBe('invalid');
      expect(await cache.lookup(token('1'.repeat(40)))).toMatchObject({ status: 'invalid', tier: 'l1' });
      expect(cache.stats().validatorCalls).toBe(1);
    } finally {
      await cache.close();
    }
  });
});
