// The gateway's command line as the benchmark uses it. Its flags change as the gateway grows:
// this table is the one place to follow them (`pnpm start --help` lists the current ones).
// `--listen` is added by startGateway (demo/gateway-process.ts), on a free port.

/** Flag names, by what they set. */
export const GATEWAY_FLAGS = {
  /** The Django/CVAT origin. */
  upstream: '--upstream',
  /** The upstream's PostgreSQL (session validation, budget, monitor). */
  databaseUrl: '--database-url',
  /** Django's SECRET_KEY (verifies session signatures). */
  secretKey: '--secret-key',
  /** Maximum concurrent upstream requests. */
  dbBudget: '--db-budget',
  /** `application_name` of the upstream's connections (budget accounting, reaper). */
  upstreamApplicationName: '--upstream-application-name',
  logLevel: '--log-level',
} as const;

/** What the benchmark tells the gateway. */
export interface GatewaySetting {
  upstream: string;
  databaseUrl: string;
  secretKey: string;
  dbBudget: number;
  upstreamApplicationName: string;
}

/** The arguments for `sluice-gateway` (all but `--listen`). */
export function gatewayArgs(s: GatewaySetting): string[] {
  return [
    GATEWAY_FLAGS.upstream,
    s.upstream,
    GATEWAY_FLAGS.databaseUrl,
    s.databaseUrl,
    GATEWAY_FLAGS.secretKey,
    s.secretKey,
    GATEWAY_FLAGS.dbBudget,
    String(s.dbBudget),
    GATEWAY_FLAGS.upstreamApplicationName,
    s.upstreamApplicationName,
    GATEWAY_FLAGS.logLevel,
    'warn',
  ];
}
