import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, pbkdf2, randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { uniqueSuffix } from './ports.js';
import { adminQuery, pgHost, pgPort, pgUrl, pgUser } from './postgres.js';

/** The Django project this helper runs (test/django), found relative to this file. */
export const djangoProjectDir = fileURLToPath(new URL('../../django/', import.meta.url));

/** The interpreter with Debian's Django and DRF. Override with SLUICE_DJANGO_PYTHON. */
export const djangoPython = process.env.SLUICE_DJANGO_PYTHON ?? '/usr/bin/python3';

/** The `application_name` CVAT's server connects with (since 2.10.3); its RQ workers use `cvat:worker:<queues>`. */
export const CVAT_SERVER_APPLICATION_NAME = 'cvat:server';

/** A user to seed into the fixture's database. */
export interface DjangoUserSpec {
  readonly username: string;
  readonly password: string;
  /** @default '' */
  readonly email?: string;
  /** @default false */
  readonly isStaff?: boolean;
  /** @default false */
  readonly isSuperuser?: boolean;
  /** @default true */
  readonly isActive?: boolean;
}

/** A user that exists in the fixture's database, with its DRF token. */
export interface DjangoUser {
  readonly id: number;
  readonly username: string;
  /** The current password (kept up to date by `setPassword`). */
  readonly password: string;
  /** `auth_user.password`, e.g. `pbkdf2_sha256$260000$<salt>$<hash>`. */
  readonly passwordHash: string;
  readonly email: string;
  readonly isStaff: boolean;
  readonly isSuperuser: boolean;
  readonly isActive: boolean;
  /** The user's DRF token (40 hex), usable as `Authorization: Token <token>`. */
  readonly token: string;
}

/** What `login()` gets back from `POST /api/auth/login`. */
export interface DjangoLogin {
  /** The `sessionid` cookie's value (the session key). */
  readonly sessionId: string;
  readonly csrfToken: string;
  /** The DRF token the endpoint answered with (`{"key"}`). */
  readonly token: string;
  /** A ready `Cookie` header: `<sessionCookieName>=<sessionId>; csrftoken=<csrfToken>`. */
  readonly cookie: string;
  /** Headers for an unsafe request with the session: `cookie` and `x-csrftoken`. */
  readonly headers: Readonly<Record<'cookie' | 'x-csrftoken', string>>;
}

/** The fixture's request gauge (`GET /api/_fixture/concurrency`). */
export interface DjangoConcurrency {
  /** Requests in flight now (the fixture's own control endpoints excluded). */
  readonly inFlight: number;
  /** The most in flight at once since start or the last reset. */
  readonly peak: number;
}

/** Options of {@link startDjango}. */
export interface StartDjangoOptions {
  /** Django's SECRET_KEY. @default 50 random characters */
  readonly secretKey?: string;
  /** Django's CONN_MAX_AGE in seconds; `null` keeps connections for the thread's life. @default 0 (as CVAT) */
  readonly connMaxAge?: number | null;
  /** gunicorn gthread threads (one worker process). @default 8 */
  readonly threads?: number;
  /** How long every view that touches the database holds its connection, in ms. @default 0 */
  readonly workMs?: number;
  /** 'sleep' holds the connection idle (Python sleep), 'pg_sleep' holds it active. @default 'sleep' */
  readonly workMode?: 'sleep' | 'pg_sleep';
  /** How long an export takes from POST until its request is finished, in ms. @default 1000 */
  readonly exportMs?: number;
  /** Size of an export's download, in bytes. @default 65536 */
  readonly exportBytes?: number;
  /** Users to seed. @default DEFAULT_DJANGO_USERS (a normal user and a staff user) */
  readonly users?: readonly DjangoUserSpec[];
  /**
   * Runs Django as a dedicated LOGIN role with `CONNECTION LIMIT n` that owns the database,
   * so requests beyond `n` concurrent connections fail with "too many connections" without
   * touching the shared server's settings. The role is dropped on `stop()`.
   */
  readonly connectionLimit?: number;
  /** Serve `/api/_fixture/*` (concurrency gauge, user creation, password change). @default true */
  readonly debugEndpoints?: boolean;
  /** Logout also deletes the user's DRF token, as CVAT (dj-rest-auth) does. @default true */
  readonly logoutDeletesToken?: boolean;
  /** Django's SESSION_COOKIE_NAME. @default 'sessionid' */
  readonly sessionCookieName?: string;
  /**
   * `application_name` of Django's PostgreSQL connections. Pass {@link CVAT_SERVER_APPLICATION_NAME}
   * (`'cvat:server'`) to look like CVAT's server to the database. @default none
   */
  readonly applicationName?: string;
  /**
   * Leak mode: one successful dataset download in `n` never closes its database connection (it
   * stays idle, its last query the `django_session` lookup when the download came with a
   * session), as in the seed's incident. 0 turns it off. @default 0
   */
  readonly leakEvery?: number;
  /**
   * CVAT's `CVAT_NUM_PROXIES`: Django sees the client as `X-Forwarded-For[-(n + 1)]` (DRF's
   * `NUM_PROXIES = n + 1`, as in CVAT 2.66+). @default 0
   */
  readonly cvatNumProxies?: number;
  /**
   * Where Django connects instead of the shared server (e.g. a PgBouncer in front of it); the
   * role, database and helpers' own connections stay on the shared server. Django opens no
   * connection before its first request, so the pooler may start after `startDjango` resolves.
   * @default the shared server (SLUICE_TEST_PG_HOST / _PORT)
   */
  readonly databaseHost?: string;
  /** Port of `databaseHost`. @default the shared server's */
  readonly databasePort?: number;
  /** Label in the database name (`sluice_<label>_<pid>_<rand>`). @default 'django' */
  readonly label?: string;
  /** How long to wait for the server to answer. @default 30000 */
  readonly startTimeoutMs?: number;
  /** Extra environment variables for gunicorn (win over the ones the options set). */
  readonly env?: Readonly<Record<string, string>>;
}

/** A running Django fixture. `stop()` (or `await using`) kills it and drops its database. */
export interface DjangoFixture {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  readonly port: number;
  /** The gunicorn master's pid. */
  readonly pid: number;
  /** The fixture's database; `url` connects as the superuser, `user` is who Django runs as. */
  readonly database: { readonly name: string; readonly url: string; readonly user: string };
  readonly secretKey: string;
  readonly sessionCookieName: string;
  /** Seeded users, then users made with `createUser`. */
  readonly users: readonly DjangoUser[];
  /**
   * A known user by name.
   * @throws {TypeError} when no such user was seeded or created
   */
  user(username: string): DjangoUser;
  /**
   * Logs in through `POST /api/auth/login`. `password` defaults to the known user's.
   * @throws {DjangoFixtureError} `E_DJANGO_REQUEST` when the login is refused
   */
  login(username: string, password?: string): Promise<DjangoLogin>;
  /** Creates a user through the fixture endpoint (Django hashes the password). */
  createUser(spec: DjangoUserSpec): Promise<DjangoUser>;
  /** Changes a user's password through Django (its sessions' auth hash stops matching). */
  setPassword(username: string, password: string): Promise<DjangoUser>;
  concurrency(): Promise<DjangoConcurrency>;
  /** Sets the peak back to the number in flight now. */
  resetConcurrency(): Promise<DjangoConcurrency>;
  /** The leak mode's gauge. */
  leaks(): Promise<DjangoLeaks>;
  /** Closes every connection the leak mode leaked; resolves to how many. */
  closeLeaks(): Promise<number>;
  /** Creates a personal access token of a user (Bearer), without logging in. */
  createAccessToken(
    username: string,
    options?: { readOnly?: boolean; expiryDate?: Date; name?: string },
  ): Promise<DjangoAccessToken>;
  /** Revokes a personal access token. */
  revokeAccessToken(id: number): Promise<void>;
  /** Where TUS uploads are stored (a temporary directory removed on `stop()`). */
  readonly uploadDir: string;
  /** The tail of gunicorn's and Django's stderr. */
  logs(): string;
  /** Kills gunicorn, drops the database and the role, removes the upload directory. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The users a fixture gets when `users` is not given. */
export const DEFAULT_DJANGO_USERS: readonly DjangoUserSpec[] = Object.freeze([
  Object.freeze({ username: 'user', password: 'user-password-1', email: 'user@example.com' }),
  Object.freeze({
    username: 'staff',
    password: 'staff-password-1',
    email: 'staff@example.com',
    isStaff: true,
  }),
]);

/** Codes of {@link DjangoFixtureError}. */
export type DjangoFixtureErrorCode =
  | 'E_DJANGO_TEMPLATE'
  | 'E_DJANGO_START'
  | 'E_DJANGO_REQUEST'
  | 'E_DJANGO_DEBUG_DISABLED'
  | 'E_DJANGO_STOPPED';

/** The leak mode's gauge (`GET /api/_fixture/leaks`). */
export interface DjangoLeaks {
  /** The `leakEvery` setting (0: off). */
  readonly every: number;
  /** Successful dataset downloads counted. */
  readonly downloads: number;
  /** Connections leaked so far (and not closed with `closeLeaks`). */
  readonly leaked: number;
  /** Of those, how many the server still believes open. */
  readonly open: number;
}

/** A personal access token made with `createAccessToken`. */
export interface DjangoAccessToken {
  readonly id: number;
  /** `Authorization: Bearer <value>`: `<8 alnum>.<32 alnum>`. */
  readonly value: string;
  readonly readOnly: boolean;
  readonly expiryDate: string | null;
}

/** A failure of the fixture itself (not of the code under test). */
export class DjangoFixtureError extends Error {
  override readonly name = 'DjangoFixtureError';
  readonly code: DjangoFixtureErrorCode;
  /** The HTTP status, for `E_DJANGO_REQUEST`. */
  readonly status: number | undefined;
  /** The tail of the server's stderr, when there is one. */
  readonly logs: string | undefined;

  constructor(
    code: DjangoFixtureErrorCode,
    message: string,
    extra: { status?: number; logs?: string; cause?: unknown } = {},
  ) {
    super(extra.logs ? `${message}\n--- server stderr (tail) ---\n${extra.logs}` : message, {
      cause: extra.cause,
    });
    this.code = code;
    this.status = extra.status;
    this.logs = extra.logs;
  }
}

/** True when `e` is a {@link DjangoFixtureError}. */
export function isDjangoFixtureError(e: unknown): e is DjangoFixtureError {
  return e instanceof DjangoFixtureError;
}

const PBKDF2_ITERATIONS = 260_000; // Django 3.2's PBKDF2PasswordHasher
const SALT_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const TEMPLATE_PREFIX = 'sluice_django_template_';
const TEMPLATE_LOCK_KEY = 7_318_402_561_338_001n;
const TEMPLATE_KEEP_MS = 60 * 60 * 1000;
const LOG_TAIL_BYTES = 64 * 1024;
const PROBE_TIMEOUT_MS = 2_000;

/**
 * `auth_user.password` for `password` as Django 3.2 computes it by default
 * (`pbkdf2_sha256$260000$<22 alphanumerics>$<base64>`), so seeded users log in for real.
 */
export async function djangoPasswordHash(
  password: string,
  { salt = randomSalt(), iterations = PBKDF2_ITERATIONS }: { salt?: string; iterations?: number } = {},
): Promise<string> {
  const key = await new Promise<Buffer>((resolve, reject) =>
    pbkdf2(password, salt, iterations, 32, 'sha256', (err, k) => (err ? reject(err) : resolve(k))),
  );
  return `pbkdf2_sha256$${iterations}$${salt}$${key.toString('base64')}`;
}

function randomSalt(length = 22): string {
  let s = '';
  for (let i = 0; i < length; i += 1) s += SALT_CHARS[randomInt(SALT_CHARS.length)];
  return s;
}

// Hashing costs ~0.1 s per password; one hash per password per process is enough for tests.
const hashCache = new Map<string, Promise<string>>();
function cachedPasswordHash(password: string): Promise<string> {
  let hash = hashCache.get(password);
  if (!hash) {
    hash = djangoPasswordHash(password);
    hashCache.set(password, hash);
    hash.catch(() => hashCache.delete(password));
  }
  return hash;
}

// ---------------------------------------------------------------------------------------------
// Children that must not outlive this process.

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

function track(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // The server's own watchdog (SLUICE_FIXTURE_PARENT_PID) covers a SIGKILLed test process.
    process.once('exit', () => {
      for (const c of liveChildren) killGroup(c, 'SIGKILL');
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The template database.

interface RunResult {
  code: number | null;
  output: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: djangoProjectDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let output = '';
    const append = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-LOG_TAIL_BYTES);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    timer.unref();
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function baseEnv(): NodeJS.ProcessEnv {
  // A small, explicit environment: nothing from the caller's Python setup leaks in.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    PYTHONUNBUFFERED: '1',
    DJANGO_SETTINGS_MODULE: 'fixture.settings',
  };
  if (process.env.HOME) env.HOME = process.env.HOME;
  // Upload and gunicorn temp files go where the test run keeps its own (removed at its end).
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return env;
}

function dbEnv(name: string, user: string): Record<string, string> {
  return {
    SLUICE_FIXTURE_DB_HOST: pgHost,
    SLUICE_FIXTURE_DB_PORT: String(pgPort),
    SLUICE_FIXTURE_DB_NAME: name,
    SLUICE_FIXTURE_DB_USER: user,
  };
}

async function listSources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== '__pycache__') out.push(...(await listSources(path)));
    } else if (entry.name.endsWith('.py') && relative(djangoProjectDir, path) !== 'vectors.py') {
      out.push(path);
    }
  }
  return out;
}

let versionsPromise: Promise<string> | undefined;
function djangoVersions(): Promise<string> {
  versionsPromise ??= run(
    djangoPython,
    ['-c', 'import django, rest_framework; print(django.__version__, rest_framework.__version__)'],
    baseEnv(),
    30_000,
  ).then(({ code, output }) => {
    if (code !== 0) {
      throw new DjangoFixtureError('E_DJANGO_TEMPLATE', `${djangoPython} cannot import django: ${output}`);
    }
    return output.trim();
  });
  return versionsPromise;
}

/**
 * The template database's name for the project's current sources and Django version:
 * `sluice_django_template_<16 hex>`.
 */
export async function djangoTemplateName(): Promise<string> {
  const hash = createHash('sha256');
  hash.update(await djangoVersions());
  const files = (await listSources(djangoProjectDir)).sort();
  for (const file of files) {
    hash.update(`\0${relative(djangoProjectDir, file).split(sep).join('/')}\0`);
    hash.update(await readFile(file));
  }
  return `${TEMPLATE_PREFIX}${hash.digest('hex').slice(0, 16)}`;
}

async function templateReady(name: string): Promise<boolean> {
  const { rows } = await adminQuery<{ datistemplate: boolean }>(
    'SELECT datistemplate FROM pg_database WHERE datname = $1',
    [name],
  );
  return rows[0]?.datistemplate === true;
}

async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  const { rows } = await client.query<{ datistemplate: boolean }>(
    'SELECT datistemplate FROM pg_database WHERE datname = $1',
    [name],
  );
  if (rows[0]?.datistemplate) await client.query(`ALTER DATABASE ${ident(name)} IS_TEMPLATE false`);
  await client.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
}

async function buildTemplate(name: string): Promise<void> {
  const client = new pg.Client({
    connectionString: pgUrl('postgres'),
    application_name: 'sluice-test-admin',
  });
  await client.connect();
  try {
    // One builder at a time across every process on the machine; the others wait, then find
    // the template ready.
    await client.query("SET lock_timeout = '180s'");
    await client.query('SELECT pg_advisory_lock($1::bigint)', [TEMPLATE_LOCK_KEY.toString()]);
    if (await templateReady(name)) return;
    await dropDatabase(client, name); // what a crashed build left
    await client.query(`CREATE DATABASE ${ident(name)}`);
    const env = {
      ...baseEnv(),
      ...dbEnv(name, pgUser),
      SLUICE_FIXTURE_SECRET_KEY: 'template-build-only',
    };
    const result = await run(djangoPython, ['manage.py', 'migrate', '--noinput', '-v', '1'], env, 180_000);
    if (result.code !== 0) {
      await dropDatabase(client, name).catch(() => undefined);
      throw new DjangoFixtureError('E_DJANGO_TEMPLATE', `migrating the template database ${name} failed`, {
        logs: result.output,
      });
    }
    await client.query(`COMMENT ON DATABASE ${ident(name)} IS ${literal(`built ${Date.now()}`)}`);
    await client.query(`ALTER DATABASE ${ident(name)} ALLOW_CONNECTIONS false`);
    await client.query(`ALTER DATABASE ${ident(name)} IS_TEMPLATE true`);
    await pruneTemplates(client, name);
  } finally {
    await client.end().catch(() => undefined);
  }
}

// Templates of other sources, built more than an hour ago. A run that still needs one rebuilds it.
async function pruneTemplates(client: pg.Client, keep: string): Promise<void> {
  const { rows } = await client.query<{ datname: string; note: string | null }>(
    `SELECT datname, shobj_description(oid, 'pg_database') AS note FROM pg_database
      WHERE datname LIKE $1 AND datname <> $2`,
    [`${TEMPLATE_PREFIX.replaceAll('_', '\\_')}%`, keep],
  );
  for (const { datname, note } of rows) {
    const built = Number(/^built (\d+)$/.exec(note ?? '')?.[1] ?? 0);
    if (Date.now() - built < TEMPLATE_KEEP_MS) continue;
    await dropDatabase(client, datname).catch(() => undefined);
  }
}

let templatePromise: Promise<string> | undefined;

/**
 * Makes sure the migrated template database for the current sources exists and returns its
 * name. Built once per source hash (under a PostgreSQL advisory lock, so parallel suites build
 * it once between them); every fixture database is a copy of it.
 * @throws {DjangoFixtureError} `E_DJANGO_TEMPLATE` when `manage.py migrate` fails
 */
export function ensureDjangoTemplate(): Promise<string> {
  templatePromise ??= (async () => {
    const name = await djangoTemplateName();
    if (!(await templateReady(name))) await buildTemplate(name);
    return name;
  })();
  templatePromise.catch(() => {
    templatePromise = undefined;
  });
  return templatePromise;
}

async function cloneTemplate(name: string, owner: string | undefined): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    const template = await ensureDjangoTemplate();
    try {
      await adminQuery(
        `CREATE DATABASE ${ident(name)} TEMPLATE ${ident(template)}${owner ? ` OWNER ${ident(owner)}` : ''}`,
      );
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (attempt >= 5) throw err;
      if (code === '3D000') {
        templatePromise = undefined; // pruned by another run: build it again
      } else if (code === '55006') {
        await new Promise((r) => setTimeout(r, 200)); // a backend still leaving the template
      } else {
        throw err;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Leftovers of killed runs.

const FIXTURE_NAME = /_(\d+)_[a-z0-9]+$/;
const FIXTURE_COMMENT = 'sluice django fixture';
const UPLOAD_DIR_PREFIX = 'sluice-django-uploads-';
let staleSweep: Promise<void> | undefined;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * Drops fixture databases (`sluice_<label>_<pid>_<rand>`) and roles (`sluice_django_<pid>_<rand>`)
 * whose process is gone, and removes their upload directories. Runs once per process before the
 * first start; safe to call any time.
 */
export async function dropStaleDjangoFixtures(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const pid = Number(new RegExp(`^${UPLOAD_DIR_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (pid && !isAlive(pid)) await rm(join(tmpdir(), name), { recursive: true, force: true });
  }
  const dbs = await adminQuery<{ name: string }>(
    `SELECT datname AS name FROM pg_database
      WHERE NOT datistemplate
        AND (datname LIKE 'sluice\\_django\\_%' OR shobj_description(oid, 'pg_database') = $1)`,
    [FIXTURE_COMMENT],
  );
  for (const { name } of dbs.rows) {
    const pid = Number(FIXTURE_NAME.exec(name)?.[1]);
    if (!pid || isAlive(pid)) continue;
    await adminQuery(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`).catch(() => undefined);
  }
  const roles = await adminQuery<{ name: string }>(
    "SELECT rolname AS name FROM pg_roles WHERE rolname LIKE 'sluice\\_django\\_%'",
  );
  for (const { name } of roles.rows) {
    const pid = Number(FIXTURE_NAME.exec(name)?.[1]);
    if (!pid || isAlive(pid)) continue;
    await adminQuery(`DROP ROLE IF EXISTS ${ident(name)}`).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Options.

interface ResolvedOptions {
  secretKey: string;
  connMaxAge: number | null;
  threads: number;
  workMs: number;
  workMode: 'sleep' | 'pg_sleep';
  exportMs: number;
  exportBytes: number;
  users: readonly DjangoUserSpec[];
  connectionLimit: number | undefined;
  debugEndpoints: boolean;
  logoutDeletesToken: boolean;
  sessionCookieName: string;
  applicationName: string | undefined;
  leakEvery: number;
  cvatNumProxies: number;
  databaseHost: string | undefined;
  databasePort: number | undefined;
  label: string;
  startTimeoutMs: number;
  env: Readonly<Record<string, string>>;
}

function integer(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`startDjango: ${name} must be an integer, got ${String(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`startDjango: ${name} must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function bool(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean')
    throw new TypeError(`startDjango: ${name} must be a boolean, got ${String(value)}`);
  return value;
}

function text(name: string, value: unknown, pattern: RegExp): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new TypeError(`startDjango: ${name} must match ${pattern}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function validateUser(spec: DjangoUserSpec, where: string): void {
  if (typeof spec !== 'object' || spec === null) throw new TypeError(`${where} must be an object`);
  if (typeof spec.username !== 'string' || !/^[\w.@+-]{1,150}$/.test(spec.username)) {
    throw new TypeError(`${where}.username must be a Django username, got ${JSON.stringify(spec.username)}`);
  }
  if (typeof spec.password !== 'string' || spec.password === '') {
    throw new TypeError(`${where}.password must be a non-empty string`);
  }
  if (spec.email !== undefined && typeof spec.email !== 'string') {
    throw new TypeError(`${where}.email must be a string`);
  }
  for (const flag of ['isStaff', 'isSuperuser', 'isActive'] as const) {
    if (spec[flag] !== undefined && typeof spec[flag] !== 'boolean') {
      throw new TypeError(`${where}.${flag} must be a boolean, got ${String(spec[flag])}`);
    }
  }
}

function resolveOptions(o: StartDjangoOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw new TypeError('startDjango: options must be an object');
  const secretKey =
    text('secretKey', o.secretKey, /^[\x21-\x7e]{1,500}$/) ?? randomBytes(36).toString('base64url');
  let connMaxAge: number | null = 0;
  if (o.connMaxAge === null) connMaxAge = null;
  else connMaxAge = integer('connMaxAge', o.connMaxAge, 0, 0, 86_400);
  if (o.workMode !== undefined && o.workMode !== 'sleep' && o.workMode !== 'pg_sleep') {
    throw new TypeError(`startDjango: workMode must be 'sleep' or 'pg_sleep', got ${String(o.workMode)}`);
  }
  const users = o.users ?? DEFAULT_DJANGO_USERS;
  if (!Array.isArray(users)) throw new TypeError('startDjango: users must be an array');
  const seen = new Set<string>();
  users.forEach((u, i) => {
    validateUser(u, `startDjango: users[${i}]`);
    if (seen.has(u.username)) throw new TypeError(`startDjango: users has ${u.username} twice`);
    seen.add(u.username);
  });
  const env = o.env ?? {};
  if (typeof env !== 'object' || env === null) throw new TypeError('startDjango: env must be an object');
  for (const [k, v] of Object.entries(env)) {
    if (typeof v !== 'string')
      throw new TypeError(`startDjango: env.${k} must be a string, got ${String(v)}`);
  }
  return {
    secretKey,
    connMaxAge,
    threads: integer('threads', o.threads, 8, 1, 256),
    workMs: integer('workMs', o.workMs, 0, 0, 600_000),
    workMode: o.workMode ?? 'sleep',
    exportMs: integer('exportMs', o.exportMs, 1000, 0, 3_600_000),
    exportBytes: integer('exportBytes', o.exportBytes, 65_536, 0, Number.MAX_SAFE_INTEGER),
    users,
    connectionLimit:
      o.connectionLimit === undefined ? undefined : integer('connectionLimit', o.connectionLimit, 0, 1, 1000),
    debugEndpoints: bool('debugEndpoints', o.debugEndpoints, true),
    logoutDeletesToken: bool('logoutDeletesToken', o.logoutDeletesToken, true),
    sessionCookieName: text('sessionCookieName', o.sessionCookieName, /^[\w.-]{1,64}$/) ?? 'sessionid',
    applicationName: text('applicationName', o.applicationName, /^[\x20-\x7e]{1,63}$/),
    leakEvery: integer('leakEvery', o.leakEvery, 0, 0, 1_000_000),
    cvatNumProxies: integer('cvatNumProxies', o.cvatNumProxies, 0, 0, 100),
    databaseHost: text('databaseHost', o.databaseHost, /^[\w.:-]{1,255}$/),
    databasePort:
      o.databasePort === undefined ? undefined : integer('databasePort', o.databasePort, 0, 1, 65_535),
    label: text('label', o.label, /^[a-z0-9_]{1,20}$/) ?? 'django',
    startTimeoutMs: integer('startTimeoutMs', o.startTimeoutMs, 30_000, 1, 600_000),
    env,
  };
}

// ---------------------------------------------------------------------------------------------
// Starting and driving the server.

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

async function seedUsers(
  dbName: string,
  role: string | undefined,
  specs: readonly DjangoUserSpec[],
): Promise<DjangoUser[]> {
  const hashes = await Promise.all(specs.map((s) => cachedPasswordHash(s.password)));
  const client = new pg.Client({ connectionString: pgUrl(dbName), application_name: 'sluice-test-admin' });
  await client.connect();
  try {
    if (role) {
      // The tables belong to the superuser that migrated the template; Django runs as `role`.
      await client.query(
        `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${ident(role)};
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${ident(role)}`,
      );
    }
    const users: DjangoUser[] = [];
    for (const [i, spec] of specs.entries()) {
      const passwordHash = hashes[i] ?? '';
      const flags = {
        isStaff: spec.isStaff ?? false,
        isSuperuser: spec.isSuperuser ?? false,
        isActive: spec.isActive ?? true,
      };
      const { rows } = await client.query<{ id: number }>(
        `INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                                is_active, date_joined)
         VALUES ($1, $2, $3, '', '', $4, $5, $6, now()) RETURNING id`,
        [passwordHash, flags.isSuperuser, spec.username, spec.email ?? '', flags.isStaff, flags.isActive],
      );
      const id = rows[0]?.id ?? 0;
      const token = randomBytes(20).toString('hex'); // DRF's Token.generate_key()
      await client.query('INSERT INTO authtoken_token (key, created, user_id) VALUES ($1, now(), $2)', [
        token,
        id,
      ]);
      users.push({
        id,
        username: spec.username,
        password: spec.password,
        passwordHash,
        email: spec.email ?? '',
        ...flags,
        token,
      });
    }
    return users;
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface Server {
  child: ChildProcess;
  port: number;
  logs(): string;
}

function spawnServer(env: NodeJS.ProcessEnv, threads: number, timeoutMs: number): Promise<Server> {
  const child = spawn(
    djangoPython,
    [
      '-m',
      'gunicorn',
      '--config',
      'fixture/gunicorn_conf.py',
      '--bind',
      '127.0.0.1:0', // the kernel picks a free port: no race with other suites
      '--workers',
      '1',
      '--worker-class',
      'gthread',
      '--threads',
      String(threads),
      'fixture.wsgi:application',
    ],
    { cwd: djangoProjectDir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  track(child);
  let tail = '';
  const logs = (): string => tail;
  const onData = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-LOG_TAIL_BYTES);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);

  return new Promise((resolve, reject) => {
    const fail = (message: string, cause?: unknown): void => {
      cleanup();
      killGroup(child, 'SIGKILL');
      reject(new DjangoFixtureError('E_DJANGO_START', message, { logs: tail, cause }));
    };
    const onExit = (code: number | null, signal: string | null): void =>
      fail(`gunicorn exited during startup (code ${code}, signal ${signal})`);
    const onError = (err: Error): void => fail(`cannot spawn ${djangoPython}: ${err.message}`, err);
    const timer = setTimeout(() => fail(`gunicorn did not listen within ${timeoutMs} ms`), timeoutMs);
    const onListen = (): void => {
      const port = Number(/Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(tail)?.[1]);
      if (!port) return;
      cleanup();
      resolve({ child, port, logs });
    };
    function cleanup(): void {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('error', onError);
      child.stderr?.off('data', onListen);
    }
    child.once('exit', onExit);
    child.once('error', onError);
    child.stderr?.on('data', onListen);
  });
}

function setRef({ child }: Server, ref: boolean): void {
  for (const handle of [child, child.stdout, child.stderr] as ({
    ref?: () => void;
    unref?: () => void;
  } | null)[]) {
    if (ref) handle?.ref?.();
    else handle?.unref?.();
  }
}

async function waitUntilServing(server: Server, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new DjangoFixtureError('E_DJANGO_START', 'gunicorn exited during startup', {
        logs: server.logs(),
      });
    }
    try {
      const res = await fetch(`${url}/api/server/about`, {
        signal: AbortSignal.timeout(Math.min(PROBE_TIMEOUT_MS, Math.max(1, deadline - Date.now()))),
      });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = new Error(`/api/server/about answered ${res.status}`);
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new DjangoFixtureError(
    'E_DJANGO_START',
    `Django did not answer /api/server/about within ${timeoutMs} ms`,
    {
      logs: server.logs(),
      cause: last,
    },
  );
}

function cookieValue(setCookies: readonly string[], name: string): string | undefined {
  for (const line of setCookies) {
    const [pair] = line.split(';');
    const eq = pair?.indexOf('=') ?? -1;
    if (pair && eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

interface UserJson {
  id: number;
  username: string;
  email: string;
  is_staff: boolean;
  is_superuser: boolean;
  is_active: boolean;
  password_hash: string;
  token: string | null;
}

/**
 * Starts the real Django upstream (test/django) under gunicorn on a free port, against a fresh
 * copy of the migrated template database, with `users` seeded; resolves once
 * `/api/server/about` answers.
 *
 * @throws {TypeError | RangeError} for a bad option, naming it
 * @throws {DjangoFixtureError} `E_DJANGO_TEMPLATE` or `E_DJANGO_START`, with the server's stderr tail
 * @example
 * ```ts
 * await using django = await startDjango({ workMs: 200 });
 * const { sessionId } = await django.login('user');
 * await fetch(`${django.url}/api/users/self`, { headers: { cookie: `sessionid=${sessionId}` } });
 * ```
 */
export async function startDjango(options: StartDjangoOptions = {}): Promise<DjangoFixture> {
  const o = resolveOptions(options);
  for (const spec of o.users) void cachedPasswordHash(spec.password).catch(() => undefined);
  staleSweep ??= dropStaleDjangoFixtures().catch(() => undefined);
  await staleSweep;

  const dbName = `sluice_${o.label}_${uniqueSuffix()}`;
  const role = o.connectionLimit === undefined ? undefined : `sluice_django_${uniqueSuffix()}`;
  let server: Server | undefined;
  let dbCreated = false;
  let roleCreated = false;
  let uploadDir: string | undefined;

  const teardown = async (): Promise<void> => {
    if (server) {
      const { child } = server;
      if (child.exitCode === null && child.signalCode === null) {
        setRef(server, true);
        const exited = new Promise((r) => child.once('exit', r));
        killGroup(child, 'SIGKILL');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000).unref())]);
      }
    }
    if (uploadDir) await rm(uploadDir, { recursive: true, force: true });
    if (dbCreated) await adminQuery(`DROP DATABASE IF EXISTS ${ident(dbName)} WITH (FORCE)`);
    if (roleCreated && role) await adminQuery(`DROP ROLE IF EXISTS ${ident(role)}`);
  };

  let users: DjangoUser[];
  let running: Server;
  try {
    if (role && o.connectionLimit !== undefined) {
      await adminQuery(`CREATE ROLE ${ident(role)} LOGIN CONNECTION LIMIT ${o.connectionLimit}`);
      roleCreated = true;
    }
    await cloneTemplate(dbName, role);
    dbCreated = true;
    await adminQuery(`COMMENT ON DATABASE ${ident(dbName)} IS ${literal(FIXTURE_COMMENT)}`);
    uploadDir = await mkdtemp(join(tmpdir(), `${UPLOAD_DIR_PREFIX}${process.pid}-`));

    const env: NodeJS.ProcessEnv = {
      ...baseEnv(),
      ...dbEnv(dbName, role ?? pgUser),
      SLUICE_FIXTURE_SECRET_KEY: o.secretKey,
      SLUICE_FIXTURE_CONN_MAX_AGE: o.connMaxAge === null ? 'none' : String(o.connMaxAge),
      SLUICE_FIXTURE_WORK_MS: String(o.workMs),
      SLUICE_FIXTURE_WORK_MODE: o.workMode,
      SLUICE_FIXTURE_EXPORT_MS: String(o.exportMs),
      SLUICE_FIXTURE_EXPORT_BYTES: String(o.exportBytes),
      SLUICE_FIXTURE_DEBUG_ENDPOINTS: o.debugEndpoints ? '1' : '0',
      SLUICE_FIXTURE_LOGOUT_DELETES_TOKEN: o.logoutDeletesToken ? '1' : '0',
      SLUICE_FIXTURE_SESSION_COOKIE_NAME: o.sessionCookieName,
      SLUICE_FIXTURE_PARENT_PID: String(process.pid),
      SLUICE_FIXTURE_LEAK_EVERY: String(o.leakEvery),
      SLUICE_FIXTURE_CVAT_NUM_PROXIES: String(o.cvatNumProxies),
      SLUICE_FIXTURE_UPLOAD_DIR: uploadDir,
      ...(o.databaseHost ? { SLUICE_FIXTURE_DB_HOST: o.databaseHost } : {}),
      ...(o.databasePort ? { SLUICE_FIXTURE_DB_PORT: String(o.databasePort) } : {}),
      ...(o.applicationName ? { SLUICE_FIXTURE_DB_APPLICATION_NAME: o.applicationName } : {}),
      ...o.env,
    };
    const started = (async () => {
      const deadline = Date.now() + o.startTimeoutMs;
      const spawned = await spawnServer(env, o.threads, o.startTimeoutMs);
      server = spawned;
      await waitUntilServing(spawned, `http://127.0.0.1:${spawned.port}`, Math.max(1, deadline - Date.now()));
      return spawned;
    })();
    // Seeding runs while Python boots; gunicorn touches no table before its first request.
    [users, running] = await Promise.all([seedUsers(dbName, role, o.users), started]);
    // Once it runs, a forgotten fixture must not keep the process alive (the exit hook and the
    // server's watchdog still end it); stop() refs it again while it waits for the exit.
    setRef(running, false);
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }

  const url = `http://127.0.0.1:${running.port}`;
  let stopping: Promise<void> | undefined;

  const refuseWhenStopped = (): void => {
    if (stopping) throw new DjangoFixtureError('E_DJANGO_STOPPED', `the fixture at ${url} is stopped`);
  };
  const call = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    refuseWhenStopped();
    const res = await fetch(`${url}${path}`, { ...init, signal: AbortSignal.timeout(30_000) });
    const body = await res.text();
    if (!res.ok)
      throw requestError(`${init.method ?? 'GET'} ${path} answered ${res.status}: ${body}`, res.status);
    return JSON.parse(body) as T;
  };
  const needDebug = (what: string): void => {
    if (!o.debugEndpoints) {
      throw new DjangoFixtureError('E_DJANGO_DEBUG_DISABLED', `${what} needs the fixture's debugEndpoints`);
    }
  };
  const json = (body: unknown): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const replaceUser = (user: DjangoUser): DjangoUser => {
    const i = users.findIndex((u) => u.username === user.username);
    if (i >= 0) users[i] = user;
    else users.push(user);
    return user;
  };
  const user = (username: string): DjangoUser => {
    const found = users.find((u) => u.username === username);
    if (!found) throw new TypeError(`the fixture has no user ${JSON.stringify(username)}`);
    return found;
  };

  const stop = (): Promise<void> => {
    stopping ??= teardown();
    return stopping;
  };

  return {
    url,
    port: running.port,
    pid: running.child.pid ?? 0,
    database: { name: dbName, url: pgUrl(dbName), user: role ?? pgUser },
    secretKey: o.secretKey,
    sessionCookieName: o.sessionCookieName,
    get users(): readonly DjangoUser[] {
      return [...users];
    },
    user,
    async login(username, password) {
      refuseWhenStopped();
      const pw = password ?? user(username).password;
      const res = await fetch(`${url}/api/auth/login`, {
        ...json({ username, password: pw }),
        signal: AbortSignal.timeout(30_000),
      });
      const body = await res.text();
      if (res.status !== 200)
        throw requestError(`login of ${username} answered ${res.status}: ${body}`, res.status);
      const setCookies = res.headers.getSetCookie();
      const sessionId = cookieValue(setCookies, o.sessionCookieName);
      const csrfToken = cookieValue(setCookies, 'csrftoken');
      if (!sessionId || !csrfToken)
        throw requestError(`login of ${username} set no session or CSRF cookie`, 200);
      const { key } = JSON.parse(body) as { key: string };
      const cookie = `${o.sessionCookieName}=${sessionId}; csrftoken=${csrfToken}`;
      return { sessionId, csrfToken, token: key, cookie, headers: { cookie, 'x-csrftoken': csrfToken } };
    },
    async createUser(spec) {
      needDebug('createUser');
      validateUser(spec, 'createUser: spec');
      const body: Record<string, unknown> = {
        username: spec.username,
        password: spec.password,
        email: spec.email ?? '',
      };
      if (spec.isStaff !== undefined) body.is_staff = spec.isStaff;
      if (spec.isSuperuser !== undefined) body.is_superuser = spec.isSuperuser;
      if (spec.isActive !== undefined) body.is_active = spec.isActive;
      const u = await call<UserJson>('/api/_fixture/users', json(body));
      return replaceUser(toUser(u, spec.password));
    },
    async setPassword(username, password) {
      needDebug('setPassword');
      if (typeof password !== 'string' || password === '') {
        throw new TypeError('setPassword: password must be a non-empty string');
      }
      const u = await call<UserJson>(
        `/api/_fixture/users/${encodeURIComponent(username)}/password`,
        json({ password }),
      );
      return replaceUser(toUser(u, password));
    },
    async concurrency() {
      needDebug('concurrency');
      return call<DjangoConcurrency>('/api/_fixture/concurrency');
    },
    async resetConcurrency() {
      needDebug('resetConcurrency');
      return call<DjangoConcurrency>('/api/_fixture/concurrency/reset', { method: 'POST' });
    },
    async leaks() {
      needDebug('leaks');
      return call<DjangoLeaks>('/api/_fixture/leaks');
    },
    async closeLeaks() {
      needDebug('closeLeaks');
      return (await call<{ closed: number }>('/api/_fixture/leaks/close', { method: 'POST' })).closed;
    },
    async createAccessToken(username, options = {}) {
      needDebug('createAccessToken');
      const body: Record<string, unknown> = { read_only: options.readOnly ?? true };
      if (options.name !== undefined) body.name = options.name;
      if (options.expiryDate !== undefined) body.expiry_date = options.expiryDate.toISOString();
      const t = await call<{ id: number; value: string; read_only: boolean; expiry_date: string | null }>(
        `/api/_fixture/users/${encodeURIComponent(username)}/access_tokens`,
        json(body),
      );
      return { id: t.id, value: t.value, readOnly: t.read_only, expiryDate: t.expiry_date };
    },
    async revokeAccessToken(id) {
      needDebug('revokeAccessToken');
      await call(`/api/_fixture/access_tokens/${id}/revoke`, { method: 'POST' });
    },
    uploadDir,
    logs: () => running.logs(),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

function requestError(message: string, status: number): DjangoFixtureError {
  return new DjangoFixtureError('E_DJANGO_REQUEST', message, { status });
}

function toUser(u: UserJson, password: string): DjangoUser {
  return {
    id: u.id,
    username: u.username,
    password,
    passwordHash: u.password_hash,
    email: u.email,
    isStaff: u.is_staff,
    isSuperuser: u.is_superuser,
    isActive: u.is_active,
    token: u.token ?? '',
  };
}
