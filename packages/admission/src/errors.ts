import { codedErrorGuard } from '@sluice/kit';

/** Stable codes of every error `@sluice/admission` throws on purpose. */
export type AdmissionErrorCode =
  | 'E_QUEUE_FULL'
  | 'E_QUEUE_TIMEOUT'
  | 'E_ABORTED'
  | 'E_CLOSED'
  | 'E_CIRCUIT_OPEN';

/** The codes that mean "the request was shed: answer 503 with `Retry-After`". */
export type AdmissionRejectionCode = Exclude<AdmissionErrorCode, 'E_ABORTED'>;

/**
 * The error `@sluice/admission` throws: a stable `code`, the HTTP `status` that fits it,
 * `retryAfterSeconds` for the `Retry-After` header (0 when it does not apply), and `cause`.
 *
 * @example
 * ```ts
 * try {
 *   using permit = await semaphore.acquire({ key: userId });
 *   await work();
 * } catch (e) {
 *   if (isAdmissionRejected(e)) res.status(e.status).set('Retry-After', String(e.retryAfterSeconds)).end();
 *   else throw e;
 * }
 * ```
 */
export class AdmissionError extends Error {
  override readonly name: string = 'AdmissionError';
  /** Stable machine-readable code. */
  readonly code: AdmissionErrorCode;
  /** HTTP status that fits the code: 499 for `E_ABORTED` (the client went away; nobody reads the answer), else 503. */
  readonly status: number;
  /** Seconds a client should wait before retrying; 0 when it does not apply (`E_ABORTED`). */
  readonly retryAfterSeconds: number;

  constructor(
    code: AdmissionErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterSeconds?: number | undefined },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = code === 'E_ABORTED' ? 499 : 503;
    this.retryAfterSeconds = code === 'E_ABORTED' ? 0 : Math.max(1, options?.retryAfterSeconds ?? 1);
  }

  /**
   * The JSON body `admission()` answers with: `{ detail, code, message, retryAfterSeconds }`
   * (`detail` is what Django REST framework clients read).
   */
  toJSON(): { detail: string; code: AdmissionErrorCode; message: string; retryAfterSeconds: number } {
    const { code, message, retryAfterSeconds } = this;
    return { detail: message, code, message, retryAfterSeconds };
  }
}

/**
 * True when `e` is an {@link AdmissionError}, optionally with the given code.
 *
 * @example
 * ```ts
 * if (isAdmissionError(e, 'E_QUEUE_TIMEOUT')) metrics.timeouts.inc();
 * ```
 */
export const isAdmissionError = codedErrorGuard(AdmissionError);

/**
 * True when `e` is a load-shedding rejection (queue full, queue timeout, closed, circuit open):
 * the caller should answer 503 with `Retry-After: e.retryAfterSeconds`.
 *
 * @example
 * ```ts
 * if (isAdmissionRejected(e)) return reply503(e.retryAfterSeconds);
 * ```
 */
export function isAdmissionRejected(
  e: unknown,
): e is AdmissionError & { readonly code: AdmissionRejectionCode } {
  return e instanceof AdmissionError && e.code !== 'E_ABORTED';
}
