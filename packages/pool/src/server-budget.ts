/** Anything that runs a query (a SluicePool, a pg.Pool or a pg.Client). */
export interface Queryable {
  query<R extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** `max_connections` as `mc`, and the reserved connections (+ `reserved_connections` on 16+) as `rc`. */
export const BUDGET_COLUMNS = `current_setting('max_connections')::int AS mc,
       (current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int) AS rc`;

/**
 * Which rows of `pg_stat_activity` are client backends. A role without `pg_read_all_stats`
 * sees `backend_type` NULL for other roles' sessions; those with a role and a database are
 * counted as client backends.
 */
export function clientBackendSql(alias = ''): string {
  const a = alias === '' ? '' : `${alias}.`;
  return `(${a}backend_type = 'client backend' OR (${a}backend_type IS NULL AND ${a}usesysid IS NOT NULL AND ${a}datid IS NOT NULL))`;
}
