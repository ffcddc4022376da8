import { createPool, isPoolError, type SluicePool } from '@sluice/pool';
import { djangoDatabaseValidator, type SessionCacheMiddleware, sessionCache } from '@sluice/session-cache';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';

/** What the service reads from its environment (`process.env` by default). */
export interface ServiceEnvironment {
  /** Django's database (CVAT's `cvat_db`). Required. */
  readonly DATABASE_URL?: string;
  /** Size of the one pool: the routes query through it and `sessionCache()` validates through it. @default 10 */
  readonly SLUICE_POOL_MAX?: string;
  /** Optional: Redis for the shared L2 cache (several instances of this service share validations). */
  readonly REDIS_URL?: string;
  /** Optional: Django's SECRET_KEY, to verify session signatures and `_auth_user_hash`. */
  readonly DJANGO_SECRET_KEY?: string;
  /** Optional: HMAC pepper of cache keys (required with REDIS_URL when DJANGO_SECRET_KEY is unset). */
  readonly SLUICE_CACHE_PEPPER?: string;
  readonly [name: string]: string | undefined;
}

/** The service: an Express app and how to release what it holds. */
export interface Service {
  readonly app: Express;
  /** The one pool (the one `sessionCache()` validates through). */
  readonly pool: SluicePool;
  /** The authentication middleware, with its cache (`auth.cache.stats()`, `auth.cache.invalidate()`). */
  readonly auth: SessionCacheMiddleware;
  /** Closes the middleware's cache and the pool. Idempotent. */
  close(): Promise<void>;
}

/**
 * Builds a small service that lives beside Django and trusts Django's logins:
 * - `app.use(sessionCache())` authenticates every `/api` request by its `sessionid` cookie or
 *   `Authorization: Token` through the tiered cache (zero queries after the first), validating
 *   against Django's `django_session` and `authtoken_token` through the service's pool, handed
 *   to it explicitly (`djangoDatabaseValidator({ pool })`);
 * - routes query Django's database through the same pool, so the whole process holds at most
 *   `SLUICE_POOL_MAX` connections.
 *
 * Routes: `GET /healthz` (public), `GET /api/me` (the identity, no query), `GET /api/profile`
 * (one query on `auth_user`), `GET /api/sluice/stats` (staff only: cache, middleware and pool counters).
 *
 * @throws {TypeError} when DATABASE_URL is missing
 * @example
 * const service = createService();
 * const server = service.app.listen(3000);
 */
export function createService(env: ServiceEnvironment = process.env): Service {
  const databaseUrl = env.DATABASE_URL;
  if (!databaseUrl) throw new TypeError('DATABASE_URL must be set to Django’s PostgreSQL database');
  const max = Number(env.SLUICE_POOL_MAX ?? 10);
  // One pool for the routes and the validator: the middleware gets it explicitly.
  const pool = createPool({ connectionString: databaseUrl, max });
  const validator = djangoDatabaseValidator({ pool, secretKey: env.DJANGO_SECRET_KEY || undefined });
  const auth = sessionCache({ env, validator, publicPaths: ['/healthz'] });

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', function healthz(_req, res) {
    res.json({ ok: true });
  });
  app.use('/api', auth);

  app.get('/api/me', function me(req, res) {
    // Set by sessionCache(): served from the cache, no database query on a hit.
    res.json(req.sluice?.identity ?? null);
  });

  const profile: RequestHandler = async function profile(req, res) {
    const identity = req.sluice?.identity;
    if (!identity) {
      res.status(401).json({ code: 'E_UNAUTHENTICATED' });
      return;
    }
    const { rows } = await pool.query<{
      username: string;
      email: string;
      first_name: string;
      last_name: string;
      date_joined: Date;
      last_login: Date | null;
    }>(
      'SELECT username, email, first_name, last_name, date_joined, last_login FROM auth_user WHERE id = $1',
      [identity.userId],
    );
    const row = rows[0];
    if (!row) {
      res.status(404).json({ code: 'E_NOT_FOUND' });
      return;
    }
    res.json({
      username: row.username,
      email: row.email,
      name: `${row.first_name} ${row.last_name}`.trim(),
      dateJoined: row.date_joined.toISOString(),
      lastLogin: row.last_login?.toISOString() ?? null,
    });
  };
  app.get('/api/profile', profile);

  app.get('/api/sluice/stats', function stats(req, res) {
    if (!req.sluice?.identity?.isStaff) {
      res.status(403).json({ code: 'E_FORBIDDEN' });
      return;
    }
    res.json({ cache: auth.cache.stats(), middleware: auth.stats(), pool: pool.stats() });
  });

  // A pool that is full or closed is a temporary condition: 503 with Retry-After, never a crash.
  const poolErrors: ErrorRequestHandler = function poolErrors(err, _req, res, next) {
    if (!isPoolError(err)) {
      next(err);
      return;
    }
    res.status(err.status).set('retry-after', '1').json({ code: err.code, message: err.message });
  };
  app.use(poolErrors);

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      await auth.close();
      await pool.close();
    })();
    return closed;
  };
  return { app, pool, auth, close };
}
