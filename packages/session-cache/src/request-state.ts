import type { CacheOutcome } from './cache-outcome.js';
import type { Identity } from './identity.js';

/**
 * What Sluice puts on a request. Declared in the global `Express` namespace so other Sluice
 * middleware (and applications) can add fields by merging `Express.SluiceContext`.
 */
declare global {
  namespace Express {
    interface SluiceContext {
      /**
       * The authenticated user, set by `sessionCache()`: an {@link Identity}, or `null` when the
       * request is let through unauthenticated (`onUnauthenticated: 'next'`, `onValidatorError: 'next'`).
       */
      identity?: Identity | null | undefined;
      /** Why `identity` is `null` (e.g. `'no-credential'`, `'malformed'`, `'session-not-found'`, `'validator-error'`). */
      unauthenticatedReason?: string | undefined;
      /**
       * How `sessionCache()` answered: the tier (`l1`, `l2`, `validator`, `none`), the status
       * (`valid`, `invalid`, `error`, `public`), the reason, the credential kind and the key id.
       * Set on every request the middleware handles, before `next()` or its 401/503. Never the credential.
       */
      cache?: CacheOutcome | undefined;
    }
    interface Request {
      /** Per-request state of Sluice middleware. */
      sluice?: SluiceContext | undefined;
    }
  }
}

/** The `req.sluice` object (see the `Express.SluiceContext` declaration). */
export type SluiceContext = Express.SluiceContext;

/** Marks a request `sessionCache()` already handled: it never runs twice on one request. */
export const kHandled: unique symbol = Symbol.for('sluice.session-cache.handled');
/** The HMAC cache key of the credential a request carried (for `invalidateRequest`). */
export const kCacheKey: unique symbol = Symbol.for('sluice.session-cache.key');

/** The fields this package reads and writes on a request object. */
export interface RequestState {
  sluice?: Express.SluiceContext | undefined;
  [kHandled]?: true | undefined;
  [kCacheKey]?: string | undefined;
}
