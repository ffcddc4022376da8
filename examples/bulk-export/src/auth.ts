import type { Agent } from 'undici';
import { type Answer, send } from './http.js';
import type { BulkExportCredential, ResolvedOptions } from './options.js';
import type { Recorder } from './recorder.js';

/** What every request of the run sends to authenticate, once login (if any) is done. */
export interface AuthHeaders {
  /** Headers for GET. */
  safe: Record<string, string>;
  /** Headers for POST (adds `X-CSRFToken` for a session). */
  unsafe: Record<string, string>;
}

/** Thrown when `POST /api/auth/login` does not give a usable credential. */
export class LoginError extends Error {
  override readonly name = 'LoginError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** Builds the request headers for a credential (a `login` one logs in first, once). */
export async function authenticate(
  agent: Agent,
  o: ResolvedOptions,
  recorder: Recorder,
  signal: AbortSignal,
): Promise<AuthHeaders> {
  const base: Record<string, string> = {
    accept: 'application/vnd.cvat+json, application/json;q=0.9',
    'user-agent': 'sluice-bulk-export',
    ...o.headers,
  };
  const c = o.credential;
  if (c.kind !== 'login') return headersFor(base, c);
  const answer = await send(agent, o, recorder, signal, {
    method: 'POST',
    url: new URL('/api/auth/login', o.baseUrl),
    headers: { ...base, 'content-type': 'application/json' },
    body: JSON.stringify({ username: c.username, password: c.password }),
    read: 'text',
  });
  return headersFor(base, credentialFromLogin(answer));
}

/**
 * The credential a login answer carries, as `cvat_sdk` uses it: the returned `key` as a token,
 * else the `sessionid` (and `csrftoken`) cookies it set.
 * @throws LoginError when the answer is not a 2xx with either.
 */
export function credentialFromLogin(answer: Answer): Exclude<BulkExportCredential, { kind: 'login' }> {
  if (answer.status < 200 || answer.status > 299) {
    throw new LoginError(`login answered ${answer.status}: ${answer.text.slice(0, 200)}`, answer.status);
  }
  let key: unknown;
  try {
    key = (JSON.parse(answer.text) as { key?: unknown }).key;
  } catch {
    key = undefined;
  }
  if (typeof key === 'string' && key.length > 0) return { kind: 'token', token: key };
  const cookies = parseSetCookie(answer.headers['set-cookie']);
  const sessionId = cookies.get('sessionid');
  if (sessionId === undefined)
    throw new LoginError('login set neither a key nor a sessionid cookie', answer.status);
  const csrfToken = cookies.get('csrftoken');
  return csrfToken === undefined ? { kind: 'session', sessionId } : { kind: 'session', sessionId, csrfToken };
}

function headersFor(
  base: Record<string, string>,
  c: Exclude<BulkExportCredential, { kind: 'login' }>,
): AuthHeaders {
  switch (c.kind) {
    case 'token': {
      const h = { ...base, authorization: `Token ${c.token}` };
      return { safe: h, unsafe: h };
    }
    case 'bearer': {
      const h = { ...base, authorization: `Bearer ${c.token}` };
      return { safe: h, unsafe: h };
    }
    case 'session': {
      const cookie =
        c.csrfToken === undefined
          ? `sessionid=${c.sessionId}`
          : `sessionid=${c.sessionId}; csrftoken=${c.csrfToken}`;
      const safe = { ...base, cookie };
      return {
        safe,
        unsafe: c.csrfToken === undefined ? safe : { ...safe, 'x-csrftoken': c.csrfToken },
      };
    }
  }
}

/** `name=value` pairs of Set-Cookie headers (attributes dropped). */
export function parseSetCookie(v: string | string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const lines = v === undefined ? [] : Array.isArray(v) ? v : [v];
  for (const line of lines) {
    const first = line.split(';', 1)[0] ?? '';
    const eq = first.indexOf('=');
    if (eq > 0) out.set(first.slice(0, eq).trim(), first.slice(eq + 1).trim());
  }
  return out;
}
