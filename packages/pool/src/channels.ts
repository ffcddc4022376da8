import { channel } from 'node:diagnostics_channel';

/**
 * `node:diagnostics_channel` channels `@sluice/pool` publishes on. Subscribing costs nothing
 * when nobody listens.
 *
 * @example
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe(poolChannels.leak.name, (m) => log.warn(m, 'pool client leak'));
 * ```
 */
export const poolChannels = {
  /** `{ applicationName, waitMs }` after every successful acquire. */
  acquire: channel('sluice:pool:acquire'),
  /** `{ applicationName, code }` when an acquire fails (exhausted, timeout, closed, aborted, connect). */
  acquireFailed: channel('sluice:pool:acquire-failed'),
  /** The {@link LeakEvent} of every detected leak. */
  leak: channel('sluice:pool:leak'),
  /** `{ applicationName, error, phase, pid }` for every client/connection error. */
  error: channel('sluice:pool:error'),
  /** Every {@link ConnectionSample} a monitor takes. */
  sample: channel('sluice:pool:sample'),
  /** Every {@link ReapResult}. */
  reap: channel('sluice:pool:reap'),
  /** `{ table, deleted, batches }` after every purge run. */
  purge: channel('sluice:pool:purge'),
} as const;
