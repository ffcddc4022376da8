import { pythonStrip } from './python-strip.js';

const QUOTED_ESCAPE = /\\(?:([0-3][0-7][0-7])|([^\n]))/g;

/** Python's `http.cookies._unquote`. */
function unquote(value: string): string {
  if (value.length < 2 || value[0] !== '"' || value[value.length - 1] !== '"') return value;
  return value
    .slice(1, -1)
    .replace(QUOTED_ESCAPE, (_m, octal: string | undefined, char: string | undefined) =>
      octal !== undefined ? String.fromCharCode(Number.parseInt(octal, 8)) : (char ?? ''),
    );
}

/** Each (name, raw value) pair Django's `parse_cookie` keeps, stripped, in order. */
function eachCookie(header: string, each: (name: string, value: string) => void): void {
  for (const chunk of header.split(';')) {
    const eq = chunk.indexOf('=');
    const name = pythonStrip(eq === -1 ? '' : chunk.slice(0, eq));
    const value = pythonStrip(eq === -1 ? chunk : chunk.slice(eq + 1));
    if (name !== '' || value !== '') each(name, value);
  }
}

/**
 * Django's `django.http.cookie.parse_cookie`: splits on `;`, takes the name before the first `=`
 * (a chunk without `=` is a value with an empty name), strips both as Python's `str.strip()` does,
 * skips empty pairs, unquotes `"..."` values Python's way, and keeps the LAST of duplicate names
 * (at the position of the first, like a Python dict).
 *
 * @param header - the `Cookie` header value, as a string
 * @returns name to value, in Django's order
 * @example
 * parseCookie('a=1; sessionid=x; sessionid=y').get('sessionid') // 'y'
 */
export function parseCookie(header: string): Map<string, string> {
  const cookies = new Map<string, string>();
  eachCookie(header, (name, value) => cookies.set(name, unquote(value)));
  return cookies;
}

/** `parseCookie(header).get(name)`, without building the map (it runs on every request). @internal */
export function cookieValue(header: string, name: string): string | undefined {
  let found: string | undefined;
  eachCookie(header, (key, value) => {
    if (key === name) found = value;
  });
  return found === undefined ? undefined : unquote(found);
}
