import type { Credential } from '@sluice/django';
import { checkObject, show } from '@sluice/kit';
import {
  type CredentialKind,
  credentialKinds,
  isValidator,
  type Validation,
  type Validator,
} from '../identity.js';

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
export function compositeValidator(routes: ValidatorRoutes): Validator & { close(): Promise<void> } {
  checkObject('routes', routes);
  const table = new Map<CredentialKind, Validator>();
  for (const [kind, v] of Object.entries(routes) as [CredentialKind, Validator | undefined][]) {
    if (v === undefined) continue;
    if (!credentialKinds.includes(kind)) {
      throw new TypeError(`routes.${kind} is not a credential kind (${credentialKinds.join(', ')})`);
    }
    if (!isValidator(v)) throw new TypeError(`routes.${kind} should be a validator, got ${show(v)}`);
    if (!v.kinds.includes(kind))
      throw new TypeError(`routes.${kind} is a validator that does not handle '${kind}'`);
    table.set(kind, v);
  }
  if (table.size === 0) throw new TypeError('routes should name at least one validator');
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= Promise.all([...new Set(table.values())].map((v) => v.close?.())).then(() => undefined);
    return closing;
  };
  return {
    kinds: [...table.keys()],
    validate(credential: Credential, options): Promise<Validation> {
      const v = table.get(credential.kind);
      if (!v) return Promise.resolve({ valid: false, reason: 'unsupported-credential' });
      return v.validate(credential, options);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
