/**
 * What the database validator needs from a pool: a `SluicePool` from `@sluice/pool` fits. The
 * signal must reach the pool, so that a validation that was aborted or timed out gives up its
 * place in the pool's queue instead of running its query later. A plain `pg.Pool` does not take
 * it (its third argument is a callback): wrap it, `{ query: (text, values) => pgPool.query(text, values) }`,
 * and aborted validations still run their queries.
 */
export interface Queryable {
  query(
    text: string,
    values: unknown[],
    options: { readonly signal: AbortSignal },
  ): Promise<{ readonly rows: readonly unknown[] }>;
}
