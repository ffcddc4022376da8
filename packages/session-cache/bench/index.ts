// `pnpm bench session-cache`: the same Express app and the same load generator (autocannon, in its
// own process, bounded in time) side by side: the bare app; sessionCache() answering from L1;
// sessionCache() answering from L2 (Redis) with L1 off; and, for scale, Django's own session check
// (GET /api/users/self on the real fixture). Prints a markdown table.
import { spawn } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createPool } from '@sluice/pool';
import { adminQuery, deleteKeys, sharedRedisUrl, startDjango, uniquePrefix } from '@sluice/test-support';
import express from 'express';
import { djangoDatabaseValidator, type SessionCacheMiddleware, sessionCache } from '../src/index.ts';

const CONNECTIONS = 32;
const WARMUP_SECONDS = 1;
const SECONDS = Number(process.env.SLUICE_BENCH_SECONDS ?? 3);
const ROUNDS = 5;
const autocannonBin = fileURLToPath(new URL('../../../node_modules/.bin/autocannon', import.meta.url));

interface Measured {
  readonly rps: number;
  /** CPU time of this process (the app under test) per request, microseconds; NaN for Django. */
  cpuUs: number;
  readonly p50: number;
  readonly p99: number;
  readonly requests: number;
  readonly failed: number;
}

/** Runs autocannon against a loopback URL for `seconds` and reads its JSON result. */
function cannon(url: string, headers: Record<string, string>, seconds: number): Promise<Measured> {
  if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(url))
    throw new Error(`bench traffic stays on 127.0.0.1, got ${url}`);
  const args = ['-c', String(CONNECTIONS), '-d', String(seconds), '-j', '--timeout', '10'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}=${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn(autocannonBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    child.stderr.on('data', (c: Buffer) => {
      err = (err + c.toString('utf8')).slice(-2_000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const json = out.slice(out.indexOf('{'), out.lastIndexOf('}') + 1);
      if (code !== 0 || json === '') return reject(new Error(`autocannon exited ${code}: ${err}`));
      const r = JSON.parse(json) as {
        requests: { average: number; total: number };
        latency: { p50: number; p99: number };
        non2xx: number;
        errors: number;
        timeouts: number;
      };
      resolve({
        cpuUs: Number.NaN,
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        requests: r.requests.total,
        failed: r.non2xx + r.errors + r.timeouts,
      });
    });
  });
}

async function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  server.keepAliveTimeout = 60_000;
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function makeApp(mw?: SessionCacheMiddleware): express.Express {
  const app = express();
  app.disable('x-powered-by');
  if (mw) app.use(mw);
  app.get('/api/ping', (req, res) => {
    res.json({ ok: true, user: req.sluice?.identity?.username ?? null });
  });
  return app;
}

function median(ms: readonly Measured[]): Measured {
  const sorted = [...ms].sort((a, b) => a.rps - b.rps);
  const m = sorted[Math.floor(sorted.length / 2)];
  if (!m) throw new Error('no measurement');
  return m;
}

function medianOf(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function xactCommits(database: string): Promise<number> {
  const { rows } = await adminQuery<{ n: string }>(
    'SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = $1',
    [database],
  );
  return Number(rows[0]?.n ?? 0);
}

const django = await startDjango({ label: 'sc_bench', threads: 8 });
const prefix = uniquePrefix('session-cache-bench');
const micro: { name: string; us: number }[] = [];
const rows: {
  name: string;
  m: Measured;
  ratio: number;
  cpuUs: number;
  cpuRatio: number;
  queries: number;
  note: string;
}[] = [];
try {
  const login = await django.login('user');
  const cookie = `${django.sessionCookieName}=${login.sessionId}`;
  const pool = createPool({ connectionString: django.database.url, max: 4, applicationName: 'sluice-bench' });
  let queries = 0;
  const counting = {
    query: (text: string, values: unknown[], options: { readonly signal: AbortSignal }) => {
      queries += 1;
      return pool.query(text, values, options);
    },
  };
  const validator = djangoDatabaseValidator({ pool: counting, secretKey: django.secretKey });
  const pepper = 'session-cache bench pepper (32 bytes)';
  const l2 = { redis: sharedRedisUrl, prefix };

  const cases: { name: string; mw?: () => SessionCacheMiddleware; note: string }[] = [
    { name: 'bare Express', note: 'no authentication' },
    {
      name: 'sessionCache, L1 hits',
      mw: () => sessionCache({ validator, pepper, env: {}, l2 }),
      note: 'goal >= 0.95 of bare',
    },
    {
      name: 'sessionCache, L2 hits (L1 off)',
      mw: () => sessionCache({ validator, pepper, env: {}, l2, l1: false }),
      note: 'goal >= 0.85 of bare',
    },
  ];
  // Rounds interleave the cases so that a burst of load from elsewhere on the machine hits them
  // alike; each case reports its median round, and its ratio is the median of per-round ratios.
  const runs = cases.map(() => [] as Measured[]);
  const perRequest = cases.map(() => 0);
  const servers = await Promise.all(
    cases.map(async (c) => {
      const mw = c.mw?.();
      if (mw) while (mw.cache.l2State !== 'up') await new Promise((r) => setTimeout(r, 10));
      const { server, url } = await listen(makeApp(mw));
      const target = `${url}/api/ping`;
      await cannon(target, { cookie }, WARMUP_SECONDS);
      return { server, target, mw };
    }),
  );
  for (let round = 0; round < ROUNDS; round += 1) {
    // rotate the order so that no case always runs first or last in a round
    const order = servers.map((_, k) => (k + round) % servers.length);
    for (const i of order) {
      const s = servers[i];
      if (!s) continue;
      const before = queries;
      const cpu = process.cpuUsage();
      const m = await cannon(s.target, { cookie }, SECONDS);
      const used = process.cpuUsage(cpu);
      m.cpuUs = (used.user + used.system) / Math.max(1, m.requests);
      runs[i]?.push(m);
      perRequest[i] = (perRequest[i] ?? 0) + (queries - before) / Math.max(1, m.requests) / ROUNDS;
    }
  }
  for (const s of servers) {
    s.server.closeAllConnections();
    await new Promise((r) => s.server.close(r));
    await s.mw?.close();
  }
  for (const [i, c] of cases.entries()) {
    const mine = runs[i] ?? [];
    const ratios = mine.map((m, round) => m.rps / (runs[0]?.[round]?.rps ?? m.rps));
    const cpu = medianOf(mine.map((m) => m.cpuUs));
    const bareCpu = medianOf((runs[0] ?? []).map((m) => m.cpuUs));
    rows.push({
      name: c.name,
      m: median(mine),
      ratio: medianOf(ratios),
      cpuUs: cpu,
      cpuRatio: bareCpu / cpu,
      queries: perRequest[i] ?? 0,
      note: c.note,
    });
  }
  // In-process cost of the middleware itself (no HTTP, no load generator): the least time per
  // call over several batches, so that other load on the machine mostly drops out.
  for (const [name, options] of [
    ['sessionCache, L1 hit', { l2 }],
    ['sessionCache, L2 hit (L1 off)', { l2, l1: false as const }],
  ] as const) {
    const mw = sessionCache({ validator, pepper, env: {}, ...options });
    while (mw.cache.l2State !== 'up') await new Promise((r) => setTimeout(r, 10));
    const headers = { cookie, host: '127.0.0.1', accept: '*/*' };
    const call = () =>
      new Promise<void>((resolve, reject) => {
        const req = { headers, url: '/api/ping', method: 'GET' };
        const res = { headersSent: false, setHeader() {}, end: () => reject(new Error('rejected')) };
        mw(req as never, res as never, () => resolve());
      });
    await call();
    const batch = options.l1 === false ? 2_000 : 20_000;
    let best = Number.POSITIVE_INFINITY;
    for (let b = 0; b < 5; b += 1) {
      const t0 = performance.now();
      for (let k = 0; k < batch; k += 1) await call();
      best = Math.min(best, ((performance.now() - t0) * 1000) / batch);
    }
    micro.push({ name, us: best });
    await mw.close();
  }
  await pool.close();

  // Django's own check: SessionMiddleware + DRF authentication on every request.
  const target = `${django.url}/api/users/self`;
  await cannon(target, { cookie }, WARMUP_SECONDS);
  const before = await xactCommits(django.database.name);
  const m = await cannon(target, { cookie }, SECONDS);
  await new Promise((r) => setTimeout(r, 1_500)); // let backends report their statistics
  const commits = (await xactCommits(django.database.name)) - before;
  rows.push({
    name: 'Django GET /api/users/self',
    m,
    ratio: m.rps / (rows[0]?.m.rps ?? m.rps),
    cpuUs: Number.NaN,
    cpuRatio: Number.NaN,
    queries: commits / Math.max(1, m.requests),
    note: 'for scale; DB figure = committed transactions (autocommit: one per statement)',
  });
} finally {
  await deleteKeys(sharedRedisUrl, prefix).catch(() => undefined);
  await django.stop();
}

console.log(
  `load average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} on ${availableParallelism()} CPUs`,
);
console.log(
  `autocannon: ${CONNECTIONS} connections; ${ROUNDS} interleaved rounds of ${SECONDS} s per case after ${WARMUP_SECONDS} s of warm-up; one session cookie. ` +
    'Figures are the median round; x bare is the median of per-round ratios. App CPU is the CPU time the ' +
    'app process spent per request; its "x bare" is bare CPU / case CPU.\n',
);
console.log(
  '| case | req/s | x bare | app CPU µs/req | x bare (CPU) | p50 ms | p99 ms | failed | DB queries/request | note |',
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const r of rows) {
  console.log(
    `| ${r.name} | ${Math.round(r.m.rps)} | ${r.ratio.toFixed(2)} | ${Number.isNaN(r.cpuUs) ? '-' : r.cpuUs.toFixed(0)} | ${Number.isNaN(r.cpuRatio) ? '-' : r.cpuRatio.toFixed(2)} | ${r.m.p50} | ${r.m.p99} | ${r.m.failed} | ${r.queries.toFixed(4)} | ${r.note} |`,
  );
}
console.log(
  '\nIn-process, one request at a time (no HTTP): least time per middleware call over 5 batches.\n',
);
console.log('| case | µs per call |');
console.log('| --- | ---: |');
for (const m of micro) console.log(`| ${m.name} | ${m.us.toFixed(1)} |`);
