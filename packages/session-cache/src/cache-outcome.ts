import { keyId } from './credential-key.js';
import type { CredentialKind } from './identity.js';

/**
 * Which tier answered a request's credential: `'l1'` (in-process), `'l2'` (Redis), `'validator'`
 * (the database or introspection endpoint was asked, or failed), or `'none'` (nothing was looked
 * up: a public path, no credential, a malformed or unsupported one, a closed cache).
 */
export type CacheOutcomeTier = 'l1' | 'l2' | 'validator' | 'none';

/**
 * What the lookup decided: `'valid'` (an identity), `'invalid'` (refused; at `l1`/`l2` that is a
 * negative entry), `'error'` (no answer: the validator failed, timed out or was busy, or the
 * cache was closed), `'public'` (a public path: no credential looked at).
 */
export type CacheOutcomeStatus = 'valid' | 'invalid' | 'error' | 'public';

/**
 * How `sessionCache()` answered one request, set as `req.sluice.cache` before the middleware
 * calls `next()` or answers 401/503. Never holds the credential or its full cache key: safe to
 * log and to use as metric labels.
 *
 * @example
 * ```ts
 * app.use(sessionCache());
 * app.use((req, _res, next) => {
 *   const c = req.sluice?.cache; // { tier: 'l1', status: 'valid', kind: 'session', keyId: 'q3J0…', reason: undefined }
 *   next();
 * });
 * ```
 */
export interface CacheOutcome {
  readonly tier: CacheOutcomeTier;
  readonly status: CacheOutcomeStatus;
  /**
   * Why, when not `'valid'`: for `'invalid'` the refusal (`'no-credential'`, `'malformed'`,
   * `'unsupported-credential'`, or the validator's reason such as `'session-not-found'`); for
   * `'error'` the error code (`'E_VALIDATOR_TIMEOUT'`, `'E_CLOSED'`, ...); else `undefined`.
   */
  readonly reason: string | undefined;
  /** The credential kind, once one was extracted (`undefined` for no, a malformed, or a public request). */
  readonly kind: CredentialKind | undefined;
  /** The first 12 characters of the credential's HMAC cache key (as in events), once computed. */
  readonly keyId: string | undefined;
}

/** An outcome; `key` is the credential's cache key, of which only the {@link keyId} is kept. */
export function outcome(
  tier: CacheOutcomeTier,
  status: CacheOutcomeStatus,
  reason?: string,
  kind?: CredentialKind,
  key?: string,
): CacheOutcome {
  return { tier, status, reason, kind, keyId: key === undefined ? undefined : keyId(key) };
}
