import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Credential, credentialExtractor } from '@sluice/django';
import {
  type CacheOutcome,
  failedOutcome,
  lookupOutcome,
  PUBLIC_OUTCOME,
  refusedOutcome,
} from './cache-outcome.js';
import { isSessionCacheError } from './errors.js';
import type { CredentialKind } from './identity.js';
import { checkObject, describe, oneOf, positiveInteger } from './option-checks.js';
import { kCacheKey, kHandled, type RequestState } from './request-state.js';
import {
  createSessionCache,
  type LookupResult,
  type SessionCache,
  type SessionCacheOptions,
} from './session-cache.js';

/** Options of {@link sessionCache}: the middleware's own, plus either `cache` or the cache's options. */
export interface SessionCacheMiddlewareOptions extends SessionCacheOptions {
  /** A cache built with `createSessionCache()` (shared with the code that invalidates). Not closed by the middleware. */
  readonly cache?: SessionCache;
  /**
   * Django's `SESSION_COOKIE_NAME`.
   * @default process.env.SLUICE_SESSION_COOKIE_NAME ?? 'sessionid'
   */
  readonly cookieName?: string;
  /**
   * Longest `Authorization`/`Cookie` header parsed, bytes; longer is malformed.
   * @default 8192
   */
  readonly maxHeaderBytes?: number;
  /**
   * No, malformed or invalid credential: `'reject'` answers 401; `'next'` continues with `req.sluice.identity = null`.
   * @default 'reject'
   */
  readonly onUnauthenticated?: 'reject' | 'next';
  /**
   * The validator failed: `'reject'` answers 503 with `Retry-After`; `'next'` continues with `req.sluice.identity = null`.
   * @default 'reject'
   */
  readonly onValidatorError?: 'reject' | 'next';
  /**
   * Paths that skip authentication: exact strings, strings ending in `*` (prefix), or RegExps.
   * @default []
   */
  readonly publicPaths?: readonly (string | RegExp)[];
  /**
   * `Retry-After` of a 503, seconds.
   * @default 1
   */
  readonly retryAfterSeconds?: number;
}

/** Counters of one middleware. */
export interface SessionCacheMiddlewareStats {
  /** Requests that got an identity. */
  readonly authenticated: number;
  /** Requests with no, a malformed, an unsupported or an invalid credential (401 or let through). */
  readonly unauthenticated: number;
  /** Of those, malformed credentials refused before any I/O. */
  readonly malformed: number;
  /** Requests the validator could not answer for (503 or let through). */
  readonly validatorErrors: number;
  /** Requests on public paths. */
  readonly publicPaths: number;
}

/** The handler returned by {@link sessionCache}: an Express/Connect middleware with its cache attached. */
export interface SessionCacheMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  /** The cache behind the middleware (for `invalidate`, `invalidateRequest`, `stats`, `on`). */
  readonly cache: SessionCache;
  /** Counters of this middleware. */
  stats(): SessionCacheMiddlewareStats;
  /** Closes the cache if the middleware built it (not a `cache` passed in). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const CACHE_OPTION_NAMES = [
  'validator',
  'pepper',
  'l1',
  'l2',
  'ttlMs',
  'negativeTtlMs',
  'validatorTimeoutMs',
  'maxPendingValidations',
  'now',
  'env',
] as const;

const NOT_PROVIDED = JSON.stringify({
  code: 'E_UNAUTHENTICATED',
  message: 'Authentication credentials were not provided.',
});
const NO_CREDENTIAL_OUTCOME = Object.freeze(refusedOutcome('no-credential', undefined));
const MALFORMED_OUTCOME = Object.freeze(refusedOutcome('malformed', undefined));
const INVALID = JSON.stringify({ code: 'E_UNAUTHENTICATED', message: 'Invalid credentials.' });

/**
 * Express middleware that authenticates each request by its Django session cookie, DRF token,
 * Bearer token or Basic credentials, through the tiered cache, and sets `req.sluice.identity`
 * and `req.sluice.cache` (which tier answered, see {@link CacheOutcome}).
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
 * app.use(sessionCache({ publicPaths: ['/healthz', '/static/*'] }));
 * app.get('/api/me', (req, res) => res.json(req.sluice?.identity));
 */
export function sessionCache(options: SessionCacheMiddlewareOptions = {}): SessionCacheMiddleware {
  checkObject('options', options);
  const env = options.env ?? process.env;
  const cookieName = options.cookieName ?? env.SLUICE_SESSION_COOKIE_NAME ?? 'sessionid';
  if (typeof cookieName !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(cookieName)) {
    throw new TypeError(`options.cookieName should be a cookie name token, got ${describe(cookieName)}`);
  }
  const maxHeaderBytes = positiveInteger('options.maxHeaderBytes', options.maxHeaderBytes, 8_192, 1_048_576);
  const onUnauthenticated = oneOf(
    'options.onUnauthenticated',
    options.onUnauthenticated,
    ['reject', 'next'],
    'reject',
  );
  const onValidatorError = oneOf(
    'options.onValidatorError',
    options.onValidatorError,
    ['reject', 'next'],
    'reject',
  );
  const retryAfter = String(
    positiveInteger('options.retryAfterSeconds', options.retryAfterSeconds, 1, 86_400),
  );
  const isPublic = publicPathMatcher(options.publicPaths);

  let cache: SessionCache;
  let owned: boolean;
  if (options.cache !== undefined) {
    const c = options.cache as Partial<SessionCache> | null;
    if (
      typeof c !== 'object' ||
      c === null ||
      typeof c.lookup !== 'function' ||
      typeof c.keyOf !== 'function'
    ) {
      throw new TypeError(`options.cache should be a cache from createSessionCache(), got ${describe(c)}`);
    }
    for (const name of CACHE_OPTION_NAMES) {
      if (name !== 'env' && options[name] !== undefined) {
        throw new TypeError(
          `options.${name} cannot be combined with options.cache (set it on createSessionCache())`,
        );
      }
    }
    cache = options.cache;
    owned = false;
  } else {
    const cacheOptions: Record<string, unknown> = {};
    for (const name of CACHE_OPTION_NAMES)
      if (options[name] !== undefined) cacheOptions[name] = options[name];
    cache = createSessionCache(cacheOptions as SessionCacheOptions);
    owned = true;
  }
  const kinds = new Set<CredentialKind>(cache.validator.kinds);
  const extractCandidates = credentialExtractor({ cookieName, maxHeaderBytes });
  const extractCredential = (headers: IncomingMessage['headers']) => extractCandidates(headers)[0] ?? null;
  const counters = { authenticated: 0, unauthenticated: 0, malformed: 0, validatorErrors: 0, publicPaths: 0 };

  function unauthenticated(
    req: RequestState,
    res: ServerResponse,
    next: (error?: unknown) => void,
    reason: string,
    outcome: CacheOutcome,
  ): void {
    counters.unauthenticated += 1;
    const ctx = contextOf(req);
    ctx.cache = outcome;
    if (onUnauthenticated === 'next') {
      ctx.identity = null;
      ctx.unauthenticatedReason = reason;
      next();
      return;
    }
    send(res, 401, reason === 'no-credential' ? NOT_PROVIDED : INVALID, undefined);
  }

  function failed(
    req: RequestState,
    res: ServerResponse,
    next: (error?: unknown) => void,
    error: unknown,
    kind: CredentialKind,
    key: string | undefined,
  ): void {
    counters.validatorErrors += 1;
    const code = isSessionCacheError(error) ? error.code : 'E_VALIDATOR_UNAVAILABLE';
    const ctx = contextOf(req);
    ctx.cache = failedOutcome(code.startsWith('E_VALIDATOR_') ? 'validator' : 'none', code, kind, key);
    if (onValidatorError === 'next') {
      ctx.identity = null;
      ctx.unauthenticatedReason = 'validator-error';
      next();
      return;
    }
    send(
      res,
      503,
      JSON.stringify({ code, message: 'Authentication is temporarily unavailable; retry shortly.' }),
      retryAfter,
    );
  }

  function settle(
    req: RequestState,
    res: ServerResponse,
    next: (error?: unknown) => void,
    result: LookupResult,
    kind: CredentialKind,
    key: string,
  ): void {
    const outcome = lookupOutcome(result, kind, key);
    if (result.status === 'valid') {
      counters.authenticated += 1;
      const ctx = contextOf(req);
      ctx.cache = outcome;
      ctx.identity = result.identity;
      next();
      return;
    }
    unauthenticated(req, res, next, result.reason, outcome);
  }

  const handler = function sessionCache(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    const r = req as IncomingMessage & RequestState;
    if (r[kHandled]) {
      next();
      return;
    }
    r[kHandled] = true;
    if (isPublic?.(pathOf(req))) {
      counters.publicPaths += 1;
      contextOf(r).cache = PUBLIC_OUTCOME;
      next();
      return;
    }
    const extracted = extractCredential(req.headers);
    if (extracted === null) {
      unauthenticated(r, res, next, 'no-credential', NO_CREDENTIAL_OUTCOME);
      return;
    }
    if (extracted.kind === 'malformed') {
      counters.malformed += 1;
      unauthenticated(r, res, next, 'malformed', MALFORMED_OUTCOME);
      return;
    }
    const credential: Credential = extracted;
    if (!kinds.has(credential.kind)) {
      unauthenticated(
        r,
        res,
        next,
        'unsupported-credential',
        refusedOutcome('unsupported-credential', credential.kind),
      );
      return;
    }
    const kind = credential.kind;
    let key: string | undefined;
    let hit: LookupResult | undefined;
    try {
      key = cache.keyOf(credential);
      r[kCacheKey] = key;
      hit = cache.peek(credential, { key });
    } catch (error) {
      failed(r, res, next, error, kind, key);
      return;
    }
    if (hit !== undefined) {
      settle(r, res, next, hit, kind, key);
      return;
    }
    const looked: string = key;
    cache.lookup(credential, { key }).then(
      (result) => settle(r, res, next, result, kind, looked),
      (error: unknown) => failed(r, res, next, error, kind, looked),
    );
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= owned ? cache.close() : Promise.resolve();
    return closing;
  };
  return Object.assign(handler, {
    cache,
    stats: (): SessionCacheMiddlewareStats => ({ ...counters }),
    close,
    [Symbol.asyncDispose]: close,
  });
}

/** `req.sluice`, created on first use (other Sluice middleware may have created it already). */
function contextOf(req: RequestState): Express.SluiceContext {
  let ctx = req.sluice;
  if (ctx === undefined) {
    ctx = {};
    req.sluice = ctx;
  }
  return ctx;
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

function pathOf(req: IncomingMessage): string {
  const p = (req as { path?: unknown }).path;
  if (typeof p === 'string') return p;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function publicPathMatcher(paths: unknown): ((path: string) => boolean) | undefined {
  if (paths === undefined) return undefined;
  if (!Array.isArray(paths))
    throw new TypeError(`options.publicPaths should be an array, got ${describe(paths)}`);
  if (paths.length === 0) return undefined;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const patterns: RegExp[] = [];
  paths.forEach((p: unknown, i) => {
    if (p instanceof RegExp) {
      // Without g/y a RegExp keeps no lastIndex between requests.
      patterns.push(new RegExp(p.source, p.flags.replace(/[gy]/g, '')));
    } else if (typeof p === 'string' && p.startsWith('/')) {
      if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
      else exact.add(p);
    } else {
      throw new TypeError(
        `options.publicPaths[${i}] should be a path starting with '/' or a RegExp, got ${describe(p)}`,
      );
    }
  });
  return (path) =>
    exact.has(path) ||
    prefixes.some((prefix) => path.startsWith(prefix)) ||
    patterns.some((re) => re.test(path));
}
