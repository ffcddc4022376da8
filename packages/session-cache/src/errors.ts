import { codedErrorGuard } from '@sluice/kit';

/**
 * Every code of `@sluice/session-cache` with the HTTP status a server answers it with (none for
 * those that only reach events or construction).
 */
const sessionCacheErrorStatus = {
  E_UNAUTHENTICATED: 401, // the middleware's 401 body: no credential, a malformed one, or one the validator refused
  E_VALIDATOR_UNAVAILABLE: 503, // the validator failed (database or introspection endpoint down)
  E_VALIDATOR_TIMEOUT: 503, // the validator did not answer within `validatorTimeoutMs`
  E_VALIDATOR_BUSY: 503, // more than `maxPendingValidations` distinct credentials are being validated
  E_CLOSED: 503, // the cache was closed
  E_L2_ERROR: undefined, // a Redis command failed
  E_L2_TIMEOUT: undefined, // a Redis command took longer than `l2.timeoutMs`
  E_L2_UNAVAILABLE: undefined, // Redis is not connected or L2 is down
  E_CONFIGURATION: undefined, // the cache cannot be built from the options and the environment
} as const satisfies Record<string, number | undefined>;

/** Stable error codes of `@sluice/session-cache`: each one's status and meaning are in the package README's Errors table. */
export type SessionCacheErrorCode = keyof typeof sessionCacheErrorStatus;

/** Base class of every error this package throws (option validation aside, which throws TypeError/RangeError). */
export class SessionCacheError extends Error {
  override readonly name: string = 'SessionCacheError';
  /** Stable machine-readable code. */
  readonly code: SessionCacheErrorCode;
  /** HTTP status a server should answer with, when one applies. */
  readonly status: number | undefined;

  constructor(code: SessionCacheErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.code = code;
    this.status = sessionCacheErrorStatus[code];
  }
}

/** The validator could not answer (down, timed out, too busy). Status 503; never cached. */
export class ValidatorError extends SessionCacheError {
  override readonly name = 'ValidatorError';
  constructor(
    code: 'E_VALIDATOR_UNAVAILABLE' | 'E_VALIDATOR_TIMEOUT' | 'E_VALIDATOR_BUSY',
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(code, message, options);
  }
}

/** A Redis (L2) operation failed. The cache falls back to L1 + validator; this surfaces in events only. */
export class L2Error extends SessionCacheError {
  override readonly name = 'L2Error';
  constructor(
    code: 'E_L2_ERROR' | 'E_L2_TIMEOUT' | 'E_L2_UNAVAILABLE',
    /** The L2 operation that failed (`'get'`, `'set'`, `'del'`, `'publish'`, `'lock'`, `'ping'`, ...). */
    readonly operation: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(code, message, options);
  }
}

/** The cache was used after `close()`. Status 503. */
export class SessionCacheClosedError extends SessionCacheError {
  override readonly name = 'SessionCacheClosedError';
  constructor() {
    super('E_CLOSED', 'the session cache is closed');
  }
}

/** The cache cannot be built: e.g. no validator and neither `DATABASE_URL` nor `SLUICE_INTROSPECTION_URL` set. */
export class ConfigurationError extends SessionCacheError {
  override readonly name = 'ConfigurationError';
  constructor(message: string) {
    super('E_CONFIGURATION', message);
  }
}

/**
 * True for any error this package throws (not TypeError/RangeError from option validation),
 * optionally of one `code`.
 *
 * @example
 * if (isSessionCacheError(e, 'E_VALIDATOR_TIMEOUT')) log.warn('validation timed out');
 */
export const isSessionCacheError = codedErrorGuard(SessionCacheError);
