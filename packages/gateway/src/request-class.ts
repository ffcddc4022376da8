import { pathMatcher } from '@sluice/kit';
import { canonicalPath } from './request-target.js';

/**
 * The admission class of a request: `bulk` for long exports, downloads and their polling,
 * `interactive` for everything a person is waiting on.
 */
export type RequestClass = 'bulk' | 'interactive';

/** What a classifier sees of a request. */
export interface ClassifiableRequest {
  readonly method: string;
  /** Path without the query string. */
  readonly pathname: string;
  /** The raw query string without `?` (may be empty). */
  readonly search: string;
}

/** Decides the admission class of a request. */
export type RequestClassifier = (request: ClassifiableRequest) => RequestClass;

const RESOURCE = '/api/(?:tasks|projects|jobs)/[^/]+';
const EXPORTS = new RegExp(`^${RESOURCE}/(?:dataset|backup)(?:/(?:export|download))?/?$`);
const ANNOTATION_TRANSFER = new RegExp(`^${RESOURCE}/annotations/(?:export|download)/?$`);
const ANNOTATIONS = new RegExp(`^${RESOURCE}/annotations/?$`);
const REQUESTS = /^\/api\/requests(?:\/|$)/;

/**
 * CVAT's bulk traffic: dataset and backup export/download (`/api/{tasks,projects,jobs}/{id}/dataset`,
 * `.../dataset/export`, `.../dataset/download`, `.../backup...`), annotation download
 * (`.../annotations/export|download`, or `GET .../annotations` with `format=` or `action=download`,
 * the older API), and `/api/requests/*` polling. Everything else is interactive (the annotation
 * editor's plain `GET .../annotations` included).
 *
 * @example
 * ```ts
 * cvatClassifier({ method: 'GET', pathname: '/api/requests/abc', search: '' }); // 'bulk'
 * ```
 */
export function cvatClassifier(request: ClassifiableRequest): RequestClass {
  const path = request.pathname;
  if (!path.startsWith('/api/')) return 'interactive';
  if (REQUESTS.test(path) || EXPORTS.test(path) || ANNOTATION_TRANSFER.test(path)) return 'bulk';
  if (ANNOTATIONS.test(path) && (request.method === 'GET' || request.method === 'HEAD')) {
    const query = new URLSearchParams(request.search);
    if (query.has('format') || query.get('action') === 'download') return 'bulk';
  }
  return 'interactive';
}

/**
 * A classifier that calls the request bulk when its path matches one of `bulkPaths` (patterns as
 * in `compilePathPatterns`), and otherwise asks `base` (CVAT's rules by default).
 *
 * @throws {TypeError} when a pattern is invalid
 * @example
 * ```ts
 * const classify = createClassifier(['/api/lambda/']);
 * ```
 */
export function createClassifier(
  bulkPaths: readonly string[] = [],
  base: RequestClassifier = cvatClassifier,
): RequestClassifier {
  if (bulkPaths.length === 0) return base;
  const extra = pathMatcher(bulkPaths, 'bulkPaths');
  return function classify(request) {
    const path = canonicalPath(request.pathname);
    if (path !== undefined && extra.matches(path)) return 'bulk';
    return base(request);
  };
}
