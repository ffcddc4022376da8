/** Why a wait ended before it was served. */
export type WaitEnd = 'timeout' | 'abort';

/**
 * Arms the two ways a queued wait can end on its own: its timeout and its caller's signal. `onEnd`
 * runs at most once, and never after the returned `disarm()` (call it when the wait is served or
 * removed). One timer (unref'd) and one listener per wait, both cleared by `disarm()`.
 *
 * @example
 * ```ts
 * const node = queue.push(waiter);
 * waiter.disarm = armWait(timeoutMs, signal, (why) => { queue.remove(node); waiter.reject(why); });
 * ```
 */
export function armWait(
  timeoutMs: number | undefined,
  signal: AbortSignal | undefined,
  onEnd: (why: WaitEnd) => void,
): () => void {
  let armed = true;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const disarm = (): void => {
    if (!armed) return;
    armed = false;
    if (timer !== undefined) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
  const end = (why: WaitEnd): void => {
    if (!armed) return;
    disarm();
    onEnd(why);
  };
  const onAbort = (): void => end('abort');
  if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
    timer = setTimeout(end, timeoutMs, 'timeout');
    timer.unref?.();
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  return disarm;
}
