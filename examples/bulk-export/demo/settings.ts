// The demo's settings, declared once: its flags, `--help`, the check of each value, the flags it
// gives the gateway, and the line that says when the direct run did not show the incident.
import { parseArgs } from 'node:util';

interface Flag {
  readonly key: keyof DemoSettings;
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly doc: string;
}

/** Every flag of `pnpm demo`, an integer each. */
export const DEMO_FLAGS: Readonly<Record<string, Flag>> = {
  tasks: { key: 'tasks', default: 300, min: 1, max: 5000, doc: 'export tasks to run' },
  concurrency: { key: 'concurrency', default: 300, min: 1, max: 2000, doc: 'tasks in flight at once' },
  'connection-limit': {
    key: 'connectionLimit',
    default: 20,
    min: 2,
    max: 90,
    doc: "CONNECTION LIMIT of Django's database role",
  },
  threads: {
    key: 'threads',
    default: 64,
    min: 1,
    max: 256,
    doc: 'gunicorn threads (requests Django runs at once)',
  },
  'work-ms': { key: 'workMs', default: 50, min: 0, max: 10_000, doc: 'ms each request holds its connection' },
  'export-ms': { key: 'exportMs', default: 2000, min: 0, max: 60_000, doc: 'ms until an export is finished' },
  'poll-interval': { key: 'pollIntervalMs', default: 500, min: 10, max: 10_000, doc: 'ms between polls' },
  budget: {
    key: 'budget',
    default: 14,
    min: 1,
    max: 1000,
    doc: "the gateway's --db-budget (below the limit)",
  },
  deadline: { key: 'deadlineMs', default: 75_000, min: 1000, max: 150_000, doc: 'ms each run may take' },
  'sample-ms': {
    key: 'sampleMs',
    default: 100,
    min: 20,
    max: 5000,
    doc: 'ms between pg_stat_activity samples',
  },
};

export interface DemoSettings {
  tasks: number;
  concurrency: number;
  connectionLimit: number;
  threads: number;
  workMs: number;
  exportMs: number;
  pollIntervalMs: number;
  budget: number;
  deadlineMs: number;
  sampleMs: number;
}

export type DemoArgs =
  | { readonly kind: 'run'; readonly settings: DemoSettings }
  | { readonly kind: 'help' }
  | { readonly kind: 'error'; readonly message: string };

export function demoUsage(): string {
  const width = Math.max(...Object.keys(DEMO_FLAGS).map((f) => f.length)) + 6;
  return [
    'usage: pnpm demo -- [flags]   (replays the incident straight at Django, then through sluice-gateway)',
    ...Object.entries(DEMO_FLAGS).map(
      ([flag, f]) => `  ${`--${flag} N`.padEnd(width)} ${f.doc} (${f.min}-${f.max}; default ${f.default})`,
    ),
  ].join('\n');
}

/**
 * Reads the demo's flags. Never throws: a bad flag or value is an `error` with one line to print.
 * One leading `--` is skipped (`pnpm demo -- --tasks 100` passes it on).
 */
export function parseDemoArgs(argv: readonly string[]): DemoArgs {
  const args = argv[0] === '--' ? argv.slice(1) : [...argv];
  const { tokens } = parseArgs({
    args,
    options: {
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries(Object.keys(DEMO_FLAGS).map((f) => [f, { type: 'string' as const }])),
    },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const settings = Object.fromEntries(
    Object.values(DEMO_FLAGS).map((f) => [f.key, f.default]),
  ) as unknown as DemoSettings;
  for (const token of tokens) {
    if (token.kind === 'positional')
      return { kind: 'error', message: `unexpected argument "${token.value}"` };
    if (token.kind !== 'option') continue;
    if (token.name === 'help' || token.name === 'h') return { kind: 'help' };
    const flag = DEMO_FLAGS[token.name];
    if (flag === undefined) return { kind: 'error', message: `unknown flag ${token.rawName}` };
    const raw = token.value;
    if (raw === undefined || (!token.inlineValue && raw.startsWith('--'))) {
      return { kind: 'error', message: `${token.rawName} needs a value` };
    }
    const v = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(v >= flag.min && v <= flag.max)) {
      return {
        kind: 'error',
        message: `${token.rawName} must be a whole number from ${flag.min} to ${flag.max}, got ${JSON.stringify(raw)}`,
      };
    }
    settings[flag.key] = v;
  }
  if (settings.budget >= settings.connectionLimit) {
    return {
      kind: 'error',
      message: `--budget (${settings.budget}) must be below --connection-limit (${settings.connectionLimit})`,
    };
  }
  return { kind: 'run', settings };
}

/**
 * The gateway's flags for the run through it (all but `--listen`), each as `--flag=value`, so a
 * value that starts with `-` (a random secret key may) is never read as a flag. No admin
 * listener: the demo does not read it, and the default (the port after `--listen`) may be taken.
 */
export function demoGatewayArgs(
  s: DemoSettings,
  upstream: { url: string; databaseUrl: string; secretKey: string },
): string[] {
  return [
    `--upstream=${upstream.url}`,
    `--database-url=${upstream.databaseUrl}`,
    `--secret-key=${upstream.secretKey}`,
    `--db-budget=${s.budget}`,
    `--queue-max=${Math.max(1000, s.concurrency * 2)}`,
    // Every simulated client shares one address here, as no real fleet of clients would.
    `--max-connections-per-client=${Math.max(256, s.concurrency + 16)}`,
    '--queue-timeout=60s',
    '--monitor-interval=1s',
    '--admin-listen=off',
    '--log-level=warn',
  ];
}

/**
 * One line when the direct run did not show the incident (no task failed and the role stayed
 * clear of its limit, under 90% of it): the demo then compares nothing, and says what to change.
 */
export function directRunVerdict(
  s: DemoSettings,
  direct: { failed: number; peak: number },
): string | undefined {
  if (direct.failed > 0 || direct.peak >= Math.ceil(s.connectionLimit * 0.9)) return undefined;
  const more =
    s.threads <= s.connectionLimit
      ? `raise --threads (now ${s.threads}, at most ${s.threads} connections at once) above the limit`
      : `raise --tasks / --concurrency (now ${s.tasks} / ${s.concurrency}) or --work-ms (now ${s.workMs})`;
  return (
    `The direct run did not reproduce the incident: no task failed and the role peaked at ${direct.peak} ` +
    `of its ${s.connectionLimit} connections; ${more}, or lower --connection-limit (keep it above --budget ${s.budget}).`
  );
}
