// What the incident benchmark runs: the setups side by side, the variants of the load, and the
// numbers of the scenario (full and --quick), all in one place.

/** Where the load goes. */
export type SetupName = 'direct' | 'pgbouncer' | 'gateway' | 'gateway+pgbouncer' | 'gateway+pgbouncer-db';

/** How the Django fixture misbehaves. */
export type VariantName = 'base' | 'leak' | 'heavy';

/** A setup: what runs between the clients and PostgreSQL. */
export interface Setup {
  /** Django's DATABASE points at a private PgBouncer. */
  pgbouncer: boolean;
  /** The clients go through sluice-gateway. */
  gateway: boolean;
  /** The gateway's own `--database-url` is PgBouncer too (else PostgreSQL). */
  gatewayDbOnPgBouncer: boolean;
  describe: string;
}

/**
 * The setups, in the order they run and are printed. The first four run by default;
 * `gateway+pgbouncer-db` runs when named.
 */
export const SETUPS: Readonly<Record<SetupName, Setup>> = {
  direct: {
    pgbouncer: false,
    gateway: false,
    gatewayDbOnPgBouncer: false,
    describe: 'Django straight on PostgreSQL',
  },
  pgbouncer: {
    pgbouncer: true,
    gateway: false,
    gatewayDbOnPgBouncer: false,
    describe: "PgBouncer alone: Django's DATABASE points at it (transaction mode)",
  },
  gateway: {
    pgbouncer: false,
    gateway: true,
    gatewayDbOnPgBouncer: false,
    describe: 'sluice-gateway in front of Django on PostgreSQL',
  },
  'gateway+pgbouncer': {
    pgbouncer: true,
    gateway: true,
    gatewayDbOnPgBouncer: false,
    describe:
      "sluice-gateway in front of PgBouncer-backed Django (the gateway's own database URL is PostgreSQL)",
  },
  'gateway+pgbouncer-db': {
    pgbouncer: true,
    gateway: true,
    gatewayDbOnPgBouncer: true,
    describe: "as gateway+pgbouncer, with the gateway's own database URL on PgBouncer too",
  },
};

/** The variants, in order. */
export const VARIANTS: Readonly<
  Record<VariantName, { describe: string; workMode: 'sleep' | 'pg_sleep'; leaks: boolean; heavy: boolean }>
> = {
  base: {
    describe: 'each request holds its connection idle for --work-ms (Python sleeps)',
    workMode: 'sleep',
    leaks: false,
    heavy: false,
  },
  leak: {
    describe: 'as base, and one download in --leak-every never closes its connection (the seed incident)',
    workMode: 'sleep',
    leaks: true,
    heavy: false,
  },
  heavy: {
    describe:
      'heavier database: each request works --heavy-work-ms inside PostgreSQL (pg_sleep: an active backend, a server connection held)',
    workMode: 'pg_sleep',
    leaks: false,
    heavy: true,
  },
};

/** The scenario's numbers. */
export interface IncidentSettings {
  setups: SetupName[];
  variants: VariantName[];
  /** Export tasks per run. */
  tasks: number;
  /** cvat_sdk-style workers (tasks in flight at once). */
  workers: number;
  /** Logins the workers are split over (one user each, a session as cvat_sdk 2.41+). */
  logins: number;
  /** gunicorn gthread threads. */
  threads: number;
  /** Database work per request, ms. */
  workMs: number;
  /** Heavy variant: database work per request, ms, inside PostgreSQL. */
  heavyWorkMs: number;
  /** How long an export takes before its request is finished, ms. */
  exportMs: number;
  /** Size of a download, bytes. */
  exportBytes: number;
  /** cvat_sdk's pause between polls of /api/requests/{id}, ms. */
  pollIntervalMs: number;
  /** Leak variant: one download in this many leaks its connection. */
  leakEvery: number;
  /** The role's CONNECTION LIMIT (what "too many clients" is for the fixture). */
  roleLimit: number;
  /** PgBouncer's pool (default_pool_size). */
  poolSize: number;
  /** The gateway's --db-budget. */
  budget: number;
  /** The interactive user's requests per second (one at a time). */
  interactiveRate: number;
  /** pg_stat_activity sampling interval, ms. */
  sampleMs: number;
  /** Each run stops by then, ms. */
  runDeadlineMs: number;
  /** One request's timeout, ms. */
  requestTimeoutMs: number;
}

/** The full scenario: issue-sized, a few minutes on a 2-core machine. */
export const FULL: Readonly<IncidentSettings> = Object.freeze({
  setups: ['direct', 'pgbouncer', 'gateway', 'gateway+pgbouncer'],
  variants: ['base', 'leak', 'heavy'],
  tasks: 300,
  workers: 200,
  logins: 10,
  threads: 160,
  workMs: 200,
  heavyWorkMs: 400,
  exportMs: 2000,
  exportBytes: 64 * 1024,
  pollIntervalMs: 1000,
  leakEvery: 8,
  roleLimit: 40,
  poolSize: 20,
  budget: 20,
  interactiveRate: 4,
  sampleMs: 100,
  runDeadlineMs: 40_000,
  requestTimeoutMs: 30_000,
} satisfies IncidentSettings);

/** `--quick`: the same shape, small, about a minute. */
export const QUICK: Readonly<IncidentSettings> = Object.freeze({
  ...FULL,
  variants: ['base', 'leak'],
  tasks: 30,
  workers: 20,
  logins: 3,
  threads: 40,
  workMs: 100,
  heavyWorkMs: 200,
  exportMs: 300,
  pollIntervalMs: 200,
  leakEvery: 2,
  roleLimit: 16,
  poolSize: 8,
  budget: 8,
  runDeadlineMs: 12_000,
  requestTimeoutMs: 10_000,
} satisfies IncidentSettings);

type Bounds = Partial<Record<keyof IncidentSettings, readonly [number, number]>>;
const BOUNDS: Bounds = {
  tasks: [1, 10_000],
  workers: [1, 2000],
  logins: [1, 100],
  threads: [1, 256],
  workMs: [0, 10_000],
  heavyWorkMs: [0, 10_000],
  exportMs: [0, 60_000],
  exportBytes: [0, 100 * 1024 * 1024],
  pollIntervalMs: [1, 60_000],
  leakEvery: [1, 100_000],
  roleLimit: [2, 60],
  poolSize: [1, 60],
  budget: [1, 1000],
  interactiveRate: [1, 100],
  sampleMs: [20, 5000],
  runDeadlineMs: [1000, 600_000],
  requestTimeoutMs: [100, 600_000],
};

/**
 * Checks a scenario: every number in its bounds, known setups and variants, and the role's
 * limit well under the shared server's `max_connections` (100, shared with everyone).
 * @throws {TypeError | RangeError} naming the setting
 */
export function checkSettings(s: IncidentSettings): IncidentSettings {
  for (const [key, [min, max]] of Object.entries(BOUNDS) as [keyof IncidentSettings, [number, number]][]) {
    const v = s[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`${key} should be an integer from ${min} to ${max}, got ${String(v)}`);
    }
  }
  for (const setup of s.setups) {
    if (!(setup in SETUPS))
      throw new TypeError(`setups should name ${Object.keys(SETUPS).join(', ')}, got ${setup}`);
  }
  for (const variant of s.variants) {
    if (!(variant in VARIANTS)) {
      throw new TypeError(`variants should name ${Object.keys(VARIANTS).join(', ')}, got ${variant}`);
    }
  }
  if (s.setups.length === 0 || s.variants.length === 0) {
    throw new RangeError('setups and variants should each name at least one');
  }
  if (s.poolSize >= s.roleLimit || s.budget >= s.roleLimit) {
    throw new RangeError(
      `poolSize (${s.poolSize}) and budget (${s.budget}) should be below roleLimit (${s.roleLimit})`,
    );
  }
  return s;
}
