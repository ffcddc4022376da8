// The public API of @sluice/gateway: everything else in src/ is internal.
export {
  CONFIG_FIELDS,
  configHelp,
  DEFAULT_CONFIG,
  type GatewayConfig,
  type GatewayConfigInput,
  type ListenAddress,
  type LoadConfigResult,
  type LogLevel,
  loadConfig,
  redactConfig,
  resolveConfig,
} from './config.js';
export { type CacheTier, type RequestContext, routeOf } from './context.js';
export {
  createDatabaseHealth,
  type DatabaseHealth,
  type DatabaseHealthEvents,
  type DatabaseHealthOptions,
  type DatabaseHealthState,
} from './database-health.js';
export { formatDuration, parseDuration } from './duration.js';
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
  type AccessLogEntry,
  CVAT_LOGOUT_PATH,
  createGateway,
  type DrainResult,
  GATEWAY_APPLICATION_NAME,
  type Gateway,
  type GatewayAddress,
  type GatewayEvents,
  type GatewayOptions,
  gatewayChannels,
} from './gateway.js';
export {
  clientAddress,
  clientResponseHeaders,
  FORWARDING_HEADERS,
  HOP_BY_HOP_HEADERS,
  IDENTITY_HEADER_PREFIXES,
  IDENTITY_HEADERS,
  isIdentityHeader,
  type UpstreamHeaderOptions,
  upstreamRequestHeaders,
} from './headers.js';
export { createLogger, type GatewayLogger } from './logger.js';
export {
  createGatewayMetrics,
  type GatewayMetrics,
  METRIC_NAMES,
  type RequestObservation,
} from './metrics.js';
export { canonicalPath, checkPathPattern, compilePathPatterns, type PathMatcher } from './path-pattern.js';
export {
  classifyUpstreamError,
  createProxy,
  type ProxyHandler,
  type ProxyOptions,
  type ProxyOutcome,
  type ProxyReplacement,
} from './proxy.js';
export { CVAT_PUBLIC_PATHS } from './public-paths.js';
export {
  type CheckResult,
  checkReadiness,
  type ReadinessCheck,
  type ReadinessReport,
  upstreamCheck,
} from './readiness.js';
export {
  type ClassifiableRequest,
  createClassifier,
  cvatClassifier,
  type RequestClass,
  type RequestClassifier,
} from './request-class.js';
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
export { STATUS_PATH, sendStatusPage } from './status-page.js';
export { GATEWAY_VERSION } from './version.js';
