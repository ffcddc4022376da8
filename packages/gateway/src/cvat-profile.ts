// What the gateway knows of CVAT 2.x (facts from CVAT 2.73's source): which paths answer without
// a credential, which certainly need one, which requests are bulk work, the application names
// of its database connections, and the endpoints that change credentials. These are the
// gateway's defaults; any other Django stack overrides them with settings.
import type { IncomingHttpHeaders } from 'node:http';

/** The admission class of a request: `bulk` for exports, downloads and uploads, `interactive` for what a person waits on. */
export type RequestClass = 'bulk' | 'interactive';

/** What a classifier sees of a request. */
export interface ClassifiableRequest {
  readonly method: string;
  /** The canonical (percent-decoded) path, without the query string. */
  readonly pathname: string;
  /** The raw query string without `?` (may be empty). */
  readonly search: string;
  readonly headers: IncomingHttpHeaders;
}

/** Decides the admission class of a request. */
export type RequestClassifier = (request: ClassifiableRequest) => RequestClass;

const paths = (text: string): readonly string[] => Object.freeze(text.trim().split(/\s+/));

/**
 * CVAT endpoints answered without a credential (CVAT still applies its own rules), plus the UI's
 * static files: `/api/server/about`, `/api/server/health`, login, registration, password reset,
 * e-mail confirmation, social login, `/api/auth/rules`, logout (AllowAny in CVAT: it must answer
 * 200 and delete the cookies even with an expired session), `/api/webhooks/events`, the API
 * schema and docs.
 */
export const CVAT_PUBLIC_PATHS: readonly string[] = paths(`
  /api/server/about /api/server/health /api/auth/login /api/auth/logout /api/auth/register
  /api/auth/password/reset /api/auth/account-confirm-email /api/auth/email-confirmation
  /api/auth/social /api/auth/rules /api/webhooks/events /api/schema /api/swagger /api/docs /static/
  /assets/ /favicon.ico
`);

/**
 * CVAT routes that always need a credential: a request there without one is answered 401 by the
 * gateway. Anything else under `/api/` without a credential goes to CVAT, which knows best (e.g.
 * `/api/assets/<uuid>` answers anonymous users for public guides).
 */
export const CVAT_PROTECTED_PATHS: readonly string[] = paths(`
  /api/users /api/projects /api/tasks /api/jobs /api/requests /api/labels /api/issues /api/comments
  /api/cloudstorages /api/guides /api/organizations /api/memberships /api/invitations /api/webhooks
  /api/lambda /api/quality /api/consensus /api/events /api/analytics /api/auth/access_tokens
  /api/auth/password/change /api/server/annotation /api/server/plugins /api/server/share
`);

/** `application_name` of CVAT's server connections (since CVAT 2.10.3). */
export const CVAT_SERVER_APPLICATION = 'cvat:server';
/** `application_name` pattern of CVAT's RQ workers (`cvat:worker:<queues>`). */
export const CVAT_WORKER_APPLICATIONS = 'cvat:worker:*';

/** CVAT's logout: a 2xx to a POST here ends every credential of the user (session, DRF token). */
export const CVAT_LOGOUT_PATH = '/api/auth/logout';
/** CVAT's password change: a 2xx ends the user's other sessions. */
export const CVAT_PASSWORD_CHANGE_PATH = '/api/auth/password/change';

const ID = '[^/]+';
const RESOURCE = `/api/(?:tasks|projects|jobs)/${ID}`;
const rule = (source: string): RegExp => new RegExp(`^${source}/?$`);
/** POST starts an export (the worker does the work, the request waits on the queue). */
const EXPORT = rule(
  `${RESOURCE}/(?:dataset|backup)/export|/api/(?:tasks|projects)/${ID}/backup/export|/api/events/export`,
);
/** GET downloads a prepared file. */
const DOWNLOAD = rule(
  `${RESOURCE}/(?:dataset|backup)/download|/api/events/download|/api/quality/reports/${ID}/data`,
);
/** Endpoints that take uploads: TUS (POST create, HEAD/PATCH chunks) and CVAT's Upload-Start/Finish requests. */
const UPLOAD = new RegExp(
  `^(?:/api/tasks/${ID}/data|/api/(?:tasks|jobs)/${ID}/annotations|/api/projects/${ID}/dataset|/api/(?:tasks|projects)/backup)(?:/|$)`,
);
const UPLOAD_HEADERS = paths(
  'tus-resumable upload-length upload-offset upload-start upload-finish upload-multiple',
);
/** GET of a whole task's annotations: synchronous and heavy. */
const TASK_ANNOTATIONS = rule(`/api/tasks/${ID}/annotations`);

/**
 * CVAT's classes: bulk for exports (`POST .../dataset/export`, `.../backup/export`,
 * `/api/events/export`), downloads (`GET .../dataset/download`, `.../backup/download`,
 * `/api/events/download`, `/api/quality/reports/{id}/data`), every upload (TUS and CVAT's
 * `Upload-*` requests on task data, annotations, project datasets and backups, and `POST
 * /api/tasks/{id}/data`), and `GET /api/tasks/{id}/annotations`. Everything else is interactive,
 * `/api/requests/{id}` polling included (cheap, and the UI polls it while a person waits).
 *
 * @example
 * ```ts
 * cvatClassifier({ method: 'POST', pathname: '/api/tasks/7/dataset/export', search: 'format=COCO', headers: {} }); // 'bulk'
 * ```
 */
export function cvatClassifier(request: ClassifiableRequest): RequestClass {
  const { method, pathname: path } = request;
  if (!path.startsWith('/api/')) return 'interactive';
  if (method === 'POST' && EXPORT.test(path)) return 'bulk';
  if ((method === 'GET' || method === 'HEAD') && DOWNLOAD.test(path)) return 'bulk';
  if (UPLOAD.test(path)) {
    if (UPLOAD_HEADERS.some((h) => request.headers[h] !== undefined)) return 'bulk';
    if (method === 'POST' && /\/data\/?$/.test(path)) return 'bulk';
  }
  if (method === 'GET' && TASK_ANNOTATIONS.test(path)) return 'bulk';
  return 'interactive';
}
