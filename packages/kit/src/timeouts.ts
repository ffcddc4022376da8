/** What {@link withTimeout} rejects with when the time runs out. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  readonly code = 'E_TIMEOUT';
  constructor(
    message: string,
    /** The timeout that passed, ms. */
    readonly timeoutMs: number,
  ) {
    super(message);
  }
}

/** True for a {@link TimeoutError} (or any error named `TimeoutError`, as `AbortSignal.timeout()` makes). */
export function isTimeoutError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'TimeoutError';
}

/** Options of {@link withTimeout}. */
export interface WithTimeoutOptions {
  /** The caller's signal: aborting it aborts the work too (rejecting with its reason). */
  readonly signal?: AbortSignal | undefined;
  /** Message of the {@link TimeoutError}. @default 'timed out after <ms> ms' */
  readonly message?: string | undefined;
}

/**
 * Runs `work` with a signal that aborts after `timeoutMs` or when `options.signal` aborts, and
 * settles as soon as either happens, even if `work` ignores its signal. The timer is unref'd and
 * cleared however it ends, and it is an ordinary `setTimeout` so fake timers drive it (unlike
 * `AbortSignal.timeout`).
 *
 * @throws {TimeoutError} when the time runs out; the caller's abort reason when it aborts.
 * @example
 * ```ts
 * const rows = await withTimeout((signal) => pool.query(sql, [], { signal }), 2000);
 * ```
 */
export function withTimeout<T>(
  work: (signal: AbortSignal) => Promise<T>,
  timeoutMs: number,
  options: WithTimeoutOptions = {},
): Promise<T> {
  const parent = options.signal;
  if (parent?.aborted) return Promise.reject(parent.reason);
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const stop = (reason: unknown): void => {
      controller.abort(reason);
      reject(reason);
    };
    const timer = setTimeout(
      () => stop(new TimeoutError(options.message ?? `timed out after ${timeoutMs} ms`, timeoutMs)),
      timeoutMs,
    );
    timer.unref?.();
    const onAbort = (): void => stop(parent?.reason);
    parent?.addEventListener('abort', onAbort, { once: true });
    const done =
      <A>(settle: (a: A) => void) =>
      (a: A): void => {
        clearTimeout(timer);
        parent?.removeEventListener('abort', onAbort);
        settle(a);
      };
    let started: Promise<T>;
    try {
      started = work(controller.signal);
    } catch (error) {
      done(reject)(error);
      return;
    }
    started.then(done(resolve), done(reject));
  });
}
