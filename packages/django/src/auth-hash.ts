import { checkBoolean, checkChoice, checkString, optional } from '@sluice/kit';
import { constantTimeEqual, type HmacAlgorithm, saltedHmac } from './salted-hmac.js';
import { readKeys, type UnsignObjectOptions } from './signing.js';

/** The key salt of `AbstractBaseUser.get_session_auth_hash`. */
export const SESSION_AUTH_HASH_SALT = 'django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash';

/** The session key Django stores the auth hash under (`django.contrib.auth.HASH_SESSION_KEY`). */
export const HASH_SESSION_KEY = '_auth_user_hash';

/** Options of {@link verifySessionAuthHash}: the keys, as `unsignObject` takes them. */
export interface VerifySessionAuthHashOptions
  extends Pick<UnsignObjectOptions, 'secretKey' | 'fallbackKeys'> {
  /** Also accept the sha1 hash Django 3.1 and 3.2 still accept (`_legacy_get_session_auth_hash`). @default false */
  readonly allowLegacy?: boolean | undefined;
}

/**
 * `user.get_session_auth_hash()`: the hex HMAC of the user's password hash (the `auth_user.password`
 * column) that Django stores in the session at login as `_auth_user_hash`.
 *
 * @param passwordHash - the `password` column, e.g. `pbkdf2_sha256$260000$...`
 * @param secretKey - Django's `SECRET_KEY`
 * @param algorithm - @default 'sha256' (Django 3.1+; 'sha1' is the pre-3.1 hash)
 * @throws {TypeError} when `passwordHash` is not a string or `secretKey` is empty
 * @example
 * session._auth_user_hash === sessionAuthHash(user.password, secretKey)
 */
export function sessionAuthHash(
  passwordHash: string,
  secretKey: string,
  algorithm: HmacAlgorithm = 'sha256',
): string {
  checkString('passwordHash', passwordHash, true);
  checkString('secretKey', secretKey);
  checkChoice('algorithm', algorithm, ['sha256', 'sha1']);
  return saltedHmac(SESSION_AUTH_HASH_SALT, passwordHash, secretKey, algorithm).toString('hex');
}

/**
 * The check `django.contrib.auth.get_user` makes: the session's `_auth_user_hash` must equal the
 * user's session auth hash under `SECRET_KEY` or (Django 4.1+) one of `SECRET_KEY_FALLBACKS`. A
 * session without a hash fails, as in Django. Constant-time.
 *
 * @returns true when the session is still valid for this password hash
 * @throws {TypeError} for bad options
 * @example
 * if (!verifySessionAuthHash(session, user.password, { secretKey })) return anonymous();
 */
export function verifySessionAuthHash(
  session: Readonly<Record<string, unknown>>,
  passwordHash: string,
  options: VerifySessionAuthHashOptions,
): boolean {
  const keys = readKeys(options);
  const allowLegacy = optional(options.allowLegacy, false, (v) => checkBoolean('options.allowLegacy', v));
  checkString('passwordHash', passwordHash, true);
  if (session === null || typeof session !== 'object') return false;
  const stored = Object.hasOwn(session, HASH_SESSION_KEY) ? session[HASH_SESSION_KEY] : undefined;
  if (typeof stored !== 'string' || stored.length === 0) return false;
  let ok = false;
  for (const key of keys) {
    // Compare against every key so the time taken does not say which one matched.
    if (constantTimeEqual(stored, sessionAuthHash(passwordHash, key, 'sha256'))) ok = true;
    if (allowLegacy && constantTimeEqual(stored, sessionAuthHash(passwordHash, key, 'sha1'))) ok = true;
  }
  return ok;
}
