export { credentialFromLogin, LoginError, parseSetCookie } from './auth.js';
export { isRequestFailure, RequestFailure, retryAfterMs } from './http.js';
export type {
  BulkExportCredential,
  BulkExportOptions,
  FailureKind,
  Stage,
  TaskOutcome,
} from './options.js';
export { resolveOptions } from './options.js';
export { type LatencySummary, summarize } from './recorder.js';
export { compareReports, formatReport, markdownTable } from './report.js';
export { type BulkExportReport, runBulkExport } from './run.js';
