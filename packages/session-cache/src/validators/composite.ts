import type { Credential } from '@sluice/django';
import type { CredentialKind, Validation, Validator } from '../identity.js';
import { checkObject, describe } from '../option-checks.js';

/** Which validator handles which credential kind. Kinds left out are refused (401) without I/O. */
export type ValidatorRoutes = Partial<Record<CredentialKind, Validator>>;

/**
 * Routes each credential kind to its validator, e.g. sessions and tokens to the database and
 * Bearer/Basic to introspection. `close()` closes each distinct validator once.
 *
 * @throws {TypeError} a route is not a validator, or it does not handle the kind it is routed
 * @example
 * const validator = compositeValidator({ session: db, token: db, bearer: remote, basic: remote });
 */
export function compositeValidator(routes: ValidatorRoutes): Validator {
  checkObject('routes', routes);
  const table = new Map<CredentialKind, Validator>();
  for (const [kind, v] of Object.entries(routes) as [CredentialKind, Validator | undefined][]) {
    if (v === undefined) continue;
    if (!['session', 'token', 'bearer', 'basic'].includes(kind)) {
      throw new TypeError(`routes.${kind} is not a credential kind (session, token, bearer, basic)`);
    }
    if (typeof v !== 'object' || v === null || typeof v.validate !== 'function' || !Array.isArray(v.kinds)) {
      throw new TypeError(`routes.${kind} should be a validator, got ${describe(v)}`);
    }
    if (!v.kinds.includes(kind))
      throw new TypeError(`routes.${kind} is a validator that does not handle '${kind}'`);
    table.set(kind, v);
  }
  if (table.size === 0) throw new TypeError('routes should name at least one validator');
  let closed = false;
  return {
    kinds: [...table.keys()],
    validate(credential: Credential, options): Promise<Validation> {
      const v = table.get(credential.kind);
      if (!v) return Promise.resolve({ valid: false, reason: 'unsupported-credential' });
      return v.validate(credential, options);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const distinct = new Set(table.values());
      await Promise.all([...distinct].map((v) => v.close?.()));
    },
  };
}
