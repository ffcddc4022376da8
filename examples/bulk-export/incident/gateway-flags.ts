// The gateway's command line as the benchmark uses it. Its flags change as the gateway grows:
// this table is the one place to follow them (`pnpm start -- --help` lists the current ones).
// `--listen` is added by startGateway (demo/gateway-process.ts), on a free port. Everything else
// is the gateway's default: it sizes itself from the database it is given.

/** Flag names, by what they set. */
export const GATEWAY_FLAGS = {
  /** The Django/CVAT origin. */
  upstream: '--upstream',
  /** The upstream's database, as Django reaches it (PostgreSQL, or PgBouncer in front of it). */
  databaseUrl: '--database-url',
  /** Django's SECRET_KEY (verifies session signatures). */
  secretKey: '--secret-key',
  /** `application_name` of the upstream's connections (budget accounting, reaper). */
  upstreamApplicationName: '--upstream-application-name',
  /** PgBouncer's admin console, when the database URL does not go through PgBouncer but Django does. */
  pgbouncerAdminUrl: '--pgbouncer-admin-url',
  /** Maximum concurrent upstream requests (only when the benchmark is told `--budget`). */
  dbBudget: '--db-budget',
  /** Where `/sluice/status.json` answers (the benchmark records the admission figures). */
  adminListen: '--admin-listen',
  logLevel: '--log-level',
} as const;

/** What the benchmark tells the gateway. */
export interface GatewaySetting {
  upstream: string;
  databaseUrl: string;
  secretKey: string;
  upstreamApplicationName: string;
  /** `host:port` of the admin listener. */
  adminListen: string;
  /** Omitted: the gateway's own sizing. */
  dbBudget?: number | undefined;
  /** Omitted: detected from the database URL. */
  pgbouncerAdminUrl?: string | undefined;
}

/**
 * The arguments for `sluice-gateway` (all but `--listen`), each as `--flag=value`: a value that
 * starts with `-` (a random secret key may) is then never taken for a flag.
 */
export function gatewayArgs(s: GatewaySetting): string[] {
  const flags: [string, string | number | undefined][] = [
    [GATEWAY_FLAGS.upstream, s.upstream],
    [GATEWAY_FLAGS.databaseUrl, s.databaseUrl],
    [GATEWAY_FLAGS.secretKey, s.secretKey],
    [GATEWAY_FLAGS.upstreamApplicationName, s.upstreamApplicationName],
    [GATEWAY_FLAGS.dbBudget, s.dbBudget],
    [GATEWAY_FLAGS.pgbouncerAdminUrl, s.pgbouncerAdminUrl],
    [GATEWAY_FLAGS.adminListen, s.adminListen],
    [GATEWAY_FLAGS.logLevel, 'warn'],
  ];
  return flags.flatMap(([flag, value]) => (value === undefined ? [] : [`${flag}=${value}`]));
}
