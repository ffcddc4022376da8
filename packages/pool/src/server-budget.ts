/** Anything that runs a query (a SluicePool, a pg.Pool or a pg.Client). */
export interface Queryable {
  query<R extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** The server's connection budget and how much of it is in use. */
export interface ServerBudget {
  readonly maxConnections: number;
  readonly reservedConnections: number;
  /** Client backends now, all of them. */
  readonly clientBackends: number;
  /** Client backends now whose pid is not in the given set. */
  readonly otherBackends: number;
}

/**
 * Which rows of `pg_stat_activity` are client backends. A role without `pg_read_all_stats`
 * sees `backend_type` NULL for other roles' sessions; those with a role and a database are
 * counted as client backends.
 */
export function clientBackendSql(alias = ''): string {
  const a = alias === '' ? '' : `${alias}.`;
  return `(${a}backend_type = 'client backend' OR (${a}backend_type IS NULL AND ${a}usesysid IS NOT NULL AND ${a}datid IS NOT NULL))`;
}

/**
 * Reads `max_connections`, `superuser_reserved_connections` (+ `reserved_connections` on
 * PostgreSQL 16+) and counts client backends, in one query.
 */
export async function readServerBudget(db: Queryable, ownPids: readonly number[]): Promise<ServerBudget> {
  const { rows } = await db.query<{ mc: number; src: number; rc: number; total: number; others: number }>(
    `SELECT current_setting('max_connections')::int AS mc,
            current_setting('superuser_reserved_connections')::int AS src,
            coalesce(current_setting('reserved_connections', true), '0')::int AS rc,
            count(*)::int AS total,
            (count(*) FILTER (WHERE NOT (pid = ANY($1::int[]))))::int AS others
       FROM pg_stat_activity
      WHERE ${clientBackendSql()}`,
    [ownPids],
  );
  const row = rows[0];
  if (!row) throw new Error('reading the server connection budget returned no row');
  return {
    maxConnections: row.mc,
    reservedConnections: row.src + row.rc,
    clientBackends: row.total,
    otherBackends: row.others,
  };
}
