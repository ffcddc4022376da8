// `pnpm bench incident [--quick] [flags]`: the seed's incident side by side in one run, on this
// machine: direct, PgBouncer alone, the gateway, the gateway in front of PgBouncer (its database
// URL on PostgreSQL, or on PgBouncer as Django's); a base, a leak and a heavier-database variant. Prints the tables, writes .artifacts/incident/
// connections.svg and report.json. Everything it starts (gunicorn, PgBouncer, the gateway,
// databases and roles) is gone when it ends, Ctrl-C included.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runIncidentBench } from './bench.js';
import { GATEWAY_FLAGS } from './gateway-flags.js';
import { connectionsSvg, describeSetups, formatTables } from './report.js';
import {
  checkSettings,
  FULL,
  type IncidentSettings,
  QUICK,
  type SetupName,
  SUPERUSER_RESERVED,
  type VariantName,
} from './scenario.js';

const NUMBERS = {
  tasks: 'tasks',
  workers: 'workers',
  logins: 'logins',
  threads: 'threads',
  'work-ms': 'workMs',
  'heavy-work-ms': 'heavyWorkMs',
  'export-ms': 'exportMs',
  'export-bytes': 'exportBytes',
  'poll-interval': 'pollIntervalMs',
  'leak-every': 'leakEvery',
  'max-connections': 'maxConnections',
  pool: 'poolSize',
  budget: 'budget',
  'interactive-rate': 'interactiveRate',
  'sample-ms': 'sampleMs',
  deadline: 'runDeadlineMs',
  timeout: 'requestTimeoutMs',
} as const satisfies Record<string, keyof IncidentSettings>;

const usage = `usage: pnpm bench incident [--quick]
  [--setups direct,pgbouncer,gateway,gateway+pgbouncer,gateway+pgbouncer-db (the default: all)]
  [--variants base,leak,heavy] [--${Object.keys(NUMBERS).join(' N] [--')} N] [--out DIR]
The full run takes a few minutes; --quick (smaller numbers, base and leak) about a minute.`;

function parse(argv: string[]): { settings: IncidentSettings; out: string } | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      setups: { type: 'string' },
      variants: { type: 'string' },
      out: { type: 'string' },
      ...Object.fromEntries(Object.keys(NUMBERS).map((k) => [k, { type: 'string' as const }])),
    },
  });
  if (values.help) return undefined;
  const base = values.quick ? QUICK : FULL;
  const settings: IncidentSettings = { ...base, setups: [...base.setups], variants: [...base.variants] };
  for (const [flag, key] of Object.entries(NUMBERS)) {
    const raw = (values as Record<string, unknown>)[flag];
    if (typeof raw !== 'string') continue;
    if (!/^\d+$/.test(raw))
      throw new TypeError(`--${flag} should be a whole number, got ${JSON.stringify(raw)}`);
    (settings as unknown as Record<string, number>)[key] = Number(raw);
  }
  if (values.setups) settings.setups = values.setups.split(',') as SetupName[];
  if (values.variants) settings.variants = values.variants.split(',') as VariantName[];
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  return { settings: checkSettings(settings), out: values.out ?? `${root}.artifacts/incident` };
}

const gatewayFlags = (s: IncidentSettings): string =>
  [
    GATEWAY_FLAGS.upstream,
    GATEWAY_FLAGS.databaseUrl,
    GATEWAY_FLAGS.secretKey,
    GATEWAY_FLAGS.upstreamApplicationName,
    ...(s.budget > 0 ? [`${GATEWAY_FLAGS.dbBudget} ${s.budget}`] : []),
  ].join(' ') +
  ` (and ${GATEWAY_FLAGS.pgbouncerAdminUrl} when its URL is PostgreSQL's but Django's is PgBouncer's)`;

async function main(): Promise<number> {
  const parsed = parse(process.argv.slice(2));
  if (!parsed) {
    console.log(usage);
    return 0;
  }
  const { settings: s, out } = parsed;
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) process.exit(130); // the exit hooks still kill the children
    console.error(`\n${signal}: stopping the current run and cleaning up (again to exit at once)`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  console.log('## The incident, side by side\n');
  console.log(describeSetups(s));
  console.log(
    `\nLoad: ${s.tasks} export tasks (export, poll every ${s.pollIntervalMs} ms, download ${s.exportBytes} B) by ` +
      `${s.workers} workers over ${s.logins} logins, and an interactive user polling /api/users/self and ` +
      `/api/tasks ${s.interactiveRate} times a second. Django: gunicorn gthread, ${s.threads} threads, ` +
      `CONN_MAX_AGE 0, ${s.workMs} ms of database work per request, application_name cvat:server, ` +
      `on a PostgreSQL cluster of its own per run (max_connections ${s.maxConnections}: "too many clients" past ` +
      `${s.maxConnections - SUPERUSER_RESERVED} for Django's plain role). Gateway flags: ${gatewayFlags(s)}, the rest its defaults. ` +
      `Each run is cut at ${s.runDeadlineMs / 1000} s.\n`,
  );
  const report = await runIncidentBench(s, {
    signal: stop.signal,
    log: (line) => console.error(line),
  });
  console.log(formatTables(report.summaries, s));
  mkdirSync(out, { recursive: true });
  writeFileSync(`${out}/connections.svg`, connectionsSvg(report.runs, s));
  writeFileSync(`${out}/report.json`, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${out}/connections.svg and ${out}/report.json`);
  console.log(`(${report.complete ? '' : 'stopped early; '}took ${(report.durationMs / 1000).toFixed(0)} s)`);
  const broken = report.summaries.filter((r) => r.error !== undefined || !r.accounted);
  for (const r of broken) {
    console.error(`${r.variant} / ${r.setup}: ${r.error ?? 'some requests are not accounted for'}`);
  }
  return !report.complete ? 130 : broken.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    console.error(usage);
    process.exitCode = 2;
  },
);
