import { HASH_SESSION_KEY } from './auth-hash.js';

/** The session key of the logged-in user's primary key (`django.contrib.auth.SESSION_KEY`). */
export const SESSION_KEY = '_auth_user_id';

/** The session key of the dotted path of the backend that authenticated the user. */
export const BACKEND_SESSION_KEY = '_auth_user_backend';

/** What `django.contrib.auth.login()` stores in a session. */
export interface AuthSession {
  /** The user's primary key, as the string Django stores (`pk.value_to_string(user)`). */
  readonly userId: string;
  /** The authenticating backend's dotted path, e.g. `django.contrib.auth.backends.ModelBackend`. */
  readonly backend: string | undefined;
  /** `_auth_user_hash`, checked by {@link verifySessionAuthHash}. */
  readonly hash: string | undefined;
}

/**
 * The login fields of a decoded session, or `null` for an anonymous session (no user id).
 *
 * @example
 * const auth = readAuthSession(loadSessionData(data, { secretKey }));
 * if (auth) await findUser(auth.userId);
 */
export function readAuthSession(session: Readonly<Record<string, unknown>>): AuthSession | null {
  if (session === null || typeof session !== 'object') return null;
  const own = (key: string): unknown => (Object.hasOwn(session, key) ? session[key] : undefined);
  const id = own(SESSION_KEY);
  const userId = typeof id === 'string' && id !== '' ? id : Number.isSafeInteger(id) ? String(id) : undefined;
  if (userId === undefined) return null;
  const backend = own(BACKEND_SESSION_KEY);
  const hash = own(HASH_SESSION_KEY);
  return {
    userId,
    backend: typeof backend === 'string' ? backend : undefined,
    hash: typeof hash === 'string' ? hash : undefined,
  };
}
