import { timingSafeEqual } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import {
  checkBoolean,
  checkFunction,
  checkInteger,
  checkObject,
  checkString,
  optional,
  show,
} from '@sluice/kit';
import { deflate } from 'pako';
import { decodeBase62, encodeBase62 } from './base62.js';
import { decodeBase64Url, encodeBase64Url } from './base64.js';
import { malformed, SessionDataError } from './errors.js';
import { DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_LENGTH } from './limits.js';
import { dumpPythonJson } from './python-json-dumps.js';
import { loadPythonJson } from './python-json-loads.js';
import { saltedHmac } from './salted-hmac.js';

/** The salt of Django's `signing.dumps` / `signing.loads` when none is given. */
export const DEFAULT_SIGNING_SALT = 'django.core.signing';

/** Options of {@link signObject}. */
export interface SignObjectOptions {
  /** Django's `SECRET_KEY`. */
  readonly secretKey: string;
  /** Namespace of the signature. @default 'django.core.signing' */
  readonly salt?: string | undefined;
  /** Compress with zlib when that makes the value shorter (Django's `compress=True`). @default false */
  readonly compress?: boolean | undefined;
  /** Clock in epoch milliseconds; the timestamp is its whole seconds. @default Date.now */
  readonly now?: (() => number) | undefined;
}

/** Size bounds for decoding; values beyond them are refused as `E_SESSION_MALFORMED`. */
export interface DecodeLimits {
  /** Longest accepted value, in characters. @default 4194304 (4 MiB) */
  readonly maxLength?: number | undefined;
  /** Largest size a compressed payload may inflate to, in bytes. @default 16777216 (16 MiB) */
  readonly maxDecompressedBytes?: number | undefined;
}

/** Options of {@link readSignedObjectUnverified}. */
export interface ReadSignedOptions extends DecodeLimits {
  /**
   * Accept sha1-signed values, which Django 3.1 and 3.2 still read and 4.0 refuses.
   * @default false
   */
  readonly allowLegacy?: boolean | undefined;
}

/** Options of {@link unsignObject}. */
export interface UnsignObjectOptions extends ReadSignedOptions {
  /** Django's `SECRET_KEY`. */
  readonly secretKey: string;
  /** Django's `SECRET_KEY_FALLBACKS` (4.1+): older keys whose signatures still verify. @default [] */
  readonly fallbackKeys?: readonly string[] | undefined;
  /** Namespace of the signature. @default 'django.core.signing' */
  readonly salt?: string | undefined;
}

/** A verified (or, from {@link readSignedObjectUnverified}, merely decoded) signed value. */
export interface UnsignedObject {
  /** The decoded JSON value. */
  readonly value: unknown;
  /** When it was signed (the TimestampSigner timestamp), epoch milliseconds. */
  readonly signedAt: number;
}

/** Only the 64 URL-safe base64 characters, `:` and the compression mark `.` can occur. */
const SIGNED_CHARS = /^[A-Za-z0-9_\-.:]*$/;
const SHA256_SIGNATURE_LENGTH = 43;
const SHA1_SIGNATURE_LENGTH = 27;

interface SignedParts {
  readonly signedValue: string;
  readonly payload: string;
  readonly timestamp: number;
  readonly signature: string;
}

interface Limits {
  readonly maxLength: number;
  readonly maxDecompressedBytes: number;
  readonly allowLegacy: boolean;
}

/** @internal */
export function readLimits(o: ReadSignedOptions | undefined, prefix: string): Limits {
  return {
    maxLength: optional(o?.maxLength, DEFAULT_MAX_LENGTH, (v) => checkInteger(`${prefix}.maxLength`, v, 1)),
    maxDecompressedBytes: optional(o?.maxDecompressedBytes, DEFAULT_MAX_DECOMPRESSED_BYTES, (v) =>
      checkInteger(`${prefix}.maxDecompressedBytes`, v, 1),
    ),
    allowLegacy: optional(o?.allowLegacy, false, (v) => checkBoolean(`${prefix}.allowLegacy`, v)),
  };
}

/** @internal */
export function readKeys(
  o: { secretKey?: unknown; fallbackKeys?: unknown },
  prefix: string,
): readonly string[] {
  const secretKey = checkString(`${prefix}.secretKey`, o.secretKey);
  const fallbacks = o.fallbackKeys ?? [];
  if (!Array.isArray(fallbacks)) {
    throw new TypeError(`${prefix}.fallbackKeys should be an array of strings, got ${show(fallbacks)}`);
  }
  return [secretKey, ...fallbacks.map((key: unknown, i) => checkString(`${prefix}.fallbackKeys[${i}]`, key))];
}

/** @internal */
export function readSalt(salt: unknown, fallback: string): string {
  return optional(salt, fallback, (v) => checkString('options.salt', v, true));
}

/**
 * Splits `payload:timestamp:signature` (TimestampSigner's layout) and checks what can be checked
 * without a key.
 *
 * @internal
 */
export function parseSigned(signed: unknown, maxLength: number): SignedParts {
  if (typeof signed !== 'string') throw malformed('not-a-string');
  if (signed.length > maxLength) throw malformed('too-large');
  if (!SIGNED_CHARS.test(signed)) throw malformed('structure');
  const signatureSep = signed.lastIndexOf(':');
  if (signatureSep <= 0) throw malformed('structure');
  const timestampSep = signed.lastIndexOf(':', signatureSep - 1);
  if (timestampSep < 0) throw malformed('structure');
  const timestamp = decodeBase62(signed.slice(timestampSep + 1, signatureSep));
  if (timestamp === undefined) throw malformed('timestamp');
  return {
    signedValue: signed.slice(0, signatureSep),
    payload: signed.slice(0, timestampSep),
    timestamp,
    signature: signed.slice(signatureSep + 1),
  };
}

/** True when the signature has the length of a sha1 (pre-4.0) signature. @internal */
export function isLegacySignature(parts: SignedParts): boolean {
  return parts.signature.length === SHA1_SIGNATURE_LENGTH;
}

function signature(signedValue: string, salt: string, key: string, algorithm: 'sha1' | 'sha256'): string {
  return encodeBase64Url(saltedHmac(`${salt}signer`, signedValue, key, algorithm));
}

/**
 * Base64 of a 20- or 32-byte digest ends in a character carrying two padding bits; only the
 * characters with those bits zero are what Django writes. Refusing the others makes decoding
 * one-to-one, so comparing digests is comparing the strings, as Django does.
 */
const CANONICAL_SIGNATURE = /^[A-Za-z0-9_-]*[AEIMQUYcgkosw048]$/;

function signatureMatches(
  given: Buffer,
  signedValue: string,
  keySalt: string,
  keys: readonly string[],
  algorithm: 'sha1' | 'sha256',
): boolean {
  for (const key of keys) {
    if (timingSafeEqual(given, saltedHmac(keySalt, signedValue, key, algorithm))) return true;
  }
  return false;
}

/**
 * Signer.unsign: the signature must be the salted HMAC-SHA256 of `payload:timestamp` under one of
 * `keys` (Django 4.1+ tries the secret key, then each fallback key), or with `allowLegacy`
 * HMAC-SHA1 (Django 3.1/3.2).
 *
 * @internal
 */
export function verifySignature(
  parts: SignedParts,
  keys: readonly string[],
  salt: string,
  allowLegacy: boolean,
): void {
  const { signature: sig, signedValue } = parts;
  const length = sig.length;
  if (length === SHA1_SIGNATURE_LENGTH && !allowLegacy) {
    throw new SessionDataError('E_SESSION_LEGACY_DISABLED', 'legacy');
  }
  if (
    (length === SHA256_SIGNATURE_LENGTH || length === SHA1_SIGNATURE_LENGTH) &&
    CANONICAL_SIGNATURE.test(sig)
  ) {
    const given = Buffer.from(sig, 'base64url');
    const algorithm = length === SHA256_SIGNATURE_LENGTH ? 'sha256' : 'sha1';
    if (signatureMatches(given, signedValue, `${salt}signer`, keys, algorithm)) return;
  }
  throw new SessionDataError('E_SESSION_BAD_SIGNATURE', 'signature');
}

/**
 * Signer.unsign_object after the signature: URL-safe base64, zlib when it starts with `.`
 * (bounded by `maxDecompressedBytes`), then JSON read as Latin-1 like Django's serializer does.
 *
 * @internal
 */
export function decodePayload(payload: string, maxDecompressedBytes: number): unknown {
  const compressed = payload.startsWith('.');
  let bytes = decodeBase64Url(compressed ? payload.slice(1) : payload);
  if (bytes === undefined) throw malformed('base64');
  if (compressed) {
    try {
      bytes = inflateSync(bytes, { maxOutputLength: maxDecompressedBytes });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw malformed(code === 'ERR_BUFFER_TOO_LARGE' ? 'decompressed-too-large' : 'decompress', error);
    }
  } else if (bytes.length > maxDecompressedBytes) {
    throw malformed('decompressed-too-large');
  }
  try {
    return loadPythonJson(bytes.toString('latin1'));
  } catch (error) {
    throw malformed('json', error);
  }
}

/**
 * Django's `signing.dumps(value, key, salt, compress=...)` (a `TimestampSigner` over the JSON
 * serializer): `[.]base64url(json or zlib(json)):base62(seconds):base64url(hmac-sha256)`.
 * Byte-identical to Django for the same timestamp (see {@link dumpPythonJson} for numbers and key
 * order, and `pako`'s deflate for compression).
 *
 * @throws {TypeError} for bad options or a value Python's json cannot serialize
 * @throws {RangeError} when `now()` is not a non-negative finite number
 * @example
 * signObject({ a: 1 }, { secretKey, salt: 'my.salt', now: () => 1_700_000_000_000 })
 */
export function signObject(value: unknown, options: SignObjectOptions): string {
  checkObject('options', options);
  const secretKey = checkString('options.secretKey', options.secretKey);
  const salt = readSalt(options.salt, DEFAULT_SIGNING_SALT);
  const compress = optional(options.compress, false, (v) => checkBoolean('options.compress', v));
  const now = optional(options.now, Date.now, (v) => checkFunction<() => number>('options.now', v));
  return sign(value, secretKey, salt, compress, now);
}

/** @internal */
export function sign(
  value: unknown,
  secretKey: string,
  salt: string,
  compress: boolean,
  now: () => number,
): string {
  const ms = now();
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new RangeError(`options.now() should return non-negative epoch milliseconds, got ${String(ms)}`);
  }
  const data = Buffer.from(dumpPythonJson(value), 'latin1');
  let payload: string;
  // pako 2 compresses exactly as CPython's zlib (level 6, window 15, memLevel 8); node:zlib does not.
  const deflated = compress ? deflate(data) : undefined;
  if (deflated !== undefined && deflated.length < data.length - 1) payload = `.${encodeBase64Url(deflated)}`;
  else payload = encodeBase64Url(data);
  const signedValue = `${payload}:${encodeBase62(Math.floor(ms / 1000))}`;
  return `${signedValue}:${signature(signedValue, salt, secretKey, 'sha256')}`;
}

/**
 * Django's `signing.loads(signed, key, salt, fallback_keys=...)` without `max_age` (compare
 * `signedAt` yourself): verifies, then decodes.
 *
 * @throws {SessionDataError} `E_SESSION_MALFORMED`, `E_SESSION_BAD_SIGNATURE`, or
 * `E_SESSION_LEGACY_DISABLED` (a sha1 signature without `allowLegacy`)
 * @throws {TypeError|RangeError} for bad options
 * @example
 * const { value, signedAt } = unsignObject(token, { secretKey, salt: 'my.salt' });
 */
export function unsignObject(signed: string, options: UnsignObjectOptions): UnsignedObject {
  checkObject('options', options);
  const keys = readKeys(options, 'options');
  const salt = readSalt(options.salt, DEFAULT_SIGNING_SALT);
  const limits = readLimits(options, 'options');
  const parts = parseSigned(signed, limits.maxLength);
  verifySignature(parts, keys, salt, limits.allowLegacy);
  return {
    value: decodePayload(parts.payload, limits.maxDecompressedBytes),
    signedAt: parts.timestamp * 1000,
  };
}

/**
 * Decodes a signed value WITHOUT checking its signature, for callers that trust where it came from.
 *
 * @throws {SessionDataError} `E_SESSION_MALFORMED`, or `E_SESSION_LEGACY_DISABLED` for a sha1
 * signature without `allowLegacy`
 * @throws {TypeError|RangeError} for bad options
 * @example
 * readSignedObjectUnverified(trustedValue).value
 */
export function readSignedObjectUnverified(signed: string, options?: ReadSignedOptions): UnsignedObject {
  if (options !== undefined) checkObject('options', options);
  const limits = readLimits(options, 'options');
  const parts = parseSigned(signed, limits.maxLength);
  if (isLegacySignature(parts) && !limits.allowLegacy)
    throw new SessionDataError('E_SESSION_LEGACY_DISABLED', 'legacy');
  return {
    value: decodePayload(parts.payload, limits.maxDecompressedBytes),
    signedAt: parts.timestamp * 1000,
  };
}
