// `pnpm bench admission`: the middleware's overhead over a bare Express app (autocannon, in this
// process, against servers in their own processes, rounds alternated so drift in the machine's
// load hits every variant alike), its own cost per request in process, acquire/release
// throughput of the local semaphore and of the Redis semaphore, then the load-following limit
// against a simulated PgBouncer-backed Django. Bounded (about a minute), traffic to 127.0.0.1
// only. Prints markdown tables with figures and ratios. Arguments pick sections (`http`,
// `inprocess`, `local`, `redis`, `sim`; default all) and `--quick` shortens the HTTP rounds.
import { type ChildProcess, spawn } from 'node:child_process';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { admission, loadLimit, RedisSemaphore, Semaphore } from '../src/index.ts';
import { gradient2Limit } from './gradient2.ts';
import { type Scenario, type SimController, simulate } from './load-sim.ts';

const args = new Set(process.argv.slice(2));
const quick = args.delete('--quick');
const run = (section: string): boolean => args.size === 0 || args.has(section);
const ROUNDS = quick ? 2 : 5;
const SECONDS = quick ? 1 : 2;
const CONNECTIONS = 32;
const redisUrl = process.env.SLUICE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const root = fileURLToPath(new URL('../../../', import.meta.url));
const serverScript = fileURLToPath(new URL('./server.ts', import.meta.url));

async function startServer(mode: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', serverScript, mode], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server ${mode} did not start`)), 30_000);
    child.stdout?.setEncoding('utf8');
    child.stdout?.once('data', (c: string) => {
      clearTimeout(timer);
      resolve(c.trim());
    });
  });
  return { url: `http://127.0.0.1:${port}/`, child };
}

interface Load {
  rps: number;
  p99: number;
  errors: number;
  /** Server CPU time per request, in microseconds. */
  cpuPerRequest: number;
}

async function serverCpu(url: string): Promise<number> {
  const r = await fetch(`${url}__cpu`);
  return ((await r.json()) as { cpuMicros: number }).cpuMicros;
}

async function load(url: string, seconds: number): Promise<Load> {
  const cpuBefore = await serverCpu(url);
  const r = await autocannon({ url, connections: CONNECTIONS, duration: seconds });
  const cpu = (await serverCpu(url)) - cpuBefore;
  return {
    rps: r.requests.average,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx + r.timeouts,
    cpuPerRequest: cpu / Math.max(1, r.requests.total),
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

const rows: string[][] = [];
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

if (run('http')) {
  // 1. Middleware overhead (ample limit) against a bare Express app.
  const modes = ['bare', 'noop', 'admission', 'admission+breaker'];
  const servers = await Promise.all(modes.map((m) => startServer(m)));
  try {
    for (const s of servers) await load(s.url, 1); // warm up
    const results = new Map<string, Load[]>(modes.map((m) => [m, []]));
    for (let round = 0; round < ROUNDS; round += 1) {
      // alternate the order so drift in the machine's load hits every variant alike
      const order = round % 2 === 0 ? [...modes.keys()] : [...modes.keys()].reverse();
      for (const i of order)
        results.get(modes[i] as string)?.push(await load((servers[i] as { url: string }).url, SECONDS));
    }
    const bare = results.get('bare') ?? [];
    const bareCpu = median(bare.map((r) => r.cpuPerRequest));
    for (const m of modes) {
      const rs = results.get(m) ?? [];
      const errors = rs.reduce((a, r) => a + r.errors, 0);
      // the median of per-round ratios: each round pairs runs taken seconds apart
      const ratio = median(rs.map((r, i) => r.rps / (bare[i]?.rps ?? Number.NaN)));
      const cpu = median(rs.map((r) => r.cpuPerRequest));
      rows.push([
        `HTTP ${m} (${CONNECTIONS} connections, ${ROUNDS} rounds x ${SECONDS} s)`,
        `${fmt(median(rs.map((r) => r.rps)))} req/s median, p99 ${median(rs.map((r) => r.p99))} ms${errors ? `, ${errors} errors` : ''}`,
        m === 'bare' ? '1.00' : ratio.toFixed(2),
      ]);
      rows.push([
        `HTTP ${m}: server CPU per request (capacity)`,
        `${cpu.toFixed(1)} µs`,
        m === 'bare' ? '1.00' : (bareCpu / cpu).toFixed(2),
      ]);
    }
  } finally {
    for (const s of servers) s.child.kill('SIGKILL');
  }
}

if (run('inprocess')) {
  // 2. The middleware's own CPU cost per request, in process, without I/O (CPU time): a request
  // and a response object go through it, the response writes its head and finishes; the same
  // loop without it is the baseline. Compare with the bare app's CPU per request above.
  function middlewareCost(withBreaker: boolean): number {
    const mw = admission({ limit: 10_000, ...(withBreaker ? { breaker: { volumeThreshold: 1000 } } : {}) });
    const socket = new Socket();
    const noop = (): void => {};
    const pass = (n: number, use: boolean): number => {
      const start = process.cpuUsage();
      for (let i = 0; i < n; i += 1) {
        const req = new IncomingMessage(socket);
        req.url = '/';
        const res = new ServerResponse(req);
        if (use) mw(req, res, noop);
        res.writeHead(200); // the head: the breaker's verdict
        res.emit('finish');
        res.emit('close');
      }
      const used = process.cpuUsage(start);
      return (used.user + used.system) / n;
    };
    pass(20_000, true);
    pass(20_000, false);
    const costs: number[] = [];
    for (let round = 0; round < 5; round += 1) costs.push(pass(20_000, true) - pass(20_000, false));
    void mw.close();
    return median(costs);
  }
  const mwCost = middlewareCost(false);
  const mwBreakerCost = middlewareCost(true);
  rows.push(
    ['admission() own cost per request (in process)', `${mwCost.toFixed(2)} µs`, ''],
    ['admission() + breaker own cost per request (in process)', `${mwBreakerCost.toFixed(2)} µs`, ''],
  );
}

// 3. acquire/release throughput, local and over Redis, per second of this process's CPU time
// (steady on a shared machine, where wall-clock rates move with the neighbours' load).
async function timed(ms: number, body: () => Promise<number>): Promise<number> {
  await body(); // warm up
  const start = performance.now();
  const cpu = process.cpuUsage();
  let ops = 0;
  while (performance.now() - start < ms) ops += await body();
  const used = process.cpuUsage(cpu);
  return (ops * 1e6) / (used.user + used.system);
}

const contended = async (
  gate: Semaphore | RedisSemaphore,
  workers: number,
  perWorker: number,
): Promise<number> => {
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; i < perWorker; i += 1) {
        const p = await gate.acquire({ key: `client${w % 16}` });
        await Promise.resolve();
        p.release();
      }
    }),
  );
  return workers * perWorker;
};

if (run('local')) {
  const local = new Semaphore({ limit: 64, maxQueue: 10_000, interactiveReserve: 0 });
  const localSync = await timed(1500, async () => {
    for (let i = 0; i < 10_000; i += 1) local.tryAcquire({ key: 'k' })?.release();
    return 10_000;
  });
  const localAsync = await timed(1500, async () => {
    for (let i = 0; i < 2_000; i += 1) (await local.acquire({ key: 'k' })).release();
    return 2_000;
  });
  const localContended = await timed(1500, () => contended(local, 256, 20));
  await local.close();

  rows.push(
    ['local tryAcquire + release (sync)', `${fmt(localSync)} ops/CPU-s`, '1.00'],
    ['local await acquire + release', `${fmt(localAsync)} ops/CPU-s`, (localAsync / localSync).toFixed(3)],
    [
      'local, 256 tasks on limit 64 (queueing)',
      `${fmt(localContended)} ops/CPU-s`,
      (localContended / localSync).toFixed(3),
    ],
  );
}

if (run('redis')) {
  const prefix = `sluice-bench:admission:${process.pid}:`;
  const remote = new RedisSemaphore({
    redis: redisUrl,
    prefix,
    name: 'bench',
    limit: 64,
    maxQueue: 10_000,
    interactiveReserve: 0,
  });
  await (await remote.acquire()).release();
  const remoteSerial = await timed(2000, async () => {
    for (let i = 0; i < 200; i += 1) (await remote.acquire({ key: 'k' })).release();
    return 200;
  });
  const remoteContended = await timed(3000, () => contended(remote, 256, 4));
  await remote.close();

  rows.push(
    ['Redis await acquire + release (one at a time)', `${fmt(remoteSerial)} ops/CPU-s`, ''],
    ['Redis, 256 tasks on limit 64 (queueing)', `${fmt(remoteContended)} ops/CPU-s`, ''],
  );
}

// 4. The load-following limit against a simulated PgBouncer-backed Django (see load-sim.ts).
if (run('sim')) {
  const base = {
    poolSize: 20,
    cores: 2,
    ceiling: 100,
    bulkWorkers: 200,
    interactiveRate: 10,
    interactive: { cpuMs: 3, queries: 2, queryMs: 5, ioMs: 0 },
    durationMs: 120_000,
    warmupMs: 20_000,
    sampleEveryMs: 1000,
    seed: 1,
  } as const;
  const scenarios: Scenario[] = [
    {
      ...base,
      name: 'database-bound: 3 queries x 20 ms + 40 ms I/O + 4 ms CPU per bulk request',
      bulk: { cpuMs: 4, queries: 3, queryMs: 20, ioMs: 40 },
    },
    {
      ...base,
      name: 'CPU-bound Django: 2 queries x 10 ms + 10 ms I/O + 25 ms CPU per bulk request',
      bulk: { cpuMs: 25, queries: 2, queryMs: 10, ioMs: 10 },
    },
    {
      ...base,
      name: 'the database slows down: as the first, every query 3x slower from 20 s on',
      bulk: { cpuMs: 4, queries: 3, queryMs: 20, ioMs: 40 },
      slowdownAt: 20_000,
      slowdown: 3,
    },
  ];
  const fixed = (n: number) => (): SimController => ({ current: n, onChange: () => () => {} });
  const controllers: [string, (now: () => number) => SimController][] = [
    ['static limit 20 (the pool size)', fixed(20)],
    ['static limit 100 (the ceiling)', fixed(100)],
    ['Gradient2 alone (max 100)', (now) => gradient2Limit({ max: 100, now })],
    ['loadLimit (ceiling 100)', () => loadLimit({ ceiling: 100 })],
  ];
  for (const scenario of scenarios) {
    const results = controllers.map(([name, make]) => [name, simulate(scenario, make)] as const);
    // The reference is every request let in (a limit at the ceiling): PgBouncer alone queues them.
    const [, reference] = results[1] as (typeof results)[number];
    console.log(
      `\n${scenario.name} (pool ${scenario.poolSize}, ${scenario.cores} cores, ${scenario.bulkWorkers} bulk clients, interactive ${scenario.interactiveRate}/s)\n`,
    );
    console.log(
      '| limit | bulk req/s | ratio | interactive p50 / p99 ms | p99 ratio | limit mean (cv) | mean cl_waiting |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const [name, r] of results) {
      console.log(
        `| ${name} | ${r.bulkPerSecond.toFixed(1)} | ${(r.bulkPerSecond / reference.bulkPerSecond).toFixed(2)} | ${r.interactiveP50.toFixed(0)} / ${r.interactiveP99.toFixed(0)} | ${(r.interactiveP99 / reference.interactiveP99).toFixed(2)} | ${r.limitMean.toFixed(1)} (${r.limitCv.toFixed(2)}) | ${r.meanWaiting.toFixed(1)} |`,
      );
    }
  }
  console.log(
    "\nRatios against the static limit of 100 (everything let in, as PgBouncer alone would). cv: the limit's standard deviation over its mean after the warm-up.\n",
  );
}

console.log('| scenario | result | ratio |');
console.log('| --- | --- | --- |');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(
  '\nHTTP ratios: median over rounds of (variant req/s / bare Express req/s), goal >= 0.95; capacity ratio: bare CPU per request / variant CPU per request (steady when the machine is shared). Throughput ratios: against local sync acquire/release.',
);
process.exit(0);
