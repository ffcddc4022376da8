import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Hash algorithms Django uses with `salted_hmac`: sha256 since 3.1, sha1 for legacy values. */
export type HmacAlgorithm = 'sha1' | 'sha256';

const MAX_CACHED_KEYS = 64;
const derivedKeys = new Map<string, Buffer>();

/** `hash(key_salt + secret)`, remembered for the last few (salt, secret) pairs: bounded, FIFO. */
function derivedKey(keySalt: string, secret: string, algorithm: HmacAlgorithm): Buffer {
  const cacheKey = `${algorithm}:${keySalt.length}:${keySalt}${secret}`;
  let key = derivedKeys.get(cacheKey);
  if (key === undefined) {
    key = createHash(algorithm).update(keySalt, 'utf8').update(secret, 'utf8').digest();
    if (derivedKeys.size >= MAX_CACHED_KEYS) derivedKeys.delete(derivedKeys.keys().next().value ?? '');
    derivedKeys.set(cacheKey, key);
  }
  return key;
}

/**
 * Django's `django.utils.crypto.salted_hmac(key_salt, value, secret, algorithm=...)`: an HMAC of
 * `value` keyed by `hash(key_salt + secret)`. Strings are encoded as UTF-8, as Django's
 * `force_bytes` does.
 *
 * @param algorithm - @default 'sha1' (Django's default for this function; signing and the session
 * auth hash pass 'sha256')
 * @returns the raw digest
 * @example
 * saltedHmac('django.contrib.sessions.SessionStoresigner', value, secretKey, 'sha256')
 */
export function saltedHmac(
  keySalt: string,
  value: string | Uint8Array,
  secret: string,
  algorithm: HmacAlgorithm = 'sha1',
): Buffer {
  const hmac = createHmac(algorithm, derivedKey(keySalt, secret, algorithm));
  if (typeof value === 'string') hmac.update(value, 'utf8');
  else hmac.update(value);
  return hmac.digest();
}

/**
 * Django's `constant_time_compare`: compares the UTF-8 bytes of two strings in constant time.
 * Different lengths compare unequal at once, which reveals only the length.
 *
 * @internal
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
