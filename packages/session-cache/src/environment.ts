import { sharedPool } from '@sluice/pool';
import { ConfigurationError } from './errors.js';
import type { Validator } from './identity.js';
import { compositeValidator } from './validators/composite.js';
import { djangoDatabaseValidator } from './validators/django-database.js';
import { introspectionValidator } from './validators/introspection.js';

/** Environment variables the package reads (all optional; see the README). */
export type SessionCacheEnvironment = Readonly<Record<string, string | undefined>>;

/**
 * Builds the default validator from the environment, or returns `undefined` when neither
 * `DATABASE_URL` nor `SLUICE_INTROSPECTION_URL` is set.
 *
 * - `DATABASE_URL`: sessions and tokens against Django's tables, over `sharedPool({ connectionString,
 *   max: SLUICE_POOL_MAX ?? 10 })` from `@sluice/pool` (released by the cache's `close()`).
 *   `DJANGO_SECRET_KEY` (and comma-separated `DJANGO_SECRET_KEY_FALLBACKS`) turn on signature and
 *   `_auth_user_hash` verification.
 * - `SLUICE_INTROSPECTION_URL`: Bearer and Basic credentials (and everything, without `DATABASE_URL`)
 *   through the endpoint, bounded by `SLUICE_INTROSPECTION_TIMEOUT_MS ?? 2000`.
 *
 * @throws {ConfigurationError} a variable is set to something unusable
 */
export function validatorFromEnvironment(env: SessionCacheEnvironment): Validator | undefined {
  const databaseUrl = nonEmpty(env.DATABASE_URL);
  const introspectionUrl = nonEmpty(env.SLUICE_INTROSPECTION_URL);
  const cookieName = nonEmpty(env.SLUICE_SESSION_COOKIE_NAME);
  let remote: Validator | undefined;
  if (introspectionUrl !== undefined) {
    try {
      remote = introspectionValidator({
        url: introspectionUrl,
        timeoutMs: integerVar(env, 'SLUICE_INTROSPECTION_TIMEOUT_MS', 2_000),
        ...(cookieName === undefined ? {} : { cookieName }),
      });
    } catch (error) {
      throw new ConfigurationError(`SLUICE_INTROSPECTION_URL is unusable: ${(error as Error).message}`);
    }
  }
  let database: Validator | undefined;
  if (databaseUrl !== undefined) {
    if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
      throw new ConfigurationError('DATABASE_URL should be a postgres:// or postgresql:// URL');
    }
    const secretKey = nonEmpty(env.DJANGO_SECRET_KEY);
    const fallbackKeys = (nonEmpty(env.DJANGO_SECRET_KEY_FALLBACKS) ?? '')
      .split(',')
      .map((k) => k.trim())
      .filter((k) => k.length > 0);
    const pool = sharedPool({ connectionString: databaseUrl, max: integerVar(env, 'SLUICE_POOL_MAX', 10) });
    database = djangoDatabaseValidator({
      pool,
      ...(secretKey === undefined ? {} : { secretKey, fallbackKeys }),
      onClose: () => pool.close(),
    });
  }
  if (database && remote) {
    return compositeValidator({ session: database, token: database, bearer: remote, basic: remote });
  }
  return database ?? remote;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function integerVar(env: SessionCacheEnvironment, name: string, fallback: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new ConfigurationError(`${name} should be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}
