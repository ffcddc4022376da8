export type { CacheOutcome, CacheOutcomeStatus, CacheOutcomeTier } from './cache-outcome.js';
export { credentialKey, keyId } from './credential-key.js';
export { channels } from './diagnostics.js';
export { type SessionCacheEnvironment, validatorFromEnvironment } from './environment.js';
export {
  ConfigurationError,
  isConfigurationError,
  isL2Error,
  isSessionCacheClosedError,
  isSessionCacheError,
  isUnauthenticatedError,
  isValidatorError,
  L2Error,
  SessionCacheClosedError,
  SessionCacheError,
  type SessionCacheErrorCode,
  UnauthenticatedError,
  ValidatorError,
} from './errors.js';
export {
  type CredentialKind,
  credentialKinds,
  type Identity,
  type Validation,
  type Validator,
} from './identity.js';
export {
  type SessionCacheMiddleware,
  type SessionCacheMiddlewareOptions,
  type SessionCacheMiddlewareStats,
  sessionCache,
} from './middleware.js';
export type { RedisClient } from './redis-tier.js';
export type { SluiceContext } from './request-state.js';
export {
  type BusState,
  createSessionCache,
  type InvalidateResult,
  type L1Options,
  type L2Options,
  type L2State,
  type LockOptions,
  type LookupOptions,
  type LookupResult,
  type LookupTier,
  type RedisClusterConfig,
  type SessionCache,
  type SessionCacheEvents,
  type SessionCacheOptions,
  type SessionCacheStats,
} from './session-cache.js';
export { compositeValidator, type ValidatorRoutes } from './validators/composite.js';
export {
  type DjangoDatabaseValidatorOptions,
  type DjangoTables,
  djangoDatabaseValidator,
} from './validators/django-database.js';
export { type IntrospectionValidatorOptions, introspectionValidator } from './validators/introspection.js';
export type { Queryable } from './validators/queryable.js';
