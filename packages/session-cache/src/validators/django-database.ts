import {
  type Credential,
  isSessionDataError,
  isValidSessionKey,
  loadSessionData,
  readAuthSession,
  readSessionDataUnverified,
  verifySessionAuthHash,
} from '@sluice/django';
import { checkBoolean, checkObject, checkString, optional, show, sqlName } from '@sluice/kit';
import type { Identity, Validation, Validator } from '../identity.js';
import type { Queryable } from './queryable.js';

/** Table names of the Django models the validator reads (plain or schema-qualified identifiers). */
export interface DjangoTables {
  /** @default 'django_session' */
  readonly session?: string | undefined;
  /** @default 'auth_user' */
  readonly user?: string | undefined;
  /** @default 'authtoken_token' */
  readonly token?: string | undefined;
}

/** Options of {@link djangoDatabaseValidator}. */
export interface DjangoDatabaseValidatorOptions {
  /**
   * The pool the queries run on, e.g. `createPool({ connectionString, max: 5 })` from
   * `@sluice/pool`; see {@link Queryable}. Never closed by the validator: whoever built it closes it.
   */
  readonly pool: Queryable;
  /**
   * Django's `SECRET_KEY`. With it, `session_data` signatures are verified; without it the data is
   * read unverified (the row's presence in the database is the proof).
   */
  readonly secretKey?: string | undefined;
  /** Django's `SECRET_KEY_FALLBACKS` (older keys still accepted). @default [] */
  readonly fallbackKeys?: readonly string[] | undefined;
  /**
   * Check the session's `_auth_user_hash` against the user's password hash, as Django does (a
   * password change logs other sessions out). Needs `secretKey`.
   * @default true when secretKey is given
   */
  readonly verifyAuthHash?: boolean | undefined;
  /**
   * Accept what Django 3.1/3.2 still accept and 4.0 refuses: the pre-3.1 `session_data` format,
   * sha1 signatures and sha1 `_auth_user_hash` values.
   * @default false
   */
  readonly allowLegacy?: boolean | undefined;
  /** Table names. */
  readonly tables?: DjangoTables | undefined;
}

const USER_COLUMNS = 'id, username, is_active, is_staff, is_superuser';

/**
 * Validates Django sessions and Django REST framework tokens against Django's own tables, on the
 * pool it is given. Every query carries the validation's signal: a validation the cache aborted
 * (timeout, close) leaves the pool's queue and runs no query.
 *
 * - session: the `django_session` row exists and `expire_date > now()`, `session_data` decodes
 *   (its signature verified when `secretKey` is given), the user exists and is active, and the
 *   `_auth_user_hash` matches when `verifyAuthHash`. Two queries.
 * - token: one query joining `authtoken_token` and `auth_user`; the user must be active.
 *
 * @throws {TypeError} an option has the wrong type (the message names it)
 * @example
 * const pool = createPool({ connectionString: process.env.DATABASE_URL, max: 5 });
 * const validator = djangoDatabaseValidator({ pool, secretKey: process.env.DJANGO_SECRET_KEY });
 */
export function djangoDatabaseValidator(options: DjangoDatabaseValidatorOptions): Validator {
  checkObject('options', options);
  const { pool } = options;
  if (typeof pool !== 'object' || pool === null || typeof pool.query !== 'function') {
    throw new TypeError(
      `options.pool should have a query(text, values, { signal }) method, got ${show(pool)}`,
    );
  }
  const secretKey = optional(options.secretKey, undefined, (v) => checkString('options.secretKey', v));
  const fallbackKeys: readonly unknown[] = options.fallbackKeys ?? [];
  if (!Array.isArray(fallbackKeys)) {
    throw new TypeError(`options.fallbackKeys should be an array of strings, got ${show(fallbackKeys)}`);
  }
  for (const [i, key] of fallbackKeys.entries()) checkString(`options.fallbackKeys[${i}]`, key);
  const verifyAuthHash = optional(options.verifyAuthHash, secretKey !== undefined, (v) =>
    checkBoolean('options.verifyAuthHash', v),
  );
  if (verifyAuthHash && secretKey === undefined) {
    throw new TypeError(
      'options.verifyAuthHash needs options.secretKey (the auth hash is an HMAC under SECRET_KEY)',
    );
  }
  const allowLegacy = optional(options.allowLegacy, false, (v) => checkBoolean('options.allowLegacy', v));
  const tables = options.tables ?? {};
  checkObject('options.tables', tables);
  const sessionTable = sqlName('options.tables.session', tables.session ?? 'django_session', true);
  const userTable = sqlName('options.tables.user', tables.user ?? 'auth_user', true);
  const tokenTable = sqlName('options.tables.token', tables.token ?? 'authtoken_token', true);

  const sessionSql = `SELECT session_data, expire_date FROM ${sessionTable} WHERE session_key = $1 AND expire_date > now()`;
  const userSql = `SELECT ${USER_COLUMNS}${verifyAuthHash ? ', password' : ''} FROM ${userTable} WHERE id = $1`;
  const tokenSql =
    `SELECT u.id, u.username, u.is_active, u.is_staff, u.is_superuser FROM ${tokenTable} t ` +
    `JOIN ${userTable} u ON u.id = t.user_id WHERE t.key = $1`;
  const secretOptions = secretKey === undefined ? undefined : { secretKey, fallbackKeys, allowLegacy };

  async function query(sql: string, value: unknown, signal: AbortSignal): Promise<readonly unknown[]> {
    signal.throwIfAborted();
    return (await pool.query(sql, [value], { signal })).rows;
  }

  async function validateSession(sessionKey: string, signal: AbortSignal): Promise<Validation> {
    if (!isValidSessionKey(sessionKey)) return invalid('malformed');
    const row = (await query(sessionSql, sessionKey, signal))[0] as
      | { session_data?: unknown; expire_date?: unknown }
      | undefined;
    if (!row || typeof row.session_data !== 'string') return invalid('session-not-found');
    const expiresAt = toEpochMs(row.expire_date);
    if (expiresAt === undefined) throw new TypeError(`${sessionTable}.expire_date is not a timestamp`);

    let session: Record<string, unknown>;
    try {
      session = secretOptions
        ? loadSessionData(row.session_data, secretOptions)
        : readSessionDataUnverified(row.session_data, { allowLegacy });
    } catch (error) {
      if (!isSessionDataError(error)) throw error;
      return invalid(
        error.code === 'E_SESSION_BAD_SIGNATURE' ? 'session-bad-signature' : 'session-malformed',
      );
    }
    const userId = toUserId(readAuthSession(session)?.userId);
    if (userId === undefined) return invalid('session-anonymous');

    const user = (await query(userSql, userId, signal))[0] as UserRow | undefined;
    if (!user) return invalid('user-not-found');
    if (user.is_active !== true) return invalid('user-inactive');
    const { password } = user;
    if (secretOptions && verifyAuthHash) {
      if (typeof password !== 'string' || !verifySessionAuthHash(session, password, secretOptions)) {
        return invalid('auth-hash-mismatch');
      }
    }
    return toValidation(user, 'session', expiresAt);
  }

  async function validateToken(token: string, signal: AbortSignal): Promise<Validation> {
    if (!/^[0-9a-f]{40}$/i.test(token)) return invalid('malformed');
    const user = (await query(tokenSql, token, signal))[0] as UserRow | undefined;
    if (!user) return invalid('token-not-found');
    if (user.is_active !== true) return invalid('user-inactive');
    return toValidation(user, 'token', null);
  }

  return {
    kinds: ['session', 'token'],
    async validate(credential: Credential, { signal }): Promise<Validation> {
      if (credential.kind === 'session') return validateSession(credential.sessionKey, signal);
      if (credential.kind === 'token') return validateToken(credential.token, signal);
      return invalid('unsupported-credential');
    },
  };
}

type UserRow = Partial<
  Record<'id' | 'username' | 'is_active' | 'is_staff' | 'is_superuser' | 'password', unknown>
>;

function toValidation(user: UserRow, kind: 'session' | 'token', expiresAt: number | null): Validation {
  const userId = toUserId(user.id);
  if (userId === undefined || typeof user.username !== 'string') {
    throw new TypeError('the user row has no integer id or no username');
  }
  const identity: Identity = {
    userId,
    username: user.username,
    isActive: user.is_active === true,
    isStaff: user.is_staff === true,
    isSuperuser: user.is_superuser === true,
    credentialKind: kind,
    expiresAt,
  };
  return { valid: true, identity };
}

function invalid(reason: string): Validation {
  return { valid: false, reason };
}

/** Django stores `_auth_user_id` as a string; ids are positive integers in `auth_user`. */
function toUserId(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^[1-9][0-9]{0,15}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function toEpochMs(v: unknown): number | undefined {
  const t =
    v instanceof Date || typeof v === 'string' || typeof v === 'number' ? new Date(v).getTime() : Number.NaN;
  return Number.isFinite(t) ? t : undefined;
}
