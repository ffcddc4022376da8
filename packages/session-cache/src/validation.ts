import type { Credential } from '@sluice/django';
import { isTimeoutError, withTimeout } from '@sluice/kit';
import type { ResolvedOptions } from './cache-options.js';
import type { CacheEntry } from './entry.js';
import { isSessionCacheError, ValidatorError } from './errors.js';
import type { Validation } from './identity.js';

/**
 * Asks the validator, bounded by `validatorTimeoutMs` and by `signal` (the cache's close; the
 * validator's own signal aborts with either, so its query or HTTP call stops too), and makes the
 * answer an entry: valid until `ttlMs` or the session's end; refused (also an inactive user or an
 * expired session) for `negativeTtlMs`.
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
