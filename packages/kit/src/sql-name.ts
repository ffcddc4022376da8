import { show } from './options.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/**
 * A name checked and quoted for SQL: one plain identifier (`[A-Za-z_][A-Za-z0-9_$]*`, at most 63
 * characters), or `schema.table` when `qualified`. Each part is quoted as `pg.escapeIdentifier`
 * quotes it (a plain identifier holds no `"` to double).
 *
 * @throws {TypeError} naming the option when `value` is not such a name
 * @example
 * ```ts
 * sqlName('table', 'public.django_session', true); // '"public"."django_session"'
 * ```
 */
export function sqlName(name: string, value: unknown, qualified = false): string {
  const parts = typeof value === 'string' ? value.split('.') : [];
  if (parts.length === 0 || parts.length > (qualified ? 2 : 1) || !parts.every((p) => IDENTIFIER.test(p))) {
    const what = qualified ? 'a table name or schema.table' : 'a plain SQL identifier';
    throw new TypeError(`${name} should be ${what}, got ${show(value)}`);
  }
  return parts.map((p) => `"${p}"`).join('.');
}
