// The public API of @sluice/pool: everything else in src/ is internal.
export { type ApplicationPattern, applicationMatcher } from './application-pattern.js';
export { poolChannels } from './channels.js';
export { isConnectionError } from './connection-errors.js';
export { isPoolError, PoolError, type PoolErrorCode } from './errors.js';
export type { LatencySummary } from './latency-window.js';
export {
  type ApplicationActivity,
  activityOf,
  type ConnectionMonitor,
  type ConnectionMonitorEvents,
  type ConnectionSample,
  type MonitorOptions,
  monitorConnections,
  type ThresholdEvent,
} from './monitor.js';
export type { PoolOptions } from './options.js';
export {
  type DetectPgBouncerOptions,
  detectPgBouncer,
  monitorPgBouncer,
  type PgBouncerInfo,
  type PgBouncerMonitor,
  type PgBouncerMonitorEvents,
  type PgBouncerMonitorOptions,
  type PgBouncerSample,
} from './pgbouncer.js';
export { createPool } from './pool.js';
export {
  type PurgeBatch,
  type PurgeOptions,
  type PurgePool,
  type PurgeRun,
  purgeExpiredSessions,
  type ScheduledPurgeOptions,
  type SessionPurger,
  type SessionPurgerEvents,
  schedulePurge,
} from './purge.js';
export {
  type DeniedBackend,
  isReapPrivilegeError,
  type ReapedBackend,
  type Reaper,
  type ReaperEvents,
  type ReaperPool,
  type ReapOptions,
  ReapPrivilegeError,
  type ReapResult,
  reapIdleConnections,
  type ScheduledReapOptions,
  scheduleReaper,
} from './reaper.js';
export type { Scheduled } from './repeater.js';
export type { Queryable } from './server-budget.js';
export { sharedPool } from './shared-pool.js';
export type { ConnectionLevel } from './thresholds.js';
export type {
  AcquireOptions,
  LeakEvent,
  PoolErrorEvent,
  PoolEvents,
  PoolStats,
  PoolWarning,
  SluicePool,
  TransactionOptions,
  VerifyOptions,
  VerifyResult,
} from './types.js';
