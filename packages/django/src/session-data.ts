import { checkObject } from '@sluice/kit';
import { malformed } from './errors.js';
import { looksLegacy, openLegacy } from './legacy-session-data.js';
import {
  type Limits,
  openSigned,
  type ReadSignedOptions,
  readKeys,
  readLimits,
  readSalt,
  type SignObjectOptions,
  signer,
  type UnsignObjectOptions,
} from './signing.js';

/**
 * The salt Django's database, cache and cached_db session stores sign `session_data` with
 * (`'django.contrib.sessions.' + SessionStore.__qualname__`).
 */
export const DEFAULT_SESSION_SALT = 'django.contrib.sessions.SessionStore';

/** Options of {@link readSessionDataUnverified}: the size bounds and `allowLegacy`. */
export type ReadSessionDataOptions = ReadSignedOptions;

/** Options of {@link loadSessionData}: those of `unsignObject`, with the session store's salt. */
export interface LoadSessionDataOptions extends UnsignObjectOptions {
  /** Salt of the session store class. @default 'django.contrib.sessions.SessionStore' */
  readonly salt?: string | undefined;
}

/** Options of {@link dumpSessionData}: those of `signObject` (sessions are always compressed), with the session store's salt. */
export interface DumpSessionDataOptions extends Omit<SignObjectOptions, 'compress' | 'salt'> {
  /** Salt of the session store class. @default 'django.contrib.sessions.SessionStore' */
  readonly salt?: string | undefined;
}

/** Both formats, verified with `keys` (or not at all without them), as a session dictionary. */
function decodeSession(
  data: unknown,
  o: Limits,
  keys: readonly string[] | undefined,
  salt: string,
): Record<string, unknown> {
  const value =
    typeof data === 'string' && data.length <= o.maxLength && looksLegacy(data)
      ? openLegacy(data, o, keys, salt)
      : openSigned(data, o, keys, salt).value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw malformed('not-an-object');
  return value as Record<string, unknown>;
}

/**
 * Decodes and verifies a `django_session.session_data` value as Django's
 * `SessionBase.decode()` does (3.1 through 5.2): TimestampSigner, salted HMAC-SHA256, optional zlib,
 * JSON. Where Django answers an empty session for bad data, this throws, so callers can tell why.
 *
 * @returns the session dictionary
 * @throws {SessionDataError} `E_SESSION_MALFORMED` (not Django's format, too large, bad
 * base64/zlib/JSON, not a dictionary), `E_SESSION_BAD_SIGNATURE` (no key signed it),
 * `E_SESSION_LEGACY_DISABLED` (legacy format without `allowLegacy`)
 * @throws {TypeError|RangeError} for bad options
 * @example
 * const session = loadSessionData(row.session_data, { secretKey: process.env.DJANGO_SECRET_KEY! });
 * session._auth_user_id // '42'
 */
export function loadSessionData(data: string, options: LoadSessionDataOptions): Record<string, unknown> {
  const keys = readKeys(options);
  return decodeSession(data, readLimits(options), keys, readSalt(options.salt, DEFAULT_SESSION_SALT));
}

/**
 * Decodes `session_data` WITHOUT verifying its signature: for deployments that trust the database
 * row (its presence under an unguessable session key is the proof) and do not share `SECRET_KEY`.
 *
 * @returns the session dictionary
 * @throws {SessionDataError} `E_SESSION_MALFORMED`, or `E_SESSION_LEGACY_DISABLED` for legacy data
 * without `allowLegacy`
 * @throws {TypeError|RangeError} for bad options
 * @example
 * readSessionDataUnverified(row.session_data)._auth_user_id
 */
export function readSessionDataUnverified(
  data: string,
  options?: ReadSessionDataOptions,
): Record<string, unknown> {
  return decodeSession(data, readLimits(options), undefined, DEFAULT_SESSION_SALT);
}

/**
 * Encodes a session as Django's `SessionBase.encode()` does (3.1 through 5.2):
 * `signing.dumps(session, salt=..., compress=True)`. For the same timestamp the result is
 * byte-identical to Django's: compact separators, `ensure_ascii` escapes, zlib only when it makes
 * the payload shorter, compressed exactly as CPython's zlib does.
 *
 * Pass a `Map` to control key order (a plain object lists integer-like keys first).
 *
 * @throws {TypeError} for bad options, or a session Python's json cannot serialize
 * @throws {RangeError} when `now()` is not a non-negative finite number
 * @example
 * await pool.query('UPDATE django_session SET session_data = $1 WHERE session_key = $2',
 *   [dumpSessionData(session, { secretKey }), key]);
 */
export function dumpSessionData(
  session: Readonly<Record<string, unknown>> | ReadonlyMap<string, unknown>,
  options: DumpSessionDataOptions,
): string {
  checkObject('options', options);
  const sign = signer({ ...options, compress: true }, DEFAULT_SESSION_SALT);
  if (session === null || typeof session !== 'object' || Array.isArray(session)) {
    throw new TypeError(
      `session should be an object or a Map, got ${session === null ? 'null' : typeof session}`,
    );
  }
  return sign(session);
}
