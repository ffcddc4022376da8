import { codedErrorGuard } from '@sluice/kit';

/** The code of every error `@sluice/pool` throws on purpose, with the HTTP status that fits it. */
const poolErrorStatus = {
  E_POOL_EXHAUSTED: 503,
  E_POOL_TIMEOUT: 503,
  E_POOL_CLOSED: 503,
  E_POOL_ABORTED: 499,
  E_POOL_CONNECT: 503,
  E_POOL_MISFIT: 500,
  E_REAP_PRIVILEGE: 500,
} as const;

/** Stable codes of every error `@sluice/pool` throws on purpose. */
export type PoolErrorCode = keyof typeof poolErrorStatus;

/**
 * The error `@sluice/pool` throws: a stable `code`, the HTTP `status` that fits it, and the
 * underlying `cause` when there is one.
 *
 * @example
 * ```ts
 * try {
 *   await pool.query('SELECT 1');
 * } catch (e) {
 *   if (isPoolError(e, 'E_POOL_EXHAUSTED')) res.status(e.status).set('Retry-After', '1').end();
 * }
 * ```
 */
export class PoolError extends Error {
  override readonly name: string = 'PoolError';
  /** Stable machine-readable code. */
  readonly code: PoolErrorCode;
  /** HTTP status that fits the code (503 for capacity problems). */
  readonly status: number;

  constructor(code: PoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = poolErrorStatus[code];
  }
}

/**
 * True when `e` is a {@link PoolError}, optionally with the given code.
 *
 * @example
 * ```ts
 * if (isPoolError(e, 'E_POOL_TIMEOUT')) retryLater();
 * ```
 */
export const isPoolError = codedErrorGuard(PoolError);
