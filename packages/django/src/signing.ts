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
   * Accept what Django 3.1 and 3.2 still read and 4.0 refuses: sha1-signed values and, for session
   * data, the pre-3.1 format (`base64(sha1_hex:json)`).
   * @default false
   */
  readonly allowLegacy?: boolean | undefined;
}

/** Options of {@link unsignObject}. */
export interface UnsignObjectOptions extends ReadSignedOptions {
  /** Django's `SECRET_KEY`. */
  readonly secretKey: string;
  /**
   * Django's `SECRET_KEY_FALLBACKS` (4.1+): older keys whose signatures still verify, tried after
   * `secretKey` in order, as Django 4.1+ does. @default []
   */
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
/**
 * Base64 of a 20- or 32-byte digest ends in a character carrying two padding bits; only the
 * characters with those bits zero are what Django writes. Refusing the others makes decoding
 * one-to-one, so comparing digests is comparing the strings, as Django does.
 */
const CANONICAL_SIGNATURE = /^[A-Za-z0-9_-]*[AEIMQUYcgkosw048]$/;

/** Decoding options, checked, with their defaults. @internal */
export type Limits = ReturnType<typeof readLimits>;

/** `options` (when given) checked for the size bounds and `allowLegacy`. @internal */
export function readLimits(o: ReadSignedOptions | undefined) {
  if (o !== undefined) checkObject('options', o);
  return {
    maxLength: optional(o?.maxLength, DEFAULT_MAX_LENGTH, (v) => checkInteger('options.maxLength', v, 1)),
    maxDecompressedBytes: optional(o?.maxDecompressedBytes, DEFAULT_MAX_DECOMPRESSED_BYTES, (v) =>
      checkInteger('options.maxDecompressedBytes', v, 1),
    ),
    allowLegacy: optional(o?.allowLegacy, false, (v) => checkBoolean('options.allowLegacy', v)),
  };
}

/** `[secretKey, ...fallbackKeys]` of `options`, checked. @internal */
export function readKeys(o: { secretKey?: unknown; fallbackKeys?: unknown }): readonly string[] {
  checkObject('options', o);
  const secretKey = checkString('options.secretKey', o.secretKey);
  const fallbacks = o.fallbackKeys ?? [];
  if (!Array.isArray(fallbacks)) {
    throw new TypeError(`options.fallbackKeys should be an array of strings, got ${show(fallbacks)}`);
  }
  return [secretKey, ...fallbacks.map((key: unknown, i) => checkString(`options.fallbackKeys[${i}]`, key))];
}

/** @internal */
export function readSalt(salt: unknown, fallback: string): string {
  return optional(salt, fallback, (v) => checkString('options.salt', v, true));
}

/**
 * `Signer.unsign_object`: splits `payload:timestamp:signature` (TimestampSigner's layout), checks
 * the signature against each of `keys` in turn (HMAC-SHA256, or with `allowLegacy` HMAC-SHA1 as
 * Django 3.1/3.2), or without `keys` only refuses a sha1 signature unless `allowLegacy`; then
 * decodes URL-safe base64, zlib when it starts with `.` (bounded by `maxDecompressedBytes`), and
 * JSON read as Latin-1 like Django's serializer does.
 *
 * @internal
 */
export function openSigned(
  signed: unknown,
  o: Limits,
  keys: readonly string[] | undefined,
  salt: string,
): UnsignedObject {
  if (typeof signed !== 'string') throw malformed('not-a-string');
  if (signed.length > o.maxLength) throw malformed('too-large');
  if (!SIGNED_CHARS.test(signed)) throw malformed('structure');
  const signatureSep = signed.lastIndexOf(':');
  if (signatureSep <= 0) throw malformed('structure');
  const timestampSep = signed.lastIndexOf(':', signatureSep - 1);
  if (timestampSep < 0) throw malformed('structure');
  const timestamp = decodeBase62(signed.slice(timestampSep + 1, signatureSep));
  if (timestamp === undefined) throw malformed('timestamp');
  const signature = signed.slice(signatureSep + 1);
  if (signature.length === SHA1_SIGNATURE_LENGTH && !o.allowLegacy) {
    throw new SessionDataError('E_SESSION_LEGACY_DISABLED', 'legacy');
  }
  if (keys) verifySignature(signature, signed.slice(0, signatureSep), keys, salt);
  return { value: decodePayload(signed.slice(0, timestampSep), o), signedAt: timestamp * 1000 };
}

function verifySignature(
  signature: string,
  signedValue: string,
  keys: readonly string[],
  salt: string,
): void {
  const { length } = signature;
  if (
    (length === SHA256_SIGNATURE_LENGTH || length === SHA1_SIGNATURE_LENGTH) &&
    CANONICAL_SIGNATURE.test(signature)
  ) {
    const given = Buffer.from(signature, 'base64url');
    const algorithm = length === SHA256_SIGNATURE_LENGTH ? 'sha256' : 'sha1';
    for (const key of keys) {
      if (timingSafeEqual(given, saltedHmac(`${salt}signer`, signedValue, key, algorithm))) return;
    }
  }
  throw new SessionDataError('E_SESSION_BAD_SIGNATURE', 'signature');
}

function decodePayload(payload: string, o: Limits): unknown {
  const compressed = payload.startsWith('.');
  let bytes = decodeBase64Url(compressed ? payload.slice(1) : payload);
  if (bytes === undefined) throw malformed('base64');
  if (compressed) {
    try {
      bytes = inflateSync(bytes, { maxOutputLength: o.maxDecompressedBytes });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw malformed(code === 'ERR_BUFFER_TOO_LARGE' ? 'decompressed-too-large' : 'decompress', error);
    }
  } else if (bytes.length > o.maxDecompressedBytes) {
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
  return signer(options, DEFAULT_SIGNING_SALT)(value);
}

/** `options` checked (the salt defaulting to `defaultSalt`), as the function that signs with them. @internal */
export function signer(options: SignObjectOptions, defaultSalt: string): (value: unknown) => string {
  checkObject('options', options);
  const secretKey = checkString('options.secretKey', options.secretKey);
  const salt = readSalt(options.salt, defaultSalt);
  const compress = optional(options.compress, false, (v) => checkBoolean('options.compress', v));
  const now = optional(options.now, Date.now, (v) => checkFunction<() => number>('options.now', v));
  return (value) => {
    const ms = now();
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`options.now() should return non-negative epoch milliseconds, got ${String(ms)}`);
    }
    const data = Buffer.from(dumpPythonJson(value), 'latin1');
    let payload: string;
    // pako 2 compresses exactly as CPython's zlib (level 6, window 15, memLevel 8); node:zlib does not.
    const deflated = compress ? deflate(data) : undefined;
    if (deflated !== undefined && deflated.length < data.length - 1)
      payload = `.${encodeBase64Url(deflated)}`;
    else payload = encodeBase64Url(data);
    const signedValue = `${payload}:${encodeBase62(Math.floor(ms / 1000))}`;
    return `${signedValue}:${encodeBase64Url(saltedHmac(`${salt}signer`, signedValue, secretKey, 'sha256'))}`;
  };
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
  const keys = readKeys(options);
  return openSigned(signed, readLimits(options), keys, readSalt(options.salt, DEFAULT_SIGNING_SALT));
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
  return openSigned(signed, readLimits(options), undefined, '');
}
