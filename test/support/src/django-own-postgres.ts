// The Django fixture, but running against a PostgreSQL cluster the caller owns (so a test can
// kill and restart the database under it, or give it a small `max_connections` of its own).
// startDjango() builds and seeds its database on the machine's shared server; this points
// gunicorn at the private cluster instead and copies the seeded database there
// (pg_dump | psql) before anything uses it.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { type DjangoFixture, type StartDjangoOptions, startDjango } from './django.js';
import { type OwnPostgres, postgresBinDir } from './own-postgres.js';

/** Options of {@link startDjangoOnOwnPostgres}: the fixture's, and who Django is on the cluster. */
export interface DjangoOnOwnPostgresOptions extends StartDjangoOptions {
  /**
   * A plain LOGIN role (created if missing) that owns the database and that Django connects as,
   * as CVAT's own user: it gets no superuser-reserved slots, so "too many clients" comes at
   * `max_connections - superuser_reserved_connections`. @default the superuser `postgres`
   */
  readonly role?: string | undefined;
}

export interface DjangoOnOwnPostgres {
  readonly django: DjangoFixture;
  /** The database Django uses, on the private cluster. */
  readonly databaseName: string;
  /** The database on the private cluster, as the role Django connects as. */
  readonly databaseUrl: string;
  /** That role (`postgres` unless `role` was given). */
  readonly user: string;
}

function copyDatabase(fromUrl: string, toUrl: string): Promise<void> {
  const bin = postgresBinDir();
  return new Promise((resolve, reject) => {
    const dump = spawn(join(bin, 'pg_dump'), ['--no-owner', '--no-privileges', '-d', fromUrl], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const restore = spawn(join(bin, 'psql'), ['-q', '-X', '-v', 'ON_ERROR_STOP=1', '-d', toUrl], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let errors = '';
    dump.stderr?.on('data', (c: Buffer) => {
      errors += c.toString();
    });
    restore.stderr?.on('data', (c: Buffer) => {
      errors += c.toString();
    });
    if (dump.stdout && restore.stdin) dump.stdout.pipe(restore.stdin);
    let dumped: number | null | undefined;
    dump.on('exit', (code) => {
      dumped = code;
    });
    restore.on('error', reject);
    dump.on('error', reject);
    restore.on('exit', (code) => {
      if (code === 0 && dumped === 0) resolve();
      else
        reject(new Error(`copying the fixture database failed (dump ${dumped}, restore ${code}): ${errors}`));
    });
  });
}

/**
 * Starts the Django fixture with its database on `pg` (a private cluster). Users, tokens and
 * sessions then live on `pg` only. `databaseHost` / `databasePort` still redirect Django (e.g. to
 * a PgBouncer in front of `pg`, which may start later: Django connects on its first request).
 */
export async function startDjangoOnOwnPostgres(
  pg: OwnPostgres,
  options: DjangoOnOwnPostgresOptions = {},
): Promise<DjangoOnOwnPostgres> {
  const { role, ...fixture } = options;
  const user = role ?? 'postgres';
  const databaseName = `cvat_${Math.random().toString(36).slice(2, 8)}`;
  if (role !== undefined) {
    const exists = await pg.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
    if (exists.rowCount === 0) await pg.query(`CREATE ROLE ${ident(role)} LOGIN`);
  }
  await pg.query(`CREATE DATABASE ${databaseName} OWNER ${ident(user)}`);
  const databaseUrl = `postgres://${encodeURIComponent(user)}@${pg.host}:${pg.port}/${databaseName}`;
  const django = await startDjango({
    ...fixture,
    label: fixture.label ?? 'faults',
    env: {
      SLUICE_FIXTURE_DB_HOST: fixture.databaseHost ?? pg.host,
      SLUICE_FIXTURE_DB_PORT: String(fixture.databasePort ?? pg.port),
      SLUICE_FIXTURE_DB_NAME: databaseName,
      SLUICE_FIXTURE_DB_USER: user,
      // A request during a database outage fails fast instead of waiting 10 s.
      SLUICE_FIXTURE_DB_CONNECT_TIMEOUT: '2',
      ...fixture.env,
    },
  });
  try {
    // Restored as `user`: the tables are its own, as CVAT's are its database user's.
    await copyDatabase(django.database.url, databaseUrl);
  } catch (error) {
    await django.stop();
    throw error;
  }
  return { django, databaseName, databaseUrl, user };
}

const ident = (name: string): string => pg.escapeIdentifier(name);
