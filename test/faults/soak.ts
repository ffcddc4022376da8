// The soak run (not in CI): a gateway process under steady mixed load for a long time, with
// its RSS, heap and event-loop delay sampled; writes an SVG plot and the samples to
// .artifacts/ and says whether memory grew.
//
//   pnpm soak [--duration 30m] [--rate 150] [--sample 5s]
//   pnpm soak --report .artifacts/faults/soak-<start>.json   (re-reads a saved run)
//
// Environment: SLUICE_SOAK_DURATION (e.g. 30m, 90s), SLUICE_SOAK_RATE (requests per second).
// It owns everything it uses: a PostgreSQL cluster, a Redis, the Django fixture and the gateway.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../../packages/gateway/src/duration.ts';
import {
  type LoadReport,
  type LoadRequest,
  runLoad,
  startDjangoOnOwnPostgres,
  startOwnPostgres,
  startOwnRedis,
} from '../support/src/index.ts';
import { spawnGateway } from './lib/gateway-process.ts';
import { reportSoak, type SoakRun } from './lib/soak-report.ts';

/** A duration flag in ms (`30m`, `90s`, `5000`); a RangeError names the flag otherwise. */
function durationOf(flag: string, raw: string): number {
  const ms = parseDuration(raw);
  if (ms === undefined)
    throw new RangeError(`--${flag} should look like 30m, 90s or 1h, got ${JSON.stringify(raw)}`);
  return ms;
}

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.SLUICE_SOAK_DURATION ?? '30m' },
    rate: { type: 'string', default: process.env.SLUICE_SOAK_RATE ?? '150' },
    sample: { type: 'string', default: '5s' },
    report: { type: 'string' },
  },
});
if (values.report !== undefined) {
  // Re-read a saved run: the table, the verdict and the plot again, no load.
  const saved = JSON.parse(readFileSync(values.report, 'utf8')) as Partial<SoakRun> &
    Omit<SoakRun, 'started'>;
  // runs saved before `started` was recorded begin with their first sample
  const verdict = reportSoak({ ...saved, started: saved.started ?? saved.samples[0]?.at ?? 0 }, false);
  console.log(verdict.text);
  process.exit(verdict.grew || saved.totals.lost > 0 ? 1 : 0);
}
const durationMs = durationOf('duration', values.duration);
const rate = Number(values.rate);
const sampleMs = durationOf('sample', values.sample);
if (durationMs < 10_000) throw new RangeError(`--duration should be at least 10s, got ${values.duration}`);
if (!(rate > 0 && rate <= 5000)) throw new RangeError(`--rate should be in (0, 5000], got ${values.rate}`);
if (sampleMs < 100 || sampleMs > 60_000) {
  throw new RangeError(`--sample should be 100ms to 1m, got ${values.sample}`);
}

const log = (msg: string): void => console.log(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}`);

// Everything the soak starts is stopped however it ends: a failed start must not leave a
// PostgreSQL, a Redis or a Django behind.
const owned: (() => Promise<unknown>)[] = [];
const stopOwned = async (): Promise<void> => {
  for (let stop = owned.pop(); stop; stop = owned.pop()) await stop().catch(() => undefined);
};
process.once('SIGINT', () => void stopOwned().finally(() => process.exit(130)));

async function soak(): Promise<SoakRun> {
  log(`starting: ${values.duration} at ${rate} req/s`);
  const pg = await startOwnPostgres({ maxConnections: 60 });
  owned.push(() => pg.stop());
  const redis = await startOwnRedis();
  owned.push(() => redis.stop());
  const { django, databaseUrl } = await startDjangoOnOwnPostgres(pg, { threads: 8 });
  owned.push(() => django.stop());
  const users = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      django.createUser({ username: `soak${i}`, password: `soak-password-${i}` }),
    ),
  );
  const sessions = await Promise.all(users.slice(0, 3).map((u) => django.login(u.username)));
  const gateway = await spawnGateway({
    gateway: {
      upstream: django.url,
      databaseUrl,
      redisUrl: redis.url,
      dbBudget: 12,
      secretKey: django.secretKey,
      logLevel: 'warn',
    },
    sampleMs,
    // the suite's access-log ring would live in the gateway's heap and grow with the run
    accessLogMax: 0,
  });
  owned.push(() => gateway.close());
  log(`gateway pid ${gateway.pid} on ${gateway.url}, upstream ${django.url}`);

  const request = (i: number): LoadRequest => {
    const r = i % 20;
    if (r < 12) {
      const u = users[i % users.length];
      return { path: '/api/users/self', headers: { authorization: `Token ${u?.token}` } };
    }
    if (r < 16) {
      const s = sessions[i % sessions.length];
      return { path: '/api/users/self', headers: { cookie: s?.cookie ?? '' } };
    }
    if (r < 18) return { path: '/api/users/self', headers: { cookie: `sessionid=bad!${i}` } };
    return { path: '/api/server/about' };
  };

  const totals = { sent: 0, ok: 0, unauthorized: 0, shed: 0, other: 0, errors: 0, lost: 0 };
  const add = (r: LoadReport): void => {
    totals.sent += r.sent;
    totals.ok += r.ok;
    totals.unauthorized += r.unauthorized;
    totals.shed += r.shed;
    totals.other += r.other;
    totals.errors += r.errors;
    totals.lost += r.lost;
  };
  const started = Date.now();
  let index = 0;
  while (Date.now() - started < durationMs && !gateway.exit) {
    const chunkMs = Math.min(60_000, durationMs - (Date.now() - started));
    if (chunkMs < 1000) break;
    const base = index;
    const report = await runLoad({
      target: gateway.url,
      concurrency: 32,
      maxRequests: Math.ceil((rate * chunkMs) / 1000) + 1,
      durationMs: chunkMs,
      ratePerSecond: rate,
      request: (i) => request(base + i),
    });
    index += report.sent;
    add(report);
    const last = gateway.samples.at(-1);
    log(
      `${Math.round((Date.now() - started) / 1000)} s: ${report.sent} req (${report.ratePerSecond}/s), ok ${report.ok}, 401 ${report.unauthorized}, 503 ${report.shed}, other ${report.other}, no answer ${report.errors}; rss ${((last?.rss ?? 0) / 2 ** 20).toFixed(1)} MB, loop p99 ${last?.eldP99Ms.toFixed(1)} ms`,
    );
  }

  const run: SoakRun = {
    started,
    durationMs,
    rate,
    totals,
    exit: gateway.exit,
    samples: gateway.samples.filter((s) => s.at >= started),
  };
  return run;
}

let run: SoakRun;
try {
  run = await soak();
} finally {
  await stopOwned();
}

const verdict = reportSoak(run);
console.log(verdict.text);
process.exit(verdict.grew || run.totals.lost > 0 ? 1 : 0);
