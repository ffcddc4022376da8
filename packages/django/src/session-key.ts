/**
 * Session keys Django's session stores generate: 32 characters of `[a-z0-9]`
 * (`get_random_string(32, VALID_KEY_CHARS)`). Django rejects keys under 8 characters and the
 * database column holds at most 40, so only `[a-z0-9]{8,40}` can name a stored session.
 */
export const SESSION_KEY_PATTERN = /^[a-z0-9]{8,40}$/;

/**
 * True when `key` can be a Django session key: `[a-z0-9]{8,40}`. Anything else cannot name a
 * session row, so it is refused without a database query.
 *
 * @example
 * isValidSessionKey('abcdefgh12345678abcdefgh12345678') // true
 * isValidSessionKey('ABC') // false
 */
export function isValidSessionKey(key: string): boolean {
  return typeof key === 'string' && SESSION_KEY_PATTERN.test(key);
}
