/**
 * What the database validator needs from a pool: a `SluicePool` from `@sluice/pool` or a plain
 * `pg.Pool` both fit. Only parameterised queries are sent.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}
