import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CredentialCandidates, credentialExtractor } from '@sluice/django';
import { checkChoice, checkInteger, checkObject, optional, pathMatcher, show } from '@sluice/kit';
import type { SessionCacheOptions } from './cache-options.js';
import { type CacheOutcome, outcome } from './cache-outcome.js';
import { isSessionCacheError } from './errors.js';
import type { CredentialKind } from './identity.js';
import { kCacheKey, kHandled, type RequestState } from './request-state.js';
import { createSessionCache } from './session-cache.js';
import type { LookupResult, SessionCache } from './types.js';
import { checkCookieName } from './validators/introspection.js';

/** Options of {@link sessionCache}: the middleware's own, plus either `cache` or the cache's options. */
export interface SessionCacheMiddlewareOptions extends SessionCacheOptions {
  /** A cache built with `createSessionCache()` (shared with the code that invalidates). Not closed by the middleware. */
  readonly cache?: SessionCache | undefined;
  /** Django's `SESSION_COOKIE_NAME`. @default process.env.SLUICE_SESSION_COOKIE ?? 'sessionid' */
  readonly cookieName?: string | undefined;
  /** Longest `Authorization`/`Cookie` header parsed, bytes; longer is malformed. @default 8192 */
  readonly maxHeaderBytes?: number | undefined;
  /**
   * No, malformed or invalid credential: `'reject'` answers 401; `'next'` continues with `req.sluice.identity = null`.
   * @default 'reject'
   */
  readonly onUnauthenticated?: 'reject' | 'next' | undefined;
  /**
   * The validator failed: `'reject'` answers 503 with `Retry-After`; `'next'` continues with `req.sluice.identity = null`.
   * @default 'reject'
   */
  readonly onValidatorError?: 'reject' | 'next' | undefined;
  /**
   * Paths that skip authentication, in the one path syntax of Sluice (`pathMatcher` of the kit):
   * `'/api/auth/login'` matches itself and everything below it on a segment boundary, a trailing
   * `/` (`'/static/'`) means everything under it, `*` stands for one segment, a RegExp is used as given.
   * @default []
   */
  readonly publicPaths?: readonly (string | RegExp)[] | undefined;
  /** `Retry-After` of a 503, seconds. @default 1 */
  readonly retryAfterSeconds?: number | undefined;
}

/** Counters of one middleware. */
export interface SessionCacheMiddlewareStats {
  /** Requests that got an identity. */
  readonly authenticated: number;
  /** Requests with no, a malformed, an unsupported or an invalid credential (401 or let through). */
  readonly unauthenticated: number;
  /** Of those, malformed credentials refused before any I/O. */
  readonly malformed: number;
  /** Requests whose session was refused and whose Basic credentials were then tried, as DRF does. */
  readonly sessionFallbacks: number;
  /** Requests the validator could not answer for (503 or let through). */
  readonly validatorErrors: number;
  /** Requests on public paths. */
  readonly publicPaths: number;
}

/** The handler returned by {@link sessionCache}: an Express/Connect middleware with its cache attached. */
export interface SessionCacheMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  /** The cache behind the middleware (for `invalidate`, `invalidateUser`, `invalidateRequest`, `stats`, `on`). */
  readonly cache: SessionCache;
  /** Counters of this middleware. */
  stats(): SessionCacheMiddlewareStats;
  /** Closes the cache if the middleware built it (not a `cache` passed in). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

type Next = (error?: unknown) => void;
/** One request being authenticated, and the credentials it carries. */
interface Call {
  readonly req: RequestState;
  readonly res: ServerResponse;
  readonly next: Next;
  readonly candidates: CredentialCandidates;
}

/** The cache's options: with `cache`, they belong on `createSessionCache()` (`env` aside). */
const CACHE_OPTION_NAMES = [
  'validator',
  'pepper',
  'l1',
  'negative',
  'l2',
  'ttlMs',
  'validatorTimeoutMs',
  'maxPendingValidations',
  'now',
] as const;

const NOT_PROVIDED = JSON.stringify({
  code: 'E_UNAUTHENTICATED',
  message: 'Authentication credentials were not provided.',
});
const INVALID = JSON.stringify({ code: 'E_UNAUTHENTICATED', message: 'Invalid credentials.' });
const UNAVAILABLE = 'Authentication is temporarily unavailable; retry shortly.';
const PUBLIC_OUTCOME = Object.freeze(outcome('none', 'public'));
const NO_CREDENTIAL_OUTCOME = Object.freeze(outcome('none', 'invalid', 'no-credential'));
const MALFORMED_OUTCOME = Object.freeze(outcome('none', 'invalid', 'malformed'));

/**
 * Express middleware that authenticates each request by its DRF token, Bearer token, Django
 * session cookie or Basic credentials, in the order DRF tries them (a session Django would not
 * find lets Basic credentials be tried, as DRF does), through the tiered cache, and sets
 * `req.sluice.identity` and `req.sluice.cache` (which tier answered, see {@link CacheOutcome}).
 * With no options it is configured from the environment (`DATABASE_URL`, `SLUICE_INTROSPECTION_URL`,
 * `REDIS_URL`, `SLUICE_CACHE_PEPPER`, `DJANGO_SECRET_KEY`).
 *
 * Answers 401 `{ code: 'E_UNAUTHENTICATED', message }` without a valid credential, and 503
 * `{ code: 'E_VALIDATOR_*', message }` with `Retry-After` when the validator fails. Malformed
 * credentials are refused before any I/O. Runs at most once per request.
 *
 * @throws {TypeError | RangeError} an option has the wrong type or range
 * @throws {ConfigurationError} no validator given and neither DATABASE_URL nor SLUICE_INTROSPECTION_URL set
 * @example
 * app.use(sessionCache({ publicPaths: ['/healthz', '/static/'] }));
 * app.get('/api/me', (req, res) => res.json(req.sluice?.identity));
 */
export function sessionCache(options: SessionCacheMiddlewareOptions = {}): SessionCacheMiddleware {
  checkObject('options', options);
  const env = options.env ?? process.env;
  const cookieName = checkCookieName(
    'options.cookieName',
    options.cookieName ?? env.SLUICE_SESSION_COOKIE ?? 'sessionid',
  );
  const maxHeaderBytes = optional(options.maxHeaderBytes, 8_192, (v) =>
    checkInteger('options.maxHeaderBytes', v, 1, 1_048_576),
  );
  const choice = (name: string, value: unknown) =>
    optional(value, 'reject' as const, (v) => checkChoice(name, v, ['reject', 'next'] as const));
  const onUnauthenticated = choice('options.onUnauthenticated', options.onUnauthenticated);
  const onValidatorError = choice('options.onValidatorError', options.onValidatorError);
  const retryAfter = String(
    optional(options.retryAfterSeconds, 1, (v) => checkInteger('options.retryAfterSeconds', v, 1, 86_400)),
  );
  const isPublic = pathMatcher(options.publicPaths ?? [], 'options.publicPaths');

  const owned = options.cache === undefined;
  if (!owned) {
    const c = options.cache as Partial<SessionCache> | null;
    if (typeof c?.lookup !== 'function' || typeof c.keyOf !== 'function') {
      throw new TypeError(`options.cache should be a cache from createSessionCache(), got ${show(c)}`);
    }
    const clash = CACHE_OPTION_NAMES.find((name) => options[name] !== undefined);
    if (clash) {
      throw new TypeError(
        `options.${clash} cannot be combined with options.cache (set it on createSessionCache())`,
      );
    }
  }
  // Last: a cache it builds may open sockets, and nothing may throw after that.
  const cache = options.cache ?? createSessionCache(options);
  const kinds = new Set<CredentialKind>(cache.validator.kinds);
  const extractCredentials = credentialExtractor({ cookieName, maxHeaderBytes });
  const counters = {
    authenticated: 0,
    unauthenticated: 0,
    malformed: 0,
    sessionFallbacks: 0,
    validatorErrors: 0,
    publicPaths: 0,
  };

  /** Lets the request through without an identity (`onUnauthenticated`/`onValidatorError: 'next'`). */
  function anonymous({ req, next }: Call, reason: string | undefined): void {
    const ctx = contextOf(req);
    ctx.identity = null;
    ctx.unauthenticatedReason = reason;
    next();
  }

  function unauthenticated(call: Call, refusal: CacheOutcome): void {
    counters.unauthenticated += 1;
    contextOf(call.req).cache = refusal;
    if (onUnauthenticated === 'next') anonymous(call, refusal.reason);
    else send(call.res, 401, refusal.reason === 'no-credential' ? NOT_PROVIDED : INVALID, undefined);
  }

  function failed(call: Call, error: unknown, kind: CredentialKind, key: string | undefined): void {
    counters.validatorErrors += 1;
    const code = isSessionCacheError(error) ? error.code : 'E_VALIDATOR_UNAVAILABLE';
    const tier = code.startsWith('E_VALIDATOR_') ? 'validator' : 'none';
    contextOf(call.req).cache = outcome(tier, 'error', code, kind, key);
    if (onValidatorError === 'next') anonymous(call, 'validator-error');
    else send(call.res, 503, JSON.stringify({ code, message: UNAVAILABLE }), retryAfter);
  }

  /**
   * The answer for the `i`th candidate: the first valid one authenticates; a refused one ends the
   * request unless another follows it (only a session can be followed, by Basic), tried next.
   */
  function settle(call: Call, i: number, result: LookupResult, kind: CredentialKind, key: string): void {
    if (result.status === 'valid') {
      counters.authenticated += 1;
      const ctx = contextOf(call.req);
      ctx.cache = outcome(result.tier, 'valid', undefined, kind, key);
      ctx.identity = result.identity;
      call.next();
    } else if (i < call.candidates.length - 1) {
      counters.sessionFallbacks += 1;
      authenticate(call, i + 1);
    } else unauthenticated(call, outcome(result.tier, 'invalid', result.reason, kind, key));
  }

  /** Looks the `i`th candidate up (they come in DRF's order). */
  function authenticate(call: Call, i: number): void {
    const credential = call.candidates[i];
    if (credential === undefined) return;
    if (credential.kind === 'malformed') {
      counters.malformed += 1;
      unauthenticated(call, MALFORMED_OUTCOME);
      return;
    }
    const kind = credential.kind;
    if (!kinds.has(kind)) {
      unauthenticated(call, outcome('none', 'invalid', 'unsupported-credential', kind));
      return;
    }
    let key: string | undefined;
    let hit: LookupResult | undefined;
    try {
      key = cache.keyOf(credential);
      call.req[kCacheKey] = key;
      hit = cache.peek(credential, { key });
    } catch (error) {
      failed(call, error, kind, key);
      return;
    }
    const looked: string = key;
    if (hit) settle(call, i, hit, kind, looked);
    else {
      cache.lookup(credential, { key }).then(
        (result) => settle(call, i, result, kind, looked),
        (error: unknown) => failed(call, error, kind, looked),
      );
    }
  }

  const handler = function sessionCache(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const r = req as IncomingMessage & RequestState;
    if (r[kHandled]) {
      next();
      return;
    }
    r[kHandled] = true;
    if (isPublic.matches(pathOf(req))) {
      counters.publicPaths += 1;
      contextOf(r).cache = PUBLIC_OUTCOME;
      next();
      return;
    }
    const call = { req: r, res, next, candidates: extractCredentials(req.headers) };
    if (call.candidates.length === 0) unauthenticated(call, NO_CREDENTIAL_OUTCOME);
    else authenticate(call, 0);
  };

  const close = (): Promise<void> => (owned ? cache.close() : Promise.resolve()); // cache.close() is idempotent
  return Object.assign(handler, {
    cache,
    stats: (): SessionCacheMiddlewareStats => ({ ...counters }),
    close,
    [Symbol.asyncDispose]: close,
  });
}

/** `req.sluice`, created on first use (other Sluice middleware may have created it already). */
function contextOf(req: RequestState): Express.SluiceContext {
  req.sluice ??= {};
  return req.sluice;
}

function send(res: ServerResponse, status: number, body: string, retryAfter: string | undefined): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  if (retryAfter !== undefined) res.setHeader('retry-after', retryAfter);
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}

/** Express's `req.path` (relative to the mount point) when there is one, else the URL's path. */
function pathOf(req: IncomingMessage): string {
  const p = (req as { path?: unknown }).path;
  if (typeof p === 'string') return p;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
