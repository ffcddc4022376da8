import type { Credential } from '@sluice/django';

/** The kinds of credential a request can carry (see `extractCredential` in `@sluice/django`). */
export type CredentialKind = Credential['kind'];

/** Every credential kind, in the order Django REST framework tries them. */
export const credentialKinds: readonly CredentialKind[] = ['token', 'bearer', 'session', 'basic'];

/** Who a valid credential belongs to. Set as `req.sluice.identity` by the middleware. */
export interface Identity {
  /** `auth_user.id`. */
  readonly userId: number;
  readonly username: string;
  readonly isActive: boolean;
  readonly isStaff: boolean;
  readonly isSuperuser: boolean;
  /** The credential kind the request authenticated with. */
  readonly credentialKind: CredentialKind;
  /** When the credential stops being valid (a session's `expire_date`), epoch ms; `null` for tokens. */
  readonly expiresAt: number | null;
}

/** A validator's answer: valid with the identity, or invalid with a reason (cached negatively). */
export type Validation =
  | { readonly valid: true; readonly identity: Identity }
  | { readonly valid: false; readonly reason: string };

/**
 * Decides whether a credential is valid. Throwing (or rejecting) means "cannot tell right now":
 * the answer is not cached and the middleware answers 503.
 */
export interface Validator {
  /** The credential kinds this validator understands; others are refused (401) without I/O. */
  readonly kinds: readonly CredentialKind[];
  /**
   * Validates one credential. `signal` aborts when `validatorTimeoutMs` passes or the cache closes.
   * @throws anything when the answer is unknown (database down, endpoint failing)
   */
  validate(credential: Credential, options: { readonly signal: AbortSignal }): Promise<Validation>;
  /** Releases what the validator owns (a pool it created). Called by the cache's `close()` when it owns the validator. */
  close?(): Promise<void>;
  /** The same as `close()`, for `await using`. */
  [Symbol.asyncDispose]?(): Promise<void>;
}

/** True when `v` has the shape of a {@link Validator}. */
export function isValidator(v: unknown): v is Validator {
  return typeof (v as Validator | null)?.validate === 'function' && Array.isArray((v as Validator).kinds);
}

/** True when `v` is a well-formed {@link Identity} (used to check values read back from Redis). */
export function isIdentity(v: unknown): v is Identity {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    Number.isSafeInteger(o.userId) &&
    typeof o.username === 'string' &&
    typeof o.isActive === 'boolean' &&
    typeof o.isStaff === 'boolean' &&
    typeof o.isSuperuser === 'boolean' &&
    typeof o.credentialKind === 'string' &&
    (credentialKinds as readonly string[]).includes(o.credentialKind) &&
    (o.expiresAt === null || (typeof o.expiresAt === 'number' && Number.isFinite(o.expiresAt)))
  );
}
