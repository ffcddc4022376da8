import type { Credential } from '@sluice/django';
import { isTimeoutError, withTimeout } from '@sluice/kit';
import type { ResolvedOptions } from './cache-options.js';
import type { CacheEntry } from './entry.js';
import { isSessionCacheError, ValidatorError } from './errors.js';
import type { Validation } from './identity.js';

/**
 * Asks the validator about one credential, bounded by `validatorTimeoutMs` and by `signal` (the
 * cache's close), and turns its answer into a cache entry: valid until `ttlMs` or the session's end,
 * whichever comes first; refused (also an inactive user or an already expired session) for
 * `negativeTtlMs`. The validator's signal aborts when either bound passes, so its work (a queued
 * pool acquire, an HTTP call) stops too.
 *
 * @throws {ValidatorError} `E_VALIDATOR_TIMEOUT` or `E_VALIDATOR_UNAVAILABLE` (nothing to cache)
 * @throws {SessionCacheClosedError} when `signal` aborts because the cache closed
 */
export async function validateEntry(
  o: ResolvedOptions,
  credential: Credential,
  signal: AbortSignal,
): Promise<CacheEntry> {
  let validation: Validation;
  try {
    validation = await withTimeout(
      (s) => o.validator.validate(credential, { signal: s }),
      o.validatorTimeoutMs,
      {
        signal,
        message: `the validator did not answer within ${o.validatorTimeoutMs} ms (options.validatorTimeoutMs)`,
      },
    );
  } catch (cause) {
    if (isSessionCacheError(cause)) throw cause;
    if (isTimeoutError(cause)) throw new ValidatorError('E_VALIDATOR_TIMEOUT', cause.message, { cause });
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new ValidatorError('E_VALIDATOR_UNAVAILABLE', `the validator failed: ${message}`, { cause });
  }
  const now = o.now();
  const refused = (reason: string): CacheEntry => ({
    valid: false,
    reason,
    expiresAt: now + o.negativeTtlMs,
  });
  if (!validation.valid) return refused(validation.reason);
  const identity = { ...validation.identity, credentialKind: credential.kind };
  const sessionEnd = identity.expiresAt ?? Number.POSITIVE_INFINITY;
  if (!identity.isActive) return refused('user-inactive');
  if (sessionEnd <= now) return refused('expired');
  return { valid: true, identity, expiresAt: Math.min(now + o.ttlMs, sessionEnd) };
}
