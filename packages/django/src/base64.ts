/**
 * Base64 as Django and Django REST framework use it: Django's signing writes URL-safe base64
 * without padding (`signing.b64_encode`); the pre-3.1 session format and HTTP Basic credentials
 * use standard base64 with padding. Decoders here are strict: they return `undefined` for any
 * character outside the alphabet instead of skipping it as Python's lenient decoder does.
 */

const URL_SAFE = /^[A-Za-z0-9_-]*$/;
const STANDARD = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Django's `signing.b64_encode`: URL-safe base64 with the `=` padding stripped.
 *
 * @example
 * encodeBase64Url(Buffer.from('"hello"')) // 'ImhlbGxvIg'
 */
export function encodeBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Django's `signing.b64_decode` (padding restored), strict about the alphabet.
 *
 * @returns the bytes, or `undefined` when `text` is not unpadded URL-safe base64
 * @example
 * decodeBase64Url('ImhlbGxvIg')?.toString() // '"hello"'
 */
export function decodeBase64Url(text: string): Buffer | undefined {
  if (text.length % 4 === 1 || !URL_SAFE.test(text)) return undefined;
  return Buffer.from(text, 'base64url');
}

/**
 * Standard base64 with padding (RFC 4648 section 4), strict: the length must be a multiple of 4 and
 * `=` may only end the text.
 *
 * @returns the bytes, or `undefined` when `text` is not padded standard base64
 * @example
 * decodeBase64('dXNlcjpwYXNz')?.toString() // 'user:pass'
 */
export function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !STANDARD.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}
