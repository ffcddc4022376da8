/** Python's `str.isspace()` characters, which `str.strip()` removes (a different set from `trim()`). */
const PY_SPACE =
  '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const LEADING = new RegExp(`^[${PY_SPACE}]+`);
const TRAILING = new RegExp(`[${PY_SPACE}]+$`);

/**
 * Python's `str.strip()` with no argument.
 *
 * @internal
 */
export function pythonStrip(s: string): string {
  return s.replace(LEADING, '').replace(TRAILING, '');
}
