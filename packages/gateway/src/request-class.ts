import { pathMatcher } from '@sluice/kit';
import { cvatClassifier, type RequestClassifier } from './cvat-profile.js';

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
    return extra.matches(request.pathname) ? 'bulk' : base(request);
  };
}
