import { show } from './options.js';

/**
 * A compiled set of path patterns. The one syntax of every `publicPaths`/`bulkPaths` setting in
 * Sluice: an absolute path matches itself and everything below it on a segment boundary
 * (`/api/auth/login` matches `/api/auth/login`, `/api/auth/login/` and `/api/auth/login/x`, never
 * `/api/auth/loginx`); a trailing `/` means "everything under it"; `*` stands for exactly one
 * segment (`/api/tasks/*` + `/preview`). A RegExp is used as given (without `g`/`y`).
 */
export interface PathMatcher {
  /** The patterns, as given. */
  readonly patterns: readonly (string | RegExp)[];
  /** True when `pathname` (no query string) matches one of the patterns. */
  matches(pathname: string): boolean;
}

/** Why a string pattern is refused, or `undefined` when it is valid. */
export function checkPathPattern(pattern: string): string | undefined {
  if (!pattern.startsWith('/')) return 'must start with "/"';
  if (/[?#\s]/.test(pattern)) return 'must not contain "?", "#" or whitespace';
  if (/\/\.\.?(\/|$)/.test(pattern)) return 'must not contain "." or ".." segments';
  return undefined;
}

/**
 * Compiles patterns into one matcher (one RegExp).
 *
 * @throws {TypeError} naming the pattern when one is neither a valid path nor a RegExp
 * @example
 * ```ts
 * const isPublic = pathMatcher(['/api/auth/login', '/static/']);
 * isPublic.matches('/api/auth/login/'); // true
 * ```
 */
export function pathMatcher(patterns: readonly (string | RegExp)[], name = 'patterns'): PathMatcher {
  if (!Array.isArray(patterns)) throw new TypeError(`${name} should be an array, got ${show(patterns)}`);
  const sources: string[] = [];
  patterns.forEach((pattern: unknown, i) => {
    if (pattern instanceof RegExp) {
      if (pattern.flags.replace(/[gy]/g, '') !== '') {
        throw new TypeError(
          `${name}[${i}] should be a RegExp without flags, got /${pattern.source}/${pattern.flags}`,
        );
      }
      sources.push(`(?:${pattern.source})`);
      return;
    }
    if (typeof pattern !== 'string') {
      throw new TypeError(`${name}[${i}] should be a path or a RegExp, got ${show(pattern)}`);
    }
    const reason = checkPathPattern(pattern);
    if (reason) throw new TypeError(`${name}[${i}] ${reason}, got ${show(pattern)}`);
    const body = pattern
      .split('*')
      .map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&'))
      .join('[^/]+');
    sources.push(`^${pattern.endsWith('/') ? body : `${body}(?:/|$)`}`);
  });
  const regex = sources.length === 0 ? null : new RegExp(sources.join('|'));
  return {
    patterns: [...patterns],
    matches: (pathname) => regex?.test(pathname) ?? false,
  };
}
