import { channel } from 'node:diagnostics_channel';

/**
 * `node:diagnostics_channel` channels `@sluice/admission` publishes on. Publishing costs nothing
 * when nobody subscribes.
 *
 * @example
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe(admissionChannels.reject.name, (m) => log.info(m, 'request shed'));
 * ```
 */
export const admissionChannels = {
  /** `{ gate, key, priority, waitedMs, inFlight }` for every permit granted. */
  acquire: channel('sluice:admission:acquire'),
  /** `{ gate, key, priority, heldMs, outcome }` for every permit released. */
  release: channel('sluice:admission:release'),
  /** `{ gate, code, key, priority, retryAfterSeconds }` for every failed acquire and every circuit rejection. */
  reject: channel('sluice:admission:reject'),
  /** `{ gate, limit, previous }` when a gate's limit changes. */
  limit: channel('sluice:admission:limit'),
  /** `{ breaker, from, to }` on every circuit state change. */
  breaker: channel('sluice:admission:breaker'),
  /** `{ gate, event: 'fallback' | 'recovered', ... }` when a distributed gate loses or regains Redis. */
  redis: channel('sluice:admission:redis'),
} as const;
