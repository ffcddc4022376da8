// The public API of @sluice/gateway: what a user of the gateway needs. Everything else in src/
// is internal and may change in any release.

export type { StateChange } from './activity/activity.js';
export type { ShedReason } from './activity/shed-reason.js';
export type { HistoryStatus, Percentiles, RecentStatus } from './activity/timeline.js';
export type { WhoEntry, WhoTable } from './activity/top-table.js';
export { configHelp } from './config/docs.js';
export type { ListenAddress } from './config/kinds.js';
export { type LoadConfigResult, loadConfig, redactConfig, resolveConfig } from './config/load.js';
export {
  DEFAULT_CONFIG,
  type GatewayConfig,
  type GatewayConfigInput,
  type LogLevel,
} from './config/settings.js';
export {
  type ClassifiableRequest,
  CVAT_LOGOUT_PATH,
  CVAT_PASSWORD_CHANGE_PATH,
  CVAT_PROTECTED_PATHS,
  CVAT_PUBLIC_PATHS,
  CVAT_SERVER_APPLICATION,
  CVAT_WORKER_APPLICATIONS,
  cvatClassifier,
  type RequestClass,
  type RequestClassifier,
} from './cvat-profile.js';
export {
  type ConfigIssue,
  formatIssue,
  GatewayConfigError,
  GatewayError,
  type GatewayErrorCode,
  gatewayErrorStatus,
  isGatewayConfigError,
  isGatewayError,
} from './errors.js';
export {
  createGateway,
  type DrainResult,
  type Gateway,
  type GatewayAddress,
  type GatewayOptions,
} from './gateway.js';
export type { GatewayLogger } from './logger.js';
export { GATEWAY_APPLICATION_NAME, type GatewayEvents } from './parts.js';
export { type AccessLogEntry, gatewayChannels } from './pipeline.js';
export type { CheckResult, ReadinessReport } from './readiness.js';
export { createClassifier } from './request-class.js';
export type {
  AdmissionStatus,
  BreakerState,
  CacheStatus,
  ClassStatus,
  DatabaseStatus,
  RedisStatus,
  RequestStatus,
  StatusSnapshot,
} from './status.js';
export { GATEWAY_VERSION } from './version.js';
