// The public API of @sluice/admission: what an application or the gateway calls. Everything
// else in src/ is internal.
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
  isAdmissionError,
  isAdmissionRejected,
} from './errors.js';
export type { GateOptions, PerPriority } from './gate-core.js';
export {
  type GateDemand,
  type LatencySample,
  type LimitSource,
  poolSizeLimit,
} from './limit-source.js';
export {
  type LoadLimit,
  type LoadLimitOptions,
  type LoadLimitReason,
  type LoadSample,
  loadLimit,
} from './load-limit.js';
export type { RedisLike } from './redis-scripts.js';
export { RedisSemaphore, type RedisSemaphoreEvents, type RedisSemaphoreOptions } from './redis-semaphore.js';
export { Semaphore, type SemaphoreOptions } from './semaphore.js';
export type { AcquireOptions, AdmissionGate, GateEvents, Permit, Priority, ReleaseOutcome } from './types.js';
