import { decodeBase64 } from './base64.js';
import { malformed, SessionDataError } from './errors.js';
import { loadPythonJson } from './python-json-loads.js';
import { constantTimeEqual, saltedHmac } from './salted-hmac.js';

/**
 * The pre-Django 3.1 `session_data` format: `base64(sha1_hex + ':' + json)`, where the hash is
 * `salted_hmac('django.contrib.sessions' + class name, json, SECRET_KEY)` (sha1, no dot between
 * the two). Django 3.1 and 3.2 still read it; 4.0 does not.
 */

const LEGACY_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;
const HASH = /^[0-9a-f]{40}$/;

interface LegacyParts {
  readonly hash: string;
  readonly serialized: Buffer;
}

/**
 * The legacy key salt for a session salt: `django.contrib.sessions.SessionStore` becomes
 * `django.contrib.sessionsSessionStore` (Django built it from the class name without a dot).
 *
 * @internal
 */
export function legacySaltFor(salt: string): string {
  const prefix = 'django.contrib.sessions.';
  return salt.startsWith(prefix) ? `django.contrib.sessions${salt.slice(prefix.length)}` : salt;
}

/** True when `data` can only be the legacy format (standard base64, which never contains `:`). @internal */
export function looksLegacy(data: string): boolean {
  return data.length > 0 && LEGACY_CHARS.test(data);
}

/** @internal */
export function parseLegacy(data: string): LegacyParts {
  const decoded = decodeBase64(data);
  if (decoded === undefined) throw malformed('structure');
  const sep = decoded.indexOf(0x3a);
  const hash = sep === 40 ? decoded.toString('latin1', 0, 40) : '';
  if (!HASH.test(hash)) throw malformed('structure');
  return { hash, serialized: decoded.subarray(41) };
}

/** @internal */
export function verifyLegacy(parts: LegacyParts, keys: readonly string[], salt: string): void {
  const keySalt = legacySaltFor(salt);
  for (const key of keys) {
    if (constantTimeEqual(parts.hash, saltedHmac(keySalt, parts.serialized, key, 'sha1').toString('hex')))
      return;
  }
  throw new SessionDataError('E_SESSION_BAD_SIGNATURE', 'signature');
}

/** @internal */
export function decodeLegacyJson(parts: LegacyParts, maxDecompressedBytes: number): unknown {
  if (parts.serialized.length > maxDecompressedBytes) throw malformed('decompressed-too-large');
  try {
    return loadPythonJson(parts.serialized.toString('latin1'));
  } catch (error) {
    throw malformed('json', error);
  }
}
