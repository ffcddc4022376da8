// `pnpm bench admission`: the middleware's overhead over a bare Express app (autocannon, in this
// process, against servers in their own processes, rounds alternated so drift in the machine's
// load hits every variant alike), its own cost per request in process, then acquire/release
// throughput of the local semaphore and of the Redis semaphore. Bounded (about a minute),
// traffic to 127.0.0.1 only. Prints a markdown table with figures and ratios.
import { type ChildProcess, spawn } from 'node:child_process';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { admission, RedisSemaphore, Semaphore } from '../src/index.ts';

const ROUNDS = 5;
const SECONDS = 2;
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

// 2. The middleware's own CPU cost per request, in process, without I/O: a request and a
// response object go through it and the response finishes; the same loop without it is the
// baseline. Compare with the bare app's CPU per request above.
function middlewareCost(withBreaker: boolean): number {
  const mw = admission({ limit: 10_000, ...(withBreaker ? { breaker: { volumeThreshold: 1000 } } : {}) });
  const socket = new Socket();
  const noop = (): void => {};
  const pass = (n: number, use: boolean): number => {
    const start = performance.now();
    for (let i = 0; i < n; i += 1) {
      const req = new IncomingMessage(socket);
      req.url = '/';
      const res = new ServerResponse(req);
      if (use) mw(req, res, noop);
      res.emit('finish');
      res.emit('close');
    }
    return ((performance.now() - start) * 1000) / n;
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

// 3. acquire/release throughput, local and over Redis.
async function timed(ms: number, body: () => Promise<number>): Promise<number> {
  await body(); // warm up
  const start = performance.now();
  let ops = 0;
  while (performance.now() - start < ms) ops += await body();
  return (ops * 1000) / (performance.now() - start);
}

const local = new Semaphore({ limit: 64, maxQueue: 10_000, interactiveReserve: 0 });
const localSync = await timed(1500, async () => {
  for (let i = 0; i < 10_000; i += 1) local.tryAcquire({ key: 'k' })?.release();
  return 10_000;
});
const localAsync = await timed(1500, async () => {
  for (let i = 0; i < 2_000; i += 1) (await local.acquire({ key: 'k' })).release();
  return 2_000;
});
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
const localContended = await timed(1500, () => contended(local, 256, 20));
await local.close();

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
  ['local tryAcquire + release (sync)', `${fmt(localSync)} ops/s`, '1.00'],
  ['local await acquire + release', `${fmt(localAsync)} ops/s`, (localAsync / localSync).toFixed(3)],
  [
    'local, 256 tasks on limit 64 (queueing)',
    `${fmt(localContended)} ops/s`,
    (localContended / localSync).toFixed(3),
  ],
  [
    'Redis await acquire + release (one at a time)',
    `${fmt(remoteSerial)} ops/s`,
    (remoteSerial / localSync).toFixed(4),
  ],
  [
    'Redis, 256 tasks on limit 64 (queueing)',
    `${fmt(remoteContended)} ops/s`,
    (remoteContended / localSync).toFixed(4),
  ],
);

console.log('| scenario | result | ratio |');
console.log('| --- | --- | --- |');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(
  '\nHTTP ratios: median over rounds of (variant req/s / bare Express req/s), goal >= 0.95; capacity ratio: bare CPU per request / variant CPU per request (steady when the machine is shared). Throughput ratios: against local sync acquire/release.',
);
process.exit(0);
