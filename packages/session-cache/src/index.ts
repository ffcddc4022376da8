export type {
  L1Options,
  L2Options,
  LockOptions,
  NegativeOptions,
  SessionCacheOptions,
} from './cache-options.js';
export type { CacheOutcome, CacheOutcomeStatus, CacheOutcomeTier } from './cache-outcome.js';
export { credentialKey, keyId } from './credential-key.js';
export { channels } from './diagnostics.js';
export { type SessionCacheEnvironment, validatorFromEnvironment } from './environment.js';
export {
  ConfigurationError,
  isSessionCacheError,
  L2Error,
  SessionCacheClosedError,
  SessionCacheError,
  type SessionCacheErrorCode,
  ValidatorError,
} from './errors.js';
export type { CredentialKind, Identity, Validation, Validator } from './identity.js';
export {
  type SessionCacheMiddleware,
  type SessionCacheMiddlewareOptions,
  type SessionCacheMiddlewareStats,
  sessionCache,
} from './middleware.js';
export type { RedisClient, RedisClusterConfig } from './redis-client.js';
export type { SluiceContext } from './request-state.js';
export { createSessionCache } from './session-cache.js';
export type {
  BusState,
  InvalidateResult,
  InvalidateUserOptions,
  InvalidateUserResult,
  L2State,
  LookupOptions,
  LookupResult,
  LookupTier,
  SessionCache,
  SessionCacheEvents,
  SessionCacheStats,
} from './types.js';
export { compositeValidator, type ValidatorRoutes } from './validators/composite.js';
export {
  type DjangoDatabaseValidatorOptions,
  type DjangoTables,
  djangoDatabaseValidator,
} from './validators/django-database.js';
export { type IntrospectionValidatorOptions, introspectionValidator } from './validators/introspection.js';
export type { Queryable } from './validators/queryable.js';
