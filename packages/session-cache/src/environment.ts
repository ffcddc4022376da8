import { createPool } from '@sluice/pool';
import { ConfigurationError } from './errors.js';
import type { Validator } from './identity.js';
import { compositeValidator } from './validators/composite.js';
import { djangoDatabaseValidator } from './validators/django-database.js';
import { introspectionValidator } from './validators/introspection.js';

/** Environment variables the package reads (all optional; see the README). */
export type SessionCacheEnvironment = Readonly<Record<string, string | undefined>>;

/**
 * The zero-configuration validator of `sessionCache()` / `createSessionCache()` without a
 * `validator`, or `undefined` when neither `DATABASE_URL` nor `SLUICE_INTROSPECTION_URL` is set.
 * The validator owns what it builds and releases it on `close()`.
 *
 * - `DATABASE_URL`: sessions and tokens against Django's tables, over a pool of its own
 *   (`createPool({ connectionString, max: 5, applicationName: 'sluice-session-cache' })`, shared
 *   with nothing). To size it, or to share a pool with other code, build the validator yourself:
 *   `djangoDatabaseValidator({ pool })`. `DJANGO_SECRET_KEY` (and comma-separated
 *   `DJANGO_SECRET_KEY_FALLBACKS`) turn on signature and `_auth_user_hash` verification.
 * - `SLUICE_INTROSPECTION_URL`: Bearer and Basic credentials (and everything, without
 *   `DATABASE_URL`) through the endpoint, bounded by `SLUICE_INTROSPECTION_TIMEOUT_MS ?? 2000`.
 *
 * @throws {ConfigurationError} a variable is set to something unusable
 */
export function validatorFromEnvironment(env: SessionCacheEnvironment): Validator | undefined {
  const databaseUrl = nonEmpty(env.DATABASE_URL);
  const introspectionUrl = nonEmpty(env.SLUICE_INTROSPECTION_URL);
  const cookieName = nonEmpty(env.SLUICE_SESSION_COOKIE);
  let remote: Validator | undefined;
  if (introspectionUrl !== undefined) {
    const timeout = nonEmpty(env.SLUICE_INTROSPECTION_TIMEOUT_MS);
    try {
      remote = introspectionValidator({
        url: introspectionUrl,
        timeoutMs: timeout === undefined ? undefined : Number(timeout),
        cookieName,
      });
    } catch (error) {
      throw new ConfigurationError(
        `SLUICE_INTROSPECTION_URL or _TIMEOUT_MS is unusable: ${(error as Error).message}`,
      );
    }
  }
  if (databaseUrl === undefined) return remote;
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigurationError('DATABASE_URL should be a postgres:// or postgresql:// URL');
  }
  const secretKey = nonEmpty(env.DJANGO_SECRET_KEY);
  const fallbackKeys = (nonEmpty(env.DJANGO_SECRET_KEY_FALLBACKS) ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  const pool = createPool({
    connectionString: databaseUrl,
    max: 5,
    applicationName: 'sluice-session-cache',
  });
  const database = djangoDatabaseValidator({ pool, secretKey, fallbackKeys });
  const routed = remote
    ? compositeValidator({ session: database, token: database, bearer: remote, basic: remote })
    : database;
  const close = (): Promise<void> => pool.close(); // idempotent
  return { ...routed, close, [Symbol.asyncDispose]: close };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}
