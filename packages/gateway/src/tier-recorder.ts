import type { SessionCache } from '@sluice/session-cache';
import type { CacheTier } from './context.js';

/** Where the tier of the lookup in progress is written. */
export interface TierSink {
  cacheTier: CacheTier | undefined;
}

/**
 * Wraps a session cache so the tier that answered a request (`l1`, `l2`, `validator`) is written
 * to the sink that is current when the middleware calls `peek`/`lookup`. `sessionCache()` calls
 * both synchronously from its handler, so the gateway sets the sink just around that call.
 * Everything else is passed through to the cache unchanged.
 */
export function recordTiers(cache: SessionCache, current: () => TierSink | undefined): SessionCache {
  const peek: SessionCache['peek'] = (credential, options) => {
    const result = cache.peek(credential, options);
    const sink = current();
    if (result && sink) sink.cacheTier = result.tier;
    return result;
  };
  const lookup: SessionCache['lookup'] = (credential, options) => {
    const sink = current();
    const pending = cache.lookup(credential, options);
    if (sink) {
      pending.then(
        (result) => {
          sink.cacheTier = result.tier;
        },
        () => {
          sink.cacheTier = 'validator';
        },
      );
    }
    return pending;
  };
  return new Proxy(cache, {
    get(target, property) {
      if (property === 'peek') return peek;
      if (property === 'lookup') return lookup;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
