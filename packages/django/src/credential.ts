import { checkInteger, checkObject, optional, show } from '@sluice/kit';
import { decodeBase64 } from './base64.js';
import { cookieValue } from './cookie.js';
import { DEFAULT_MAX_HEADER_BYTES } from './limits.js';
import { pythonStrip } from './python-strip.js';
import { isValidSessionKey } from './session-key.js';

/** A credential a Django / Django REST framework / CVAT backend would authenticate a request with. */
export type Credential =
  /** The session cookie (`sessionid` unless configured): a key of `django_session`. */
  | { readonly kind: 'session'; readonly sessionKey: string }
  /** `Authorization: Token <40 hex>`: a DRF `authtoken_token` key. */
  | { readonly kind: 'token'; readonly token: string }
  /** `Authorization: Bearer <token>` (RFC 6750 b64token syntax). */
  | { readonly kind: 'bearer'; readonly token: string }
  /** `Authorization: Basic base64(username:password)`, decoded as DRF does. */
  | { readonly kind: 'basic'; readonly username: string; readonly password: string };

/** A credential that cannot be valid: refuse the request without any lookup. */
export interface MalformedCredential {
  readonly kind: 'malformed';
  /** Human-readable; for logs, never echoed with the credential itself. */
  readonly reason: string;
  /** Which header was at fault. */
  readonly source: 'cookie' | 'authorization';
}

/** What {@link extractCredential} finds: a credential, a malformed one, or `null` for none. */
export type ExtractedCredential = Credential | MalformedCredential | null;

/**
 * What {@link extractCredentials} finds, in the order Django REST framework tries them: empty (no
 * credential), one entry, or a session followed by Basic credentials (possibly malformed).
 */
export type CredentialCandidates = readonly (Credential | MalformedCredential)[];

/** Request headers as Node gives them (`IncomingHttpHeaders`): lower-case names. */
export type RequestHeaders = Readonly<Record<string, string | readonly string[] | string[] | undefined>>;

/** Options of {@link extractCredentials}, {@link extractCredential} and {@link credentialExtractor}. */
export interface ExtractCredentialOptions {
  /** Django's `SESSION_COOKIE_NAME`. @default 'sessionid' */
  readonly cookieName?: string | undefined;
  /** Longest accepted `Cookie` or `Authorization` header; longer is malformed. @default 8192 */
  readonly maxHeaderBytes?: number | undefined;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const CONTROL_CHARS = /[\x00-\x08\x0a-\x1f\x7f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: a character class over all of Latin-1.
const NON_LATIN1 = /[^\x00-\xff]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: a character class over all of ASCII.
const NON_ASCII = /[^\x00-\x7f]/;
const HEADER_WHITESPACE = /[ \t]+/;
const TOKEN = /^[0-9a-fA-F]{40}$/;
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

type HeaderRead = { readonly value: string | undefined } | { readonly malformed: string };

function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (c) => c.toLowerCase());
}

function readHeader(headers: RequestHeaders, name: 'cookie' | 'authorization', maxBytes: number): HeaderRead {
  let value: unknown = Object.hasOwn(headers, name) ? headers[name] : undefined;
  if (Array.isArray(value)) {
    if (!value.every((part) => typeof part === 'string'))
      return { malformed: `${name} header is not a string` };
    if (name === 'authorization' && value.length > 1)
      return { malformed: 'more than one Authorization header' };
    value = value.length === 0 ? undefined : value.join('; '); // as Node joins repeated Cookie headers
  }
  if (value === undefined) return { value: undefined };
  if (typeof value !== 'string') return { malformed: `${name} header is not a string` };
  if (value.length > maxBytes || (NON_LATIN1.test(value) && Buffer.byteLength(value, 'utf8') > maxBytes)) {
    return { malformed: `${name} header exceeds ${maxBytes} bytes` };
  }
  if (CONTROL_CHARS.test(value)) return { malformed: `${name} header contains control characters` };
  return { value };
}

/** Django reads header bytes as UTF-8 (Node hands them over as Latin-1): re-decode when needed. */
function asDjangoReads(value: string): string {
  if (!NON_ASCII.test(value) || NON_LATIN1.test(value)) return value;
  return Buffer.from(value, 'latin1').toString('utf8');
}

function malformedAuth(reason: string): MalformedCredential {
  return { kind: 'malformed', reason, source: 'authorization' };
}

/** DRF's TokenAuthentication checks, then the key's shape. */
function tokenCredential(
  kind: 'token' | 'bearer',
  parts: readonly string[],
): Credential | MalformedCredential {
  const label = kind === 'token' ? 'Token' : 'Bearer';
  if (parts.length === 1) return malformedAuth(`${label} header has no credentials`);
  if (parts.length > 2) return malformedAuth(`${label} string contains spaces`);
  const token = parts[1] ?? '';
  if (kind === 'token' && !TOKEN.test(token)) return malformedAuth('Token is not 40 hexadecimal characters');
  if (kind === 'bearer' && !B64TOKEN.test(token)) {
    return malformedAuth('Bearer token is not an RFC 6750 b64token');
  }
  return { kind, token };
}

/** DRF's BasicAuthentication: base64, UTF-8 or else Latin-1, split at the first ':'. */
function basicCredential(parts: readonly string[]): Credential | MalformedCredential {
  if (parts.length === 1) return malformedAuth('Basic header has no credentials');
  if (parts.length > 2) return malformedAuth('Basic credentials contain spaces');
  const bytes = decodeBase64(parts[1] ?? '');
  if (bytes === undefined) return malformedAuth('Basic credentials are not base64');
  let decoded: string;
  try {
    decoded = utf8.decode(bytes);
  } catch {
    decoded = bytes.toString('latin1');
  }
  const sep = decoded.indexOf(':');
  const username = sep === -1 ? decoded : decoded.slice(0, sep);
  const password = sep === -1 ? '' : decoded.slice(sep + 1);
  if (username.length === 0) return malformedAuth('Basic credentials have an empty username');
  if (username.includes('\0')) return malformedAuth('Basic username contains NUL');
  return { kind: 'basic', username, password };
}

function checkCookieName(value: unknown): string {
  if (value === undefined) return 'sessionid';
  if (typeof value !== 'string' || !/^[^=;]+$/.test(value) || pythonStrip(value) !== value) {
    throw new TypeError(
      `options.cookieName should be a non-empty cookie name without '=', ';' or surrounding spaces, got ${show(value)}`,
    );
  }
  return value;
}

/**
 * Builds {@link extractCredentials} with its options validated once.
 *
 * @throws {TypeError} when `cookieName` is not a usable cookie name
 * @throws {RangeError} when `maxHeaderBytes` is not a positive integer
 * @example
 * const extract = credentialExtractor({ cookieName: 'sessionid' });
 * app.use((req, res, next) => { const candidates = extract(req.headers); ... });
 */
export function credentialExtractor(
  options?: ExtractCredentialOptions,
): (headers: RequestHeaders) => CredentialCandidates {
  if (options !== undefined) checkObject('options', options);
  const cookieName = checkCookieName(options?.cookieName);
  const maxHeaderBytes = optional(options?.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, (v) =>
    checkInteger('options.maxHeaderBytes', v, 1),
  );

  return function extractCredentials(headers: RequestHeaders): CredentialCandidates {
    if (headers === null || typeof headers !== 'object') {
      throw new TypeError(`headers should be an object, got ${show(headers)}`);
    }
    const auth = readHeader(headers, 'authorization', maxHeaderBytes);
    if ('malformed' in auth) return [malformedAuth(auth.malformed)];
    const cookie = readHeader(headers, 'cookie', maxHeaderBytes);
    if ('malformed' in cookie) return [{ kind: 'malformed', reason: cookie.malformed, source: 'cookie' }];

    // 1. TokenAuthentication, AccessTokenAuthentication (Token, Bearer): a header in these
    // schemes either authenticates or fails the request; nothing else is tried.
    let basic: Credential | MalformedCredential | undefined;
    if (auth.value !== undefined) {
      const parts = auth.value.split(HEADER_WHITESPACE).filter((part) => part.length > 0);
      const scheme = parts.length > 0 ? asciiLower(parts[0] ?? '') : '';
      if (scheme === 'token') return [tokenCredential('token', parts)];
      if (scheme === 'bearer') return [tokenCredential('bearer', parts)];
      if (scheme === 'basic') basic = basicCredential(parts);
    }

    // 2. SessionAuthentication: a session Django cannot find is only an anonymous session, so
    // Basic still gets its turn after it; a key of the wrong shape is never looked up.
    const candidates: (Credential | MalformedCredential)[] = [];
    if (cookie.value !== undefined) {
      const sessionKey = cookieValue(asDjangoReads(cookie.value), cookieName);
      if (sessionKey !== undefined && sessionKey !== '') {
        if (isValidSessionKey(sessionKey)) candidates.push({ kind: 'session', sessionKey });
        else if (basic === undefined) {
          return [{ kind: 'malformed', reason: 'session key is not [a-z0-9]{8,40}', source: 'cookie' }];
        }
      }
    }

    // 3. BasicAuthentication.
    if (basic !== undefined) candidates.push(basic);
    return candidates;
  };
}

const defaultExtractor = credentialExtractor();

/**
 * Every credential a Django + DRF backend would try for this request, in CVAT's order
 * (TokenAuthentication, AccessTokenAuthentication, SessionAuthentication, BasicAuthentication),
 * checked for shape only (no I/O). The first that authenticates wins; a session that does not
 * (unknown or expired) lets the next one, Basic, be tried, as DRF does; any other refused or
 * malformed candidate fails the request.
 *
 * 1. `Authorization: Token <40 hex>` or `Bearer <token>`: the only candidate; a malformed header of
 *    these schemes is `malformed` (DRF fails the request there).
 * 2. The session cookie, parsed as Django's `parse_cookie` does (the last duplicate wins); a key
 *    outside `[a-z0-9]{8,40}` is skipped when Basic credentials follow, else `malformed`.
 * 3. `Authorization: Basic`, decoded as DRF does (`malformed` when it cannot be).
 *
 * A `Cookie` or `Authorization` header longer than `maxHeaderBytes`, containing control characters,
 * or (Authorization) repeated makes the result one `malformed` entry at once. Other schemes are ignored.
 *
 * @returns the candidates, possibly none
 * @throws {TypeError|RangeError} for bad options or a `headers` that is not an object
 * @example
 * extractCredentials({ cookie: 'sessionid=...', authorization: 'Basic YWxpY2U6cHc=' })
 * // [{ kind: 'session', sessionKey: '...' }, { kind: 'basic', username: 'alice', password: 'pw' }]
 */
export function extractCredentials(
  headers: RequestHeaders,
  options?: ExtractCredentialOptions,
): CredentialCandidates {
  return options === undefined ? defaultExtractor(headers) : credentialExtractor(options)(headers);
}

/**
 * The first of {@link extractCredentials}: the credential DRF authenticates this request with when
 * it is valid, a `malformed` result, or `null` when there is none.
 *
 * @throws {TypeError|RangeError} for bad options or a `headers` that is not an object
 * @example
 * extractCredential({ authorization: 'Token 0123456789abcdef0123456789abcdef01234567' })
 * // { kind: 'token', token: '0123...' }
 */
export function extractCredential(
  headers: RequestHeaders,
  options?: ExtractCredentialOptions,
): ExtractedCredential {
  return extractCredentials(headers, options)[0] ?? null;
}
