import { codedErrorGuard } from '@sluice/kit';

/** Stable codes of {@link SessionDataError}. */
export type SessionDataErrorCode = keyof typeof MESSAGES;

/**
 * Why a value was refused, finer than {@link SessionDataErrorCode} (for logs and metrics; the set
 * may grow, so switch on `code` for decisions).
 */
export type SessionDataErrorReason =
  /** Not a string. */
  | 'not-a-string'
  /** Longer than `maxLength`. */
  | 'too-large'
  /** Not `payload:timestamp:signature` over Django's URL-safe alphabet. */
  | 'structure'
  /** The timestamp is not base62. */
  | 'timestamp'
  /** No key produced this signature. */
  | 'signature'
  /** The payload is not URL-safe base64. */
  | 'base64'
  /** The compressed payload is not a zlib stream. */
  | 'decompress'
  /** The compressed payload inflates past `maxDecompressedBytes` (a zip bomb, or a misconfigured limit). */
  | 'decompressed-too-large'
  /** The payload is not JSON (as Python's `json` reads it). */
  | 'json'
  /** The JSON is not an object (a session is a dictionary). */
  | 'not-an-object'
  /** A valid pre-3.1 (or sha1-signed) value while `allowLegacy` is off. */
  | 'legacy';

const MESSAGES = {
  E_SESSION_MALFORMED: 'session data is malformed',
  E_SESSION_BAD_SIGNATURE: 'session data signature does not match',
  E_SESSION_LEGACY_DISABLED: 'session data is in the legacy (pre-Django 3.1) format and allowLegacy is off',
} as const;

/**
 * Session data (or another Django-signed value) could not be decoded or verified.
 *
 * | code | meaning |
 * | --- | --- |
 * | `E_SESSION_MALFORMED` | not Django's format, too large, bad base64/zlib/JSON, not an object |
 * | `E_SESSION_BAD_SIGNATURE` | well-formed, but neither the secret key nor a fallback key signed it |
 * | `E_SESSION_LEGACY_DISABLED` | a pre-3.1 (or sha1-signed) value and `allowLegacy` is off |
 *
 * @example
 * try { loadSessionData(row.session_data, { secretKey }); }
 * catch (e) { if (isSessionDataError(e) && e.code === 'E_SESSION_BAD_SIGNATURE') return anonymous(); throw e; }
 */
export class SessionDataError extends Error {
  override readonly name = 'SessionDataError';
  /** Stable code; see the table above. */
  readonly code: SessionDataErrorCode;
  /** Finer reason, for logs. */
  readonly reason: SessionDataErrorReason;

  /** `options.cause` is the underlying error (e.g. from `node:zlib` or `JSON.parse`). */
  constructor(code: SessionDataErrorCode, reason: SessionDataErrorReason, options?: { cause?: unknown }) {
    super(`${MESSAGES[code]} (${reason})`, options);
    this.code = code;
    this.reason = reason;
  }
}

/**
 * Type guard for {@link SessionDataError}, optionally of one `code`.
 *
 * @example
 * if (isSessionDataError(e, 'E_SESSION_BAD_SIGNATURE')) return anonymous();
 */
export const isSessionDataError = codedErrorGuard(SessionDataError);

/** @internal */
export function malformed(reason: SessionDataErrorReason, cause?: unknown): SessionDataError {
  return new SessionDataError('E_SESSION_MALFORMED', reason, cause === undefined ? undefined : { cause });
}
