import pg from 'pg';
import { uniqueSuffix } from './ports.js';

/** The machine's shared PostgreSQL server (trust auth). Override with SLUICE_TEST_PG_*. */
export const pgHost = process.env.SLUICE_TEST_PG_HOST ?? '127.0.0.1';
export const pgPort = Number(process.env.SLUICE_TEST_PG_PORT ?? 5432);
export const pgUser = process.env.SLUICE_TEST_PG_USER ?? 'postgres';

export function pgUrl(database: string, user = pgUser, port = pgPort): string {
  return `postgres://${encodeURIComponent(user)}@${pgHost}:${port}/${database}`;
}

/** Runs one statement on the maintenance database `postgres`. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({
    connectionString: pgUrl('postgres'),
    application_name: 'sluice-test-admin',
  });
  await client.connect();
  try {
    return await client.query<R>(sql, params);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** Terminates every backend on the database and drops it. Idempotent. */
  drop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Creates a fresh database `sluice_<label>_<pid>_<rand>` for one suite. Call `drop()` in
 * `afterAll`; `dropStaleTestDatabases()` removes what a killed run left behind.
 */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `sluice_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${uniqueSuffix()}`;
  await adminQuery(`CREATE DATABASE "${name}"`);
  let dropped = false;
  const drop = async (): Promise<void> => {
    if (dropped) return;
    dropped = true;
    await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  };
  return { name, url: pgUrl(name), drop, [Symbol.asyncDispose]: drop };
}

/** Drops databases from earlier runs whose process is gone (names carry the pid). */
export async function dropStaleTestDatabases(): Promise<void> {
  const { rows } = await adminQuery<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE datname LIKE 'sluice\\_%'",
  );
  for (const { datname } of rows) {
    const pid = Number(/_(\d+)_[a-z0-9]+$/.exec(datname)?.[1]);
    if (!pid || isAlive(pid)) continue;
    await adminQuery(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
