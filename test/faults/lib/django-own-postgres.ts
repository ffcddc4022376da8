// The Django fixture, but running against a PostgreSQL cluster the suite owns (so the suite can
// kill and restart the database under it). startDjango() builds and seeds its database on the
// machine's shared server; this points gunicorn at the private cluster instead and copies the
// seeded database there (pg_dump | psql) before anything uses it.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import {
  type DjangoFixture,
  type OwnPostgres,
  postgresBinDir,
  type StartDjangoOptions,
  startDjango,
} from '../../support/src/index.ts';

export interface DjangoOnOwnPostgres {
  readonly django: DjangoFixture;
  /** The database Django uses, on the private cluster. */
  readonly databaseName: string;
  readonly databaseUrl: string;
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
 * sessions then live on `pg` only.
 */
export async function startDjangoOnOwnPostgres(
  pg: OwnPostgres,
  options: StartDjangoOptions = {},
): Promise<DjangoOnOwnPostgres> {
  const databaseName = `cvat_${Math.random().toString(36).slice(2, 8)}`;
  await pg.query(`CREATE DATABASE ${databaseName}`);
  const django = await startDjango({
    ...options,
    label: options.label ?? 'faults',
    env: {
      ...options.env,
      SLUICE_FIXTURE_DB_HOST: pg.host,
      SLUICE_FIXTURE_DB_PORT: String(pg.port),
      SLUICE_FIXTURE_DB_NAME: databaseName,
      SLUICE_FIXTURE_DB_USER: 'postgres',
      // A request during the database outage fails fast instead of waiting 10 s.
      SLUICE_FIXTURE_DB_CONNECT_TIMEOUT: '2',
    },
  });
  try {
    await copyDatabase(django.database.url, pg.url(databaseName));
  } catch (error) {
    await django.stop();
    throw error;
  }
  return { django, databaseName, databaseUrl: pg.url(databaseName) };
}
