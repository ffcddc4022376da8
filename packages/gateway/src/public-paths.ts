/**
 * CVAT's endpoints that answer without a credential, plus the UI's static files. The gateway
 * checks no credential on them (CVAT itself still applies its own rules). Patterns follow
 * `compilePathPatterns`: prefixes on segment boundaries, `/` at the end for a whole tree.
 */
export const CVAT_PUBLIC_PATHS: readonly string[] = Object.freeze([
  '/api/server/about',
  '/api/server/health',
  '/api/auth/login',
  '/api/auth/register',
  '/api/auth/password/reset',
  '/api/auth/account-confirm-email',
  '/api/auth/email-confirmation',
  '/api/auth/social',
  '/api/auth/rules',
  '/api/schema',
  '/api/swagger',
  '/api/docs',
  '/static/',
  '/assets/',
  '/favicon.ico',
]);
