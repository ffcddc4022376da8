import { decodeBase64 } from './base64.js';
import { malformed, SessionDataError } from './errors.js';
import { loadPythonJson } from './python-json-loads.js';
import { constantTimeEqual, saltedHmac } from './salted-hmac.js';
import type { Limits } from './signing.js';

/**
 * The pre-Django 3.1 `session_data` format: `base64(sha1_hex + ':' + json)`, where the hash is
 * `salted_hmac('django.contrib.sessions' + class name, json, SECRET_KEY)` (sha1, no dot between
 * the two). Django 3.1 and 3.2 still read it; 4.0 does not.
 */

const LEGACY_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;
const HASH = /^[0-9a-f]{40}$/;

/** True when `data` can only be the legacy format (standard base64, which never contains `:`). @internal */
export function looksLegacy(data: string): boolean {
  return data.length > 0 && LEGACY_CHARS.test(data);
}

/**
 * Decodes legacy `session_data`: refused unless `allowLegacy`; with `keys`, its hash must be one
 * of theirs (checked in constant time); then the JSON, bounded by `maxDecompressedBytes`.
 *
 * @internal
 */
export function openLegacy(
  data: string,
  o: Limits,
  keys: readonly string[] | undefined,
  salt: string,
): unknown {
  const decoded = decodeBase64(data);
  const hash = decoded?.indexOf(0x3a) === 40 ? decoded.toString('latin1', 0, 40) : '';
  if (decoded === undefined || !HASH.test(hash)) throw malformed('structure');
  if (!o.allowLegacy) throw new SessionDataError('E_SESSION_LEGACY_DISABLED', 'legacy');
  const serialized = decoded.subarray(41);
  // The key salt was built from the class name without a dot: `django.contrib.sessionsSessionStore`.
  const keySalt = salt.replace(/^django\.contrib\.sessions\./, 'django.contrib.sessions');
  const signedBy = (key: string): boolean =>
    constantTimeEqual(hash, saltedHmac(keySalt, serialized, key, 'sha1').toString('hex'));
  if (keys && !keys.some(signedBy)) throw new SessionDataError('E_SESSION_BAD_SIGNATURE', 'signature');
  if (serialized.length > o.maxDecompressedBytes) throw malformed('decompressed-too-large');
  try {
    return loadPythonJson(serialized.toString('latin1'));
  } catch (error) {
    throw malformed('json', error);
  }
}
