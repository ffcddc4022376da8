import type { Credential } from '@sluice/django';
import {
  checkChoice,
  checkInteger,
  checkObject,
  checkString,
  optional,
  show,
  withTimeout,
} from '@sluice/kit';
import { request } from 'undici';
import {
  type CredentialKind,
  credentialKinds,
  type Identity,
  type Validation,
  type Validator,
} from '../identity.js';

/** Options of {@link introspectionValidator}. */
export interface IntrospectionValidatorOptions {
  /** The endpoint that answers 200 with the user for a valid credential, e.g. CVAT's `http://cvat-server:8080/api/users/self`. */
  readonly url: string | URL;
  /**
   * The `Host` to present, also sent as `X-Forwarded-Host`: the public host when `url` is an
   * internal address, so Django's `ALLOWED_HOSTS` and CVAT's absolute URLs see what a browser sends.
   * @default the host of `url` (which must then be one Django accepts: no `_`)
   */
  readonly host?: string | undefined;
  /** Sent as `X-Forwarded-Proto` (Django's `SECURE_PROXY_SSL_HEADER`). @default not sent */
  readonly forwardedProto?: 'http' | 'https' | undefined;
  /**
   * Cookies sent with every call besides the session's, e.g. `{ sessionfresh: '1' }`: without it
   * CVAT's `SessionRefreshMiddleware` re-saves the session row (an `UPDATE`) on every introspection.
   * @default {}
   */
  readonly cookies?: Readonly<Record<string, string>> | undefined;
  /** Extra request headers. Never `Host` (see `host`), `Authorization` or `Cookie` (see `cookies`). @default {} */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Bound on one call (connect, headers and body), ms. @default 2000 */
  readonly timeoutMs?: number | undefined;
  /** Django's `SESSION_COOKIE_NAME`, the cookie sessions are forwarded in. @default 'sessionid' */
  readonly cookieName?: string | undefined;
  /** Credential kinds this validator accepts. @default ['token', 'bearer', 'session', 'basic'] */
  readonly kinds?: readonly CredentialKind[] | undefined;
  /** Largest response body read, bytes. @default 65536 */
  readonly maxBodyBytes?: number | undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const COOKIE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;
/** What Django's `validate_host` accepts: a DNS name, IPv4 or bracketed IPv6, and a port. */
const DJANGO_HOST = /^([a-z0-9.-]+|\[[a-f0-9:.]+\])(:[0-9]{1,5})?$/i;

/**
 * Validates a credential by forwarding it to an HTTP endpoint such as CVAT's `GET /api/users/self`
 * (undici's `request()`, bounded by `timeoutMs`): 200 is valid (the identity comes from the JSON
 * body: `id`, `username`, `is_active`, `is_staff`, `is_superuser`), 401/403 are invalid (cached
 * negatively), anything else (other statuses, redirects, timeouts, network errors, a body without
 * `id` and `username`) is an error (not cached; the middleware answers 503).
 *
 * @throws {TypeError | RangeError} an option has the wrong type or range
 * @example
 * const validator = introspectionValidator({
 *   url: 'http://cvat-server:8080/api/users/self',
 *   host: 'cvat.example.com',
 *   forwardedProto: 'https',
 *   cookies: { sessionfresh: '1' },
 * });
 */
export function introspectionValidator(options: IntrospectionValidatorOptions): Validator {
  checkObject('options', options);
  if (!URL.canParse(String(options.url))) {
    throw new TypeError(`options.url should be an absolute http(s) URL, got ${show(String(options.url))}`);
  }
  const url = new URL(options.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`options.url should be an http(s) URL, got ${show(url.protocol)}`);
  }
  const host = optional(options.host, undefined, (v) => checkString('options.host', v));
  if (!DJANGO_HOST.test(host ?? url.host)) {
    throw new TypeError(
      host === undefined
        ? `options.url's host ${show(url.host)} is not one Django accepts as a Host (no '_'): use a name without it or set options.host`
        : `options.host should be host[:port] as Django accepts it (no '_'), got ${show(host)}`,
    );
  }
  const timeoutMs = optional(options.timeoutMs, 2_000, (v) =>
    checkInteger('options.timeoutMs', v, 1, 300_000),
  );
  const maxBodyBytes = optional(options.maxBodyBytes, 65_536, (v) =>
    checkInteger('options.maxBodyBytes', v, 1),
  );
  const cookieName = optional(options.cookieName, 'sessionid', (v) =>
    checkCookieName('options.cookieName', v),
  );
  const kinds = options.kinds ?? credentialKinds;
  if (!Array.isArray(kinds) || kinds.length === 0 || kinds.some((k) => !credentialKinds.includes(k))) {
    throw new TypeError(
      `options.kinds should be a non-empty array of ${credentialKinds.join(', ')}, got ${show(kinds)}`,
    );
  }
  const fixed: Record<string, string> = { accept: 'application/json' };
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (!TOKEN.test(name) || /^(host|authorization|cookie)$/i.test(name) || typeof value !== 'string') {
      throw new TypeError(
        `options.headers.${name} is not allowed (string values, never Host, Authorization or Cookie)`,
      );
    }
    fixed[name.toLowerCase()] = value;
  }
  if (host !== undefined) Object.assign(fixed, { host, 'x-forwarded-host': host });
  const proto = optional(options.forwardedProto, undefined, (v) =>
    checkChoice('options.forwardedProto', v, ['http', 'https']),
  );
  if (proto !== undefined) fixed['x-forwarded-proto'] = proto;
  const cookies = Object.entries(options.cookies ?? {}).map(([name, value]) => {
    checkCookieName('options.cookies key', name);
    if (typeof value !== 'string' || !COOKIE_VALUE.test(value)) {
      throw new TypeError(`options.cookies.${name} should be a cookie value, got ${show(value)}`);
    }
    return `${name}=${value}`;
  });
  const target = url.toString();

  async function call(credential: Credential, signal: AbortSignal): Promise<Validation> {
    const headers = { ...fixed };
    const cookie = [...cookies];
    if (credential.kind === 'session') cookie.unshift(`${cookieName}=${credential.sessionKey}`);
    else headers.authorization = authorization(credential);
    if (cookie.length > 0) headers.cookie = cookie.join('; ');
    const res = await request(target, { method: 'GET', headers, signal });
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => undefined);
      if (res.statusCode === 401 || res.statusCode === 403) {
        return { valid: false, reason: `introspection-${res.statusCode}` };
      }
      throw new Error(`introspection endpoint answered ${res.statusCode}`);
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBounded(res.body, Number(res.headers['content-length']), maxBodyBytes));
    } catch (error) {
      throw error instanceof SyntaxError
        ? new Error('introspection endpoint answered 200 without a JSON body')
        : error;
    }
    const identity = toIdentity(body, credential.kind);
    if (!identity)
      throw new Error('introspection endpoint answered 200 without an integer id and a username');
    return identity.isActive ? { valid: true, identity } : { valid: false, reason: 'user-inactive' };
  }

  return {
    kinds: [...kinds],
    validate(credential, { signal }): Promise<Validation> {
      if (!kinds.includes(credential.kind))
        return Promise.resolve({ valid: false, reason: 'unsupported-credential' });
      return withTimeout((s) => call(credential, s), timeoutMs, {
        signal,
        message: `introspection did not answer within ${timeoutMs} ms (options.timeoutMs)`,
      });
    },
  };
}

/** The `Authorization` header of a token, bearer or Basic credential. */
function authorization(c: Exclude<Credential, { kind: 'session' }>): string {
  if (c.kind === 'basic') return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  return `${c.kind === 'token' ? 'Token' : 'Bearer'} ${c.token}`;
}

/** A cookie name (an RFC 9110 token), checked as an option. @internal */
export function checkCookieName(name: string, value: unknown): string {
  if (typeof value !== 'string' || !TOKEN.test(value)) {
    throw new TypeError(`${name} should be a cookie name token, got ${show(value)}`);
  }
  return value;
}

async function readBounded(
  body: AsyncIterable<Buffer> & { destroy(): void },
  declared: number,
  max: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = declared > max ? declared : 0; // a declared length over the bound: refused unread
  if (size === 0) {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > max) break;
      chunks.push(chunk);
    }
  }
  if (size > max) {
    body.destroy();
    throw new Error(`introspection body exceeds ${max} bytes`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function toIdentity(body: unknown, kind: CredentialKind): Identity | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const o = body as Record<string, unknown>;
  if (!Number.isSafeInteger(o.id) || (o.id as number) <= 0 || typeof o.username !== 'string')
    return undefined;
  return {
    userId: o.id as number,
    username: o.username,
    isActive: o.is_active !== false,
    isStaff: o.is_staff === true,
    isSuperuser: o.is_superuser === true,
    credentialKind: kind,
    expiresAt: null,
  };
}
