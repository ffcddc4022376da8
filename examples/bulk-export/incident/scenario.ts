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

/** The setups, in the order they run and are printed; all of them run by default. */
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
      "sluice-gateway in front of PgBouncer-backed Django, its own database URL on PostgreSQL and PgBouncer's admin console given (--pgbouncer-admin-url)",
  },
  'gateway+pgbouncer-db': {
    pgbouncer: true,
    gateway: true,
    gatewayDbOnPgBouncer: true,
    describe:
      "sluice-gateway in front of PgBouncer-backed Django, its DATABASE_URL Django's (PgBouncer, detected as such)",
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
  /**
   * `max_connections` of the run's own PostgreSQL cluster (`initdb`, private port): "too many
   * clients" is the server's real limit, at this minus `superuser_reserved_connections` (3) for
   * Django's plain role, and the gateway sizes itself from it.
   */
  maxConnections: number;
  /** PgBouncer's pool (default_pool_size). */
  poolSize: number;
  /** The gateway's `--db-budget`; 0 (the default): none, the gateway sizes itself from the database. */
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
  setups: ['direct', 'pgbouncer', 'gateway', 'gateway+pgbouncer', 'gateway+pgbouncer-db'],
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
  maxConnections: 40,
  poolSize: 20,
  budget: 0,
  interactiveRate: 4,
  sampleMs: 100,
  runDeadlineMs: 40_000,
  requestTimeoutMs: 30_000,
} satisfies IncidentSettings);

/** `--quick`: the same shape, small, about a minute. */
export const QUICK: Readonly<IncidentSettings> = Object.freeze({
  ...FULL,
  variants: ['base', 'leak'],
  tasks: 40,
  workers: 30,
  logins: 3,
  threads: 40,
  workMs: 100,
  heavyWorkMs: 200,
  exportMs: 300,
  pollIntervalMs: 200,
  leakEvery: 2,
  maxConnections: 30,
  poolSize: 8,
  runDeadlineMs: 20_000,
  requestTimeoutMs: 15_000,
} satisfies IncidentSettings);

/** PostgreSQL's `superuser_reserved_connections` (its default; the cluster keeps it). */
export const SUPERUSER_RESERVED = 3;

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
  maxConnections: [20, 200],
  poolSize: [1, 200],
  budget: [0, 1000],
  interactiveRate: [1, 100],
  sampleMs: [20, 5000],
  runDeadlineMs: [1000, 600_000],
  requestTimeoutMs: [100, 600_000],
};

/**
 * Checks a scenario: every number in its bounds, known setups and variants, PgBouncer's pool and
 * the budget under what the cluster gives a plain role.
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
  const plain = s.maxConnections - SUPERUSER_RESERVED;
  if (s.poolSize >= plain || s.budget >= plain) {
    throw new RangeError(
      `poolSize (${s.poolSize}) and budget (${s.budget}) should be below maxConnections - ${SUPERUSER_RESERVED} (${plain})`,
    );
  }
  return s;
}
