import { describe } from './validate.js';

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/** Quotes a plain identifier (`expire_date` -> `"expire_date"`); throws on anything else. */
export function quoteColumn(where: string, option: string, name: unknown): string {
  if (typeof name !== 'string' || !IDENT.test(name)) {
    throw new TypeError(`${where}: ${option} should be a plain SQL identifier, got ${describe(name)}`);
  }
  return `"${name}"`;
}

/** Quotes `table` or `schema.table`; throws on anything else. */
export function quoteTable(where: string, option: string, name: unknown): string {
  const parts = typeof name === 'string' ? name.split('.') : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => IDENT.test(p))) {
    throw new TypeError(`${where}: ${option} should be a table name or schema.table, got ${describe(name)}`);
  }
  return parts.map((p) => `"${p}"`).join('.');
}
