import { describe, expect, it } from 'vitest';
import {
  compositeValidator,
  createSessionCache,
  djangoDatabaseValidator,
  introspectionValidator,
  isSessionCacheError,
  validatorFromEnvironment,
} from '../src/index.ts';
import { TableValidator } from './helpers.ts';

const validator = new TableValidator();
const pool = { query: async () => ({ rows: [] }) };

describe('createSessionCache options', () => {
  it.each([
    [{ ttlMs: 0 }, RangeError, /options.ttlMs should be an integer between 1 and 2147483647, got 0/],
    [{ ttlMs: '5' }, TypeError, /options.ttlMs should be an integer, got "5"/],
    [{ negative: { ttlMs: -1 } }, RangeError, /options.negative.ttlMs/],
    [{ negative: { max: 0 } }, RangeError, /options.negative.max/],
    [{ negative: 5 }, TypeError, /options.negative should be an object/],
    [{ validatorTimeoutMs: 1.5 }, RangeError, /options.validatorTimeoutMs/],
    [{ maxPendingValidations: 0 }, RangeError, /options.maxPendingValidations/],
    [{ l1: { max: 0 } }, RangeError, /options.l1.max/],
    [{ l1: { ttlMs: Number.NaN } }, TypeError, /options.l1.ttlMs/],
    [{ l1: 'yes' }, TypeError, /options.l1 should be an object/],
    [{ l2: { redis: 'http://x' } }, TypeError, /options.l2.redis should be a redis:\/\//],
    [{ l2: { redis: 42 } }, TypeError, /options.l2.redis/],
    [{ l2: {} }, TypeError, /options.l2.redis/],
    [{ l2: { redis: 'redis://127.0.0.1:1', timeoutMs: 0 } }, RangeError, /options.l2.timeoutMs/],
    [{ l2: { redis: 'redis://127.0.0.1:1', lock: 'yes' } }, TypeError, /options.l2.lock/],
    [{ l2: { redis: 'redis://127.0.0.1:1', lock: { waitMs: 0 } } }, RangeError, /options.l2.lock.waitMs/],
    [{ l2: { redis: 'redis://127.0.0.1:1', prefix: 5 } }, TypeError, /options.l2.prefix/],
    [{ pepper: 'short' }, RangeError, /options.pepper should be at least 16 bytes/],
    [{ now: 5 }, TypeError, /options.now should be a function/],
    [{ validator: { validate: 1 } }, TypeError, /options.validator/],
  ])('%o is refused', (bad, type, message) => {
    expect(() =>
      createSessionCache({ validator, pepper: 'p'.repeat(32), env: {}, ...(bad as object) }),
    ).toThrow(type);
    expect(() =>
      createSessionCache({ validator, pepper: 'p'.repeat(32), env: {}, ...(bad as object) }),
    ).toThrow(message);
  });

  it('names what to set when no validator source exists', () => {
    let error: unknown;
    try {
      createSessionCache({ env: {} });
    } catch (e) {
      error = e;
    }
    expect(isSessionCacheError(error, 'E_CONFIGURATION')).toBe(true);
    expect(String((error as Error).message)).toMatch(/DATABASE_URL/);
    expect(String((error as Error).message)).toMatch(/SLUICE_INTROSPECTION_URL/);
    expect((error as { code?: string }).code).toBe('E_CONFIGURATION');
  });

  it('refuses to share Redis without a pepper, and takes one from the environment', async () => {
    expect(() => createSessionCache({ validator, env: {}, l2: { redis: 'redis://127.0.0.1:1' } })).toThrow(
      /SLUICE_CACHE_PEPPER/,
    );
    expect(() => createSessionCache({ validator, env: { SLUICE_CACHE_PEPPER: 'short' } })).toThrow(
      /16 bytes/,
    );
    const a = createSessionCache({ validator, env: { SLUICE_CACHE_PEPPER: 'x'.repeat(32) } });
    const b = createSessionCache({ validator, pepper: 'x'.repeat(32), env: {} });
    const c = createSessionCache({ validator, env: { DJANGO_SECRET_KEY: 'django-insecure-secret' } });
    const d = createSessionCache({ validator, env: {} });
    const cred = { kind: 'token' as const, token: 'a'.repeat(40) };
    expect(a.keyOf(cred)).toBe(b.keyOf(cred));
    expect(c.keyOf(cred)).not.toBe(a.keyOf(cred));
    expect(d.keyOf(cred)).not.toBe(a.keyOf(cred));
    await Promise.all([a.close(), b.close(), c.close(), d.close()]);
  });
});

describe('validator options', () => {
  it('djangoDatabaseValidator validates at construction', () => {
    expect(() => djangoDatabaseValidator({ pool: {} as never })).toThrow(/options.pool should have a query/);
    expect(() => djangoDatabaseValidator({ pool, verifyAuthHash: true })).toThrow(/needs options.secretKey/);
    expect(() => djangoDatabaseValidator({ pool, secretKey: '' })).toThrow(/options.secretKey/);
    expect(() => djangoDatabaseValidator({ pool, secretKey: 's', fallbackKeys: [''] })).toThrow(
      /fallbackKeys/,
    );
    expect(() =>
      djangoDatabaseValidator({ pool, tables: { session: 'django_session; DROP TABLE x' } }),
    ).toThrow(/options.tables.session should be a table name or schema.table/);
    expect(() => djangoDatabaseValidator({ pool, tables: { user: 'a.b.c' } })).toThrow(/options.tables.user/);
    expect(() => djangoDatabaseValidator({ pool, tables: { token: '"x"' } })).toThrow(/options.tables.token/);
    const v = djangoDatabaseValidator({ pool, tables: { session: 'public.django_session' } });
    expect(v.kinds).toEqual(['session', 'token']);
  });

  it('compositeValidator routes only kinds a validator handles', () => {
    const db = djangoDatabaseValidator({ pool });
    expect(() => compositeValidator({})).toThrow(/at least one/);
    expect(() => compositeValidator({ bearer: db })).toThrow(/does not handle 'bearer'/);
    expect(() => compositeValidator({ session: {} as never })).toThrow(
      /routes.session should be a validator/,
    );
    const remote = introspectionValidator({ url: 'http://127.0.0.1:1/api/users/self' });
    expect(compositeValidator({ session: db, token: db, bearer: remote }).kinds).toEqual([
      'session',
      'token',
      'bearer',
    ]);
  });

  it('validatorFromEnvironment builds database, introspection or both', async () => {
    expect(validatorFromEnvironment({})).toBeUndefined();
    expect(
      validatorFromEnvironment({ SLUICE_INTROSPECTION_URL: 'http://127.0.0.1:1/api/users/self' })?.kinds,
    ).toEqual(['token', 'bearer', 'session', 'basic']);
    expect(() => validatorFromEnvironment({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => validatorFromEnvironment({ SLUICE_INTROSPECTION_URL: 'nope' })).toThrow(
      /SLUICE_INTROSPECTION_URL/,
    );
    expect(() =>
      validatorFromEnvironment({
        SLUICE_INTROSPECTION_URL: 'http://x/self',
        SLUICE_INTROSPECTION_TIMEOUT_MS: '0',
      }),
    ).toThrow(/SLUICE_INTROSPECTION_URL or _TIMEOUT_MS/);
    const both = validatorFromEnvironment({
      DATABASE_URL: 'postgres://127.0.0.1:1/x',
      SLUICE_INTROSPECTION_URL: 'http://127.0.0.1:1/api/users/self',
    });
    expect(both?.kinds).toEqual(['session', 'token', 'bearer', 'basic']);
    await both?.close?.();
    await both?.[Symbol.asyncDispose]?.(); // idempotent
  });
});
