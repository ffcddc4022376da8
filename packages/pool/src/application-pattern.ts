import { show } from '@sluice/kit';

/**
 * Which `application_name`s: an exact name (`'cvat:server'`; `''` is "none set"), a prefix ending
 * in `*` (`'cvat:worker:*'` matches every CVAT worker, whatever its queues), or a RegExp.
 */
export type ApplicationPattern = string | RegExp;

/**
 * Compiles an {@link ApplicationPattern} into a predicate.
 *
 * @throws {TypeError} when it is neither a string nor a RegExp
 * @example
 * ```ts
 * const isWorker = applicationMatcher('cvat:worker:*');
 * isWorker('cvat:worker:export,import'); // true
 * ```
 */
export function applicationMatcher(pattern: ApplicationPattern): (app: string) => boolean {
  if (pattern instanceof RegExp) {
    const regex = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
    return (app) => regex.test(app);
  }
  if (typeof pattern !== 'string') {
    throw new TypeError(`applicationName should be a string or a RegExp, got ${show(pattern)}`);
  }
  if (!pattern.endsWith('*')) return (app) => app === pattern;
  const prefix = pattern.slice(0, -1);
  return (app) => app.startsWith(prefix);
}

/** The SQL `LIKE` form of a string pattern (`'cvat:worker:*'` -> `'cvat:worker:%'`, the rest escaped). */
export function likeApplication(pattern: string): string {
  const prefix = pattern.endsWith('*');
  const escaped = (prefix ? pattern.slice(0, -1) : pattern).replace(/[\\%_]/g, '\\$&');
  return prefix ? `${escaped}%` : escaped;
}
