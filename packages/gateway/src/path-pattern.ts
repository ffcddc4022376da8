/**
 * A compiled path pattern. Patterns are absolute paths matched as prefixes on segment boundaries:
 * `/api/auth/login` matches `/api/auth/login`, `/api/auth/login/` and `/api/auth/login/x`, not
 * `/api/auth/loginx`. A pattern ending in `/` matches everything under it. `*` stands for exactly
 * one path segment (`/api/tasks/*` + `/preview`).
 */
export interface PathMatcher {
  /** The patterns, as given. */
  readonly patterns: readonly string[];
  /** True when `pathname` (no query string) matches one of the patterns. */
  matches(pathname: string): boolean;
}

/** Why a pattern is refused, or `undefined` when it is valid. */
export function checkPathPattern(pattern: string): string | undefined {
  if (!pattern.startsWith('/')) return 'must start with "/"';
  if (/[?#\s]/.test(pattern)) return 'must not contain "?", "#" or whitespace';
  if (/\/\.\.?(\/|$)/.test(pattern)) return 'must not contain "." or ".." segments';
  return undefined;
}

/**
 * Compiles patterns into one matcher.
 *
 * @throws {TypeError} when a pattern is not a string or is refused by {@link checkPathPattern}
 * @example
 * ```ts
 * const isPublic = compilePathPatterns(['/api/auth/login', '/static/']);
 * isPublic.matches('/api/auth/login/'); // true
 * ```
 */
export function compilePathPatterns(patterns: readonly string[]): PathMatcher {
  const sources: string[] = [];
  for (const pattern of patterns) {
    if (typeof pattern !== 'string')
      throw new TypeError(`path pattern must be a string, got ${typeof pattern}`);
    const reason = checkPathPattern(pattern);
    if (reason) throw new TypeError(`path pattern ${JSON.stringify(pattern)} ${reason}`);
    const body = pattern
      .split('*')
      .map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&'))
      .join('[^/]+');
    sources.push(pattern.endsWith('/') ? body : `${body}(?:/|$)`);
  }
  const regex = sources.length === 0 ? null : new RegExp(`^(?:${sources.join('|')})`);
  return {
    patterns: [...patterns],
    matches(pathname: string): boolean {
      return regex?.test(pathname) ?? false;
    },
  };
}

/**
 * The path as the upstream will route it: percent-decoded. `undefined` when it cannot be decoded
 * or holds `.`/`..` segments or backslashes, so it never counts as a match of a public path.
 */
export function canonicalPath(pathname: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  if (decoded.includes('\\') || decoded.includes('\0') || /\/\.\.?(\/|$)/.test(decoded)) return undefined;
  return decoded;
}
