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
  c: BulkExportCredential,
  recorder: Recorder,
  signal: AbortSignal,
): Promise<AuthHeaders> {
  const base: Record<string, string> = {
    accept: 'application/vnd.cvat+json, application/json;q=0.9',
    'user-agent': 'sluice-bulk-export',
    ...o.headers,
  };
  if (c.kind !== 'login') return headersFor(base, c);
  const answer = await send(agent, o, recorder, signal, {
    method: 'POST',
    url: new URL('/api/auth/login', o.baseUrl),
    headers: { ...base, 'content-type': 'application/json' },
    body: JSON.stringify({ username: c.username, password: c.password }),
    read: 'text',
  });
  return headersFor(base, credentialFromLogin(answer, c.use));
}

/**
 * The credential a login answer carries, as `cvat_sdk` uses it: with `use` `'token'` (before
 * 2.41) the returned `key` as a token, else the `sessionid` (and `csrftoken`) cookies it set;
 * with `use` `'session'` (2.41 and later) the cookies, `sessionfresh` included.
 * @throws LoginError when the answer is not a 2xx with a usable credential.
 */
export function credentialFromLogin(
  answer: Answer,
  use: 'token' | 'session' = 'token',
): Exclude<BulkExportCredential, { kind: 'login' }> {
  if (answer.status < 200 || answer.status > 299) {
    throw new LoginError(`login answered ${answer.status}: ${answer.text.slice(0, 200)}`, answer.status);
  }
  let key: unknown;
  try {
    key = (JSON.parse(answer.text) as { key?: unknown }).key;
  } catch {
    key = undefined;
  }
  if (use === 'token' && typeof key === 'string' && key.length > 0) return { kind: 'token', token: key };
  const cookies = parseSetCookie(answer.headers['set-cookie']);
  const sessionId = cookies.get('sessionid');
  if (sessionId === undefined) {
    const what = use === 'token' ? 'neither a key nor a sessionid cookie' : 'no sessionid cookie';
    throw new LoginError(`login set ${what}`, answer.status);
  }
  const session: Extract<BulkExportCredential, { kind: 'session' }> = { kind: 'session', sessionId };
  const csrfToken = cookies.get('csrftoken');
  if (csrfToken !== undefined) session.csrfToken = csrfToken;
  if (use === 'session' && cookies.has('sessionfresh')) session.sessionFresh = true;
  return session;
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
      let cookie = `sessionid=${c.sessionId}`;
      if (c.csrfToken !== undefined) cookie += `; csrftoken=${c.csrfToken}`;
      if (c.sessionFresh) cookie += '; sessionfresh=1';
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
