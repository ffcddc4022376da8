import type { Credential } from '@sluice/django';
import {
  type CredentialKind,
  credentialKinds,
  type Identity,
  type Validation,
  type Validator,
} from '../identity.js';
import { checkObject, describe, positiveInteger } from '../option-checks.js';

/** Options of {@link introspectionValidator}. */
export interface IntrospectionValidatorOptions {
  /** The endpoint that answers 200 with the user for a valid credential, e.g. CVAT's `https://cvat/api/users/self`. */
  readonly url: string | URL;
  /**
   * Bound on one call (connect, headers and body), ms.
   * @default 2000
   */
  readonly timeoutMs?: number;
  /**
   * Name of Django's session cookie (`SESSION_COOKIE_NAME`) to forward sessions in.
   * @default 'sessionid'
   */
  readonly cookieName?: string;
  /**
   * Credential kinds this validator accepts.
   * @default ['token', 'bearer', 'session', 'basic']
   */
  readonly kinds?: readonly CredentialKind[];
  /**
   * Largest response body read, bytes.
   * @default 65536
   */
  readonly maxBodyBytes?: number;
  /** Extra request headers (e.g. `Host` for a virtual host). Never `Authorization` or `Cookie`. */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Validates a credential by forwarding it to an HTTP endpoint such as CVAT's `GET /api/users/self`
 * (via `fetch`, bounded by `timeoutMs`): 200 is valid (the identity comes from the JSON body:
 * `id`, `username`, `is_active`, `is_staff`, `is_superuser`), 401/403 are invalid (cached
 * negatively), anything else — other statuses, timeouts, network errors, a body without `id` and
 * `username` — is an error (not cached; the middleware answers 503).
 *
 * @throws {TypeError | RangeError} an option has the wrong type or range
 * @example
 * const validator = introspectionValidator({ url: 'http://cvat:8080/api/users/self', timeoutMs: 2000 });
 */
export function introspectionValidator(options: IntrospectionValidatorOptions): Validator {
  checkObject('options', options);
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError(
      `options.url should be an absolute http(s) URL, got ${describe(String(options.url))}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`options.url should be an http(s) URL, got ${describe(url.protocol)}`);
  }
  const timeoutMs = positiveInteger('options.timeoutMs', options.timeoutMs, 2_000, 300_000);
  const maxBodyBytes = positiveInteger('options.maxBodyBytes', options.maxBodyBytes, 65_536);
  const cookieName = options.cookieName ?? 'sessionid';
  if (typeof cookieName !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(cookieName)) {
    throw new TypeError(`options.cookieName should be a cookie name token, got ${describe(cookieName)}`);
  }
  const kinds = options.kinds ?? credentialKinds;
  if (!Array.isArray(kinds) || kinds.length === 0 || kinds.some((k) => !credentialKinds.includes(k))) {
    throw new TypeError(
      `options.kinds should be a non-empty array of ${credentialKinds.join(', ')}, got ${describe(kinds)}`,
    );
  }
  const extra = options.headers ?? {};
  checkObject('options.headers', extra);
  for (const [name, value] of Object.entries(extra)) {
    if (/^(authorization|cookie)$/i.test(name) || typeof value !== 'string') {
      throw new TypeError(
        `options.headers.${name} is not allowed (string values, never Authorization or Cookie)`,
      );
    }
  }
  const target = url.toString();

  return {
    kinds: [...kinds],
    async validate(credential: Credential, { signal }): Promise<Validation> {
      if (!kinds.includes(credential.kind)) return { valid: false, reason: 'unsupported-credential' };
      const headers: Record<string, string> = { ...extra, accept: 'application/json' };
      switch (credential.kind) {
        case 'session':
          headers.cookie = `${cookieName}=${credential.sessionKey}`;
          break;
        case 'token':
          headers.authorization = `Token ${credential.token}`;
          break;
        case 'bearer':
          headers.authorization = `Bearer ${credential.token}`;
          break;
        case 'basic':
          headers.authorization = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
          break;
      }
      const res = await fetch(target, {
        method: 'GET',
        headers,
        redirect: 'manual',
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel().catch(() => undefined);
        return { valid: false, reason: `introspection-${res.status}` };
      }
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => undefined);
        throw new Error(`introspection endpoint answered ${res.status}`);
      }
      const body = await readBounded(res, maxBodyBytes);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        throw new Error('introspection endpoint answered 200 without a JSON body');
      }
      const identity = toIdentity(parsed, credential.kind);
      if (!identity)
        throw new Error('introspection endpoint answered 200 without an integer id and a username');
      if (!identity.isActive) return { valid: false, reason: 'user-inactive' };
      return { valid: true, identity };
    },
  };
}

async function readBounded(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`introspection body of ${declared} bytes exceeds ${max}`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw new Error(`introspection body exceeds ${max} bytes`);
    }
    chunks.push(value);
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
