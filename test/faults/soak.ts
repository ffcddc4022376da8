// The soak run (not in CI): a gateway process under steady mixed load for a long time, with
// its RSS, heap and event-loop delay sampled; writes an SVG plot and the samples to
// .artifacts/ and says whether memory grew.
//
//   node --conditions=source --import tsx test/faults/soak.ts [--duration 30m] [--rate 150]
//
// Environment: SLUICE_SOAK_DURATION (e.g. 30m, 90s), SLUICE_SOAK_RATE (requests per second).
// It owns everything it uses: a PostgreSQL cluster, a Redis, the Django fixture and the gateway.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type LoadReport,
  type LoadRequest,
  runLoad,
  startOwnPostgres,
  startOwnRedis,
} from '../support/src/index.ts';
import { startDjangoOnOwnPostgres } from './lib/django-own-postgres.ts';
import { spawnGateway } from './lib/gateway-process.ts';
import { artifactsDir } from './lib/report.ts';
import { renderChart, trend } from './lib/svg-plot.ts';

function parseDuration(raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) throw new RangeError(`duration should look like 30m, 90s or 1h, got ${JSON.stringify(raw)}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.SLUICE_SOAK_DURATION ?? '30m' },
    rate: { type: 'string', default: process.env.SLUICE_SOAK_RATE ?? '150' },
    sample: { type: 'string', default: '5s' },
  },
});
const durationMs = parseDuration(values.duration);
const rate = Number(values.rate);
const sampleMs = parseDuration(values.sample);
if (durationMs < 10_000) throw new RangeError(`--duration should be at least 10s, got ${values.duration}`);
if (!(rate > 0 && rate <= 5000)) throw new RangeError(`--rate should be in (0, 5000], got ${values.rate}`);

const log = (msg: string): void => console.log(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}`);

log(`starting: ${values.duration} at ${rate} req/s`);
const pg = await startOwnPostgres({ maxConnections: 60 });
const redis = await startOwnRedis();
const { django, databaseUrl } = await startDjangoOnOwnPostgres(pg, { threads: 8 });
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

const samples = gateway.samples.filter((s) => s.at >= started);
const exit = gateway.exit;
await gateway.close();
await django.stop();
await redis.stop();
await pg.stop();

const t = (at: number): number => (at - started) / 1000;
const rss = samples.map((s) => [t(s.at), s.rss / 2 ** 20] as const);
const heap = samples.map((s) => [t(s.at), s.heapUsed / 2 ** 20] as const);
const eld = samples.map((s) => [t(s.at), s.eldP99Ms] as const);
// The first quarter is warm-up (JIT, caches filling); the trend is judged on the rest. Heap used
// is a sawtooth (garbage piles up between collections), so its trend is taken on the floor: the
// lowest sample of each minute, close to what survives a collection.
const warmUpS = durationMs / 4000;
const settledRss = rss.filter(([x]) => x >= warmUpS);
const floors = new Map<number, number>();
for (const [x, v] of heap) {
  if (x < warmUpS) continue;
  const minute = Math.floor(x / 60);
  floors.set(minute, Math.min(v, floors.get(minute) ?? v));
}
const heapFloor = [...floors].map(([minute, v]) => [minute * 60 + 30, v] as const);
const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const settledS = durationMs / 1000 - warmUpS;
/** Growth the trend line predicts over the settled part, as a share of the settled median. */
const growth = (points: readonly (readonly [number, number])[]) => {
  const { slope } = trend(points);
  const level = median(points.map(([, v]) => v));
  return { perMin: slope * 60, share: level > 0 ? (slope * settledS) / level : 0, level };
};
const rssGrowth = growth(settledRss);
const heapGrowth = growth(heapFloor);
/** A trend that would add more than this share of the level over the settled part is growth. */
const GROWTH_LIMIT = 0.1;
const grew = exit !== undefined || rssGrowth.share > GROWTH_LIMIT || heapGrowth.share > GROWTH_LIMIT;

const pct = (share: number): string => `${share >= 0 ? '+' : ''}${(share * 100).toFixed(1)}%`;

mkdirSync(artifactsDir, { recursive: true });
const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
const svgPath = join(artifactsDir, `soak-${stamp}.svg`);
writeFileSync(
  svgPath,
  renderChart(
    `Sluice gateway soak: ${values.duration} at ${rate} req/s (${totals.sent.toLocaleString('en-US')} requests)`,
    [
      {
        title: 'Gateway memory',
        unit: 'MB',
        series: [
          { name: 'RSS', points: rss, color: '#1f77b4' },
          { name: 'heap used', points: heap, color: '#2ca02c' },
          { name: 'heap floor (per-minute minimum)', points: heapFloor, color: '#ff7f0e' },
        ],
      },
      {
        title: 'Event-loop delay p99',
        unit: 'ms',
        series: [{ name: 'p99 per sample', points: eld, color: '#d62728' }],
      },
    ],
  ),
);
writeFileSync(
  join(artifactsDir, `soak-${stamp}.json`),
  JSON.stringify({ durationMs, rate, totals, exit, rssGrowth, heapGrowth, samples }, null, 1),
);

console.log(`
| soak | value |
| --- | --- |
| duration | ${(durationMs / 60_000).toFixed(1)} min at ${rate} req/s |
| requests | ${totals.sent.toLocaleString('en-US')} (2xx ${totals.ok}, 401 ${totals.unauthorized}, 503 ${totals.shed}, other ${totals.other}, no answer ${totals.errors}, lost ${totals.lost}) |
| RSS | ${rss[0]?.[1].toFixed(1)} MB at start, median ${rssGrowth.level.toFixed(1)} MB after warm-up |
| RSS trend after warm-up | ${rssGrowth.perMin.toFixed(3)} MB/min (${pct(rssGrowth.share)} of the median over ${(settledS / 60).toFixed(1)} min) |
| heap floor after warm-up | median ${heapGrowth.level.toFixed(1)} MB, trend ${heapGrowth.perMin.toFixed(3)} MB/min (${pct(heapGrowth.share)}) |
| event-loop delay p99 | median ${median(eld.map(([, v]) => v)).toFixed(1)} ms, worst ${Math.max(0, ...eld.map(([, v]) => v)).toFixed(1)} ms |
| gateway exit | ${exit ? `${exit.code ?? exit.signal} (it died)` : 'none (closed at the end)'} |
| verdict | ${grew ? 'GROWTH TREND' : 'no growth trend'} (growth: a trend adding over ${(GROWTH_LIMIT * 100).toFixed(0)}% of the level) |
| plot | ${svgPath} |
`);
process.exit(grew || totals.lost > 0 ? 1 : 0);
