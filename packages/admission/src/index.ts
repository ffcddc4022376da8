export { type AdaptiveLimit, type AdaptiveLimitOptions, adaptiveLimit } from './adaptive-limit.js';
export {
  type AdmissionEvents,
  type AdmissionMiddleware,
  type AdmissionOptions,
  type AdmissionRequest,
  admission,
} from './admission-middleware.js';
export { admissionChannels } from './channels.js';
export {
  CircuitBreaker,
  type CircuitBreakerEvents,
  type CircuitBreakerOptions,
  type CircuitCall,
  type CircuitState,
  type CircuitStats,
} from './circuit-breaker.js';
export {
  type ConnectionMonitorLike,
  type ConnectionSampleLike,
  type DatabaseBudget,
  type DatabaseBudgetOptions,
  databaseBudget,
} from './database-budget.js';
export {
  AdmissionError,
  type AdmissionErrorCode,
  type AdmissionRejectionCode,
  admissionErrorStatus,
  isAdmissionError,
  isAdmissionRejected,
} from './errors.js';
export type { GateOptions } from './gate-core.js';
export { Gradient2, type Gradient2Options } from './gradient2.js';
export {
  fixedLimit,
  isLimitSource,
  type LatencySample,
  type LimitSource,
  poolSizeLimit,
} from './limit-source.js';
export type { RedisLike } from './redis-scripts.js';
export { RedisSemaphore, type RedisSemaphoreEvents, type RedisSemaphoreOptions } from './redis-semaphore.js';
export { Semaphore, type SemaphoreOptions } from './semaphore.js';
export type { AcquireOptions, AdmissionGate, GateEvents, Permit, Priority, ReleaseOutcome } from './types.js';
