import type { Credential } from '@sluice/django';
import { isTimeoutError, withTimeout } from '@sluice/kit';
import type { CacheEntry } from './entry.js';
import { isSessionCacheError, ValidatorError } from './errors.js';
import type { Validation, Validator } from './identity.js';

/** How answers become entries. */
export interface ValidationPolicy {
  readonly validator: Validator;
  /** Longest a validation may take, ms. */
  readonly timeoutMs: number;
  /** Lifetime of a valid entry, ms (never past the session's `expiresAt`). */
  readonly ttlMs: number;
  /** Lifetime of a refused entry, ms. */
  readonly negativeTtlMs: number;
  readonly now: () => number;
}

/**
 * Asks the validator about one credential, bounded by `timeoutMs` and by `signal` (the cache's
 * close), and turns its answer into a cache entry: valid until `ttlMs` or the session's end,
 * whichever comes first; refused (also an inactive user or an already expired session) for
 * `negativeTtlMs`. The validator's signal aborts when either bound passes, so its work (a queued
 * pool acquire, an HTTP call) stops too.
 *
 * @throws {ValidatorError} `E_VALIDATOR_TIMEOUT` or `E_VALIDATOR_UNAVAILABLE` (nothing to cache)
 * @throws {SessionCacheClosedError} when `signal` aborts because the cache closed
 */
export async function validateEntry(
  policy: ValidationPolicy,
  credential: Credential,
  signal: AbortSignal,
): Promise<CacheEntry> {
  let validation: Validation;
  try {
    validation = await withTimeout(
      (s) => policy.validator.validate(credential, { signal: s }),
      policy.timeoutMs,
      {
        signal,
        message: `the validator did not answer within ${policy.timeoutMs} ms (options.validatorTimeoutMs)`,
      },
    );
  } catch (cause) {
    if (isSessionCacheError(cause)) throw cause;
    if (isTimeoutError(cause)) throw new ValidatorError('E_VALIDATOR_TIMEOUT', cause.message, { cause });
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new ValidatorError('E_VALIDATOR_UNAVAILABLE', `the validator failed: ${message}`, { cause });
  }
  const now = policy.now();
  const refused = (reason: string): CacheEntry => ({
    valid: false,
    reason,
    expiresAt: now + policy.negativeTtlMs,
  });
  if (!validation.valid) return refused(validation.reason);
  const identity =
    validation.identity.credentialKind === credential.kind
      ? validation.identity
      : { ...validation.identity, credentialKind: credential.kind };
  const sessionEnd = identity.expiresAt ?? Number.POSITIVE_INFINITY;
  if (!identity.isActive) return refused('user-inactive');
  if (sessionEnd <= now) return refused('expired');
  return { valid: true, identity, expiresAt: Math.min(now + policy.ttlMs, sessionEnd) };
}
