/** Bytes a request target may hold once Node's parser accepted it (what the upstream client accepts too). */
const TARGET_BYTES = /^[\u0021-\u00ff]*$/;
/** An HTTP method: an RFC 9110 token. */
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * True when the request target is in origin form (`/path?query`), the only form the gateway
 * forwards. `*` (`OPTIONS *`, `M-SEARCH *`), absolute-form (`http://...`) and authority-form
 * (`host:port`) targets are refused with a 400 before any admission slot or upstream connection
 * is involved.
 *
 * @example
 * ```ts
 * isOriginFormTarget('/api/tasks?page=2'); // true
 * isOriginFormTarget('*'); // false
 * ```
 */
export function isOriginFormTarget(target: string | undefined): boolean {
  return typeof target === 'string' && target.startsWith('/') && TARGET_BYTES.test(target);
}

/** True when `method` is a valid HTTP method token. */
export function isMethodToken(method: string | undefined): boolean {
  return typeof method === 'string' && METHOD_TOKEN.test(method);
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
