/**
 * Base62 as Django's `TimestampSigner` writes timestamps (`baseconv.base62` up to Django 4.x,
 * `signing.b62_encode` since): digits, then upper case, then lower case; a leading `-` for negative.
 */

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const PATTERN = /^-?[0-9A-Za-z]{0,10}$/;

/**
 * Encodes an integer as Django does.
 *
 * @throws {RangeError} when `value` is not a safe integer
 * @example
 * encodeBase62(1_700_000_000) // '1r31eq'
 */
export function encodeBase62(value: number): string {
  if (!Number.isSafeInteger(value)) throw new RangeError(`value should be a safe integer, got ${value}`);
  if (value < 0) return `-${encodeBase62(-value)}`;
  if (value === 0) return '0';
  let out = '';
  let n = value;
  while (n > 0) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/**
 * Decodes Django's base62 (as Django does, a lone `-` reads as 0).
 *
 * @returns the integer, or `undefined` for text Django would not decode or that exceeds 10 digits
 * @example
 * decodeBase62('1r31eq') // 1700000000
 */
export function decodeBase62(text: string): number | undefined {
  if (text.length === 0 || !PATTERN.test(text)) return undefined;
  const negative = text.startsWith('-');
  let n = 0;
  for (let i = negative ? 1 : 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const digit = code <= 57 ? code - 48 : code <= 90 ? code - 55 : code - 61;
    n = n * 62 + digit;
  }
  return negative ? -n || 0 : n;
}
