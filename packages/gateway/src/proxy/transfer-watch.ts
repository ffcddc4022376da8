// Watches one transfer between the gateway and a client (a request body coming in, a response
// going out) and cuts it when the client is the one stalling: no progress for `idleMs`, or, once
// `idleMs` has passed since the start, an average rate under `minRate` bytes/s. A trickle of one
// byte every few seconds resets an idle timer forever; the rate catches it.

/** Why a transfer was cut. */
export type StallReason = 'idle' | 'slow';

/** Options of {@link watchTransfer}. */
export interface TransferWatchOptions {
  /** Bytes moved so far (a socket's `bytesRead` or `bytesWritten`). */
  readonly progress: () => number;
  /** True when the gateway, not the client, is what holds the transfer up right now. */
  readonly gatewayWaiting: () => boolean;
  readonly idleMs: number;
  /** Bytes per second; 0 turns the rate check off. */
  readonly minRate: number;
  readonly onStall: (reason: StallReason) => void;
}

/** Starts watching; returns `stop()`. One unref'd timer, ticking at a quarter of `idleMs` (5 ms..1 s). */
export function watchTransfer(o: TransferWatchOptions): () => void {
  const startedAt = performance.now();
  const startBytes = o.progress();
  let lastBytes = startBytes;
  let movedAt = startedAt;
  let timer: NodeJS.Timeout | undefined;
  const every = Math.max(5, Math.min(1_000, Math.floor(o.idleMs / 4)));
  const tick = (): void => {
    const now = performance.now();
    const bytes = o.progress();
    if (bytes !== lastBytes || o.gatewayWaiting()) {
      lastBytes = bytes;
      movedAt = now;
    } else if (now - movedAt >= o.idleMs) {
      timer = undefined;
      o.onStall('idle');
      return;
    }
    const elapsed = now - startedAt;
    if (o.minRate > 0 && elapsed >= o.idleMs && ((bytes - startBytes) * 1000) / elapsed < o.minRate) {
      timer = undefined;
      o.onStall('slow');
      return;
    }
    timer = setTimeout(tick, every);
    timer.unref();
  };
  timer = setTimeout(tick, every);
  timer.unref();
  return () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
}
