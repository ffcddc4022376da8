// `pnpm bench pool`: pool.query throughput of a Sluice pool against a raw pg.Pool on the same
// server with the same settings (max, timeouts, application_name), the same query and the same
// concurrency, interleaved round by round in one run; then the cost of one acquire/release.
// Uses a database it creates and drops on 127.0.0.1.
import { createTestDatabase } from '@sluice/test-support';
import pg from 'pg';
import { createPool, type SluicePool } from '../src/index.ts';

const MAX = 10;
const CONCURRENCY = 64;
const ROUND_MS = 150;
const ROUNDS = 100;
const ACQUIRES = 5000;
const ACQUIRE_ROUNDS = 15;
const QUERY = 'SELECT $1::int AS n';

type Queryable = { query(text: string, values: unknown[]): Promise<unknown> };

interface Round {
  /** queries per second */
  readonly rate: number;
  /** CPU time of this Node process per query, µs (user + system) */
  readonly cpu: number;
}

async function throughput(pool: Queryable): Promise<Round> {
  let ops = 0;
  const deadline = performance.now() + ROUND_MS;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      while (performance.now() < deadline) {
        await pool.query(QUERY, [w]);
        ops += 1;
      }
    }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  return { rate: ops / ((performance.now() - started) / 1000), cpu: (cpu.user + cpu.system) / ops };
}

async function acquireMicros(acquire: () => Promise<void>): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < ACQUIRES; i += 1) await acquire();
  return ((performance.now() - started) * 1000) / ACQUIRES;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};
const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

const db = await createTestDatabase('bench_pool');
const settings = { idleTimeoutMs: 10_000, acquireTimeoutMs: 10_000, maxLifetimeSeconds: 1800 };
const raw = new pg.Pool({
  connectionString: db.url,
  max: MAX,
  application_name: 'sluice-bench-raw',
  idleTimeoutMillis: settings.idleTimeoutMs,
  connectionTimeoutMillis: settings.acquireTimeoutMs,
  maxLifetimeSeconds: settings.maxLifetimeSeconds,
});
raw.on('error', () => undefined);
const sluice: SluicePool = createPool({
  connectionString: db.url,
  max: MAX,
  applicationName: 'sluice-bench',
  ...settings,
});
const sluiceNoLeak: SluicePool = createPool({
  connectionString: db.url,
  max: MAX,
  applicationName: 'sluice-bench-noleak',
  leakDetectionMs: 0,
  ...settings,
});

try {
  const variants: Array<[string, Queryable]> = [
    ['raw pg.Pool', raw],
    ['Sluice pool (defaults)', sluice],
  ];
  for (const pool of [raw, sluice, sluiceNoLeak]) await throughput(pool); // warm up: connections, JIT
  const rounds = new Map<string, Round[]>(variants.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round += 1) {
    // alternate the order every round so neither always runs first
    for (let i = 0; i < variants.length; i += 1) {
      const [name, pool] = variants[(i + round) % variants.length] as [string, Queryable];
      rounds.get(name)?.push(await throughput(pool));
    }
  }
  const rawRounds = rounds.get('raw pg.Pool') ?? [];
  console.log(
    `pool.query('${QUERY}') throughput, max ${MAX}, ${CONCURRENCY} concurrent callers, ` +
      `${ROUNDS} interleaved rounds of ${ROUND_MS} ms; ratio = median of the per-round ratios\n`,
  );
  console.log('| pool | queries/s (median) | min | max | ratio vs raw | Node CPU µs/query (median) |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const [name] of variants) {
    const xs = rounds.get(name) ?? [];
    const rates = xs.map((r) => r.rate);
    const ratio = median(xs.map((x, round) => x.rate / (rawRounds[round]?.rate ?? x.rate)));
    console.log(
      `| ${name} | ${fmt(median(rates))} | ${fmt(Math.min(...rates))} | ${fmt(Math.max(...rates))} | ` +
        `${ratio.toFixed(3)} | ${fmt(median(xs.map((r) => r.cpu)), 1)} |`,
    );
  }

  const rawAcquire = async (): Promise<void> => {
    const client = await raw.connect();
    client.release();
  };
  const sluiceAcquire = (): Promise<void> => sluice.withClient(async () => undefined);
  const sluiceNoLeakAcquire = (): Promise<void> => sluiceNoLeak.withClient(async () => undefined);
  const acquirers: Array<[string, () => Promise<void>]> = [
    ['raw pg.Pool connect() + release()', rawAcquire],
    ['Sluice withClient(async () => {})', sluiceAcquire],
    ['Sluice withClient, leakDetectionMs: 0', sluiceNoLeakAcquire],
  ];
  for (const [, acquire] of acquirers) await acquireMicros(acquire);
  const micros = new Map<string, number[]>(acquirers.map(([name]) => [name, []]));
  for (let round = 0; round < ACQUIRE_ROUNDS; round += 1) {
    for (let i = 0; i < acquirers.length; i += 1) {
      const [name, acquire] = acquirers[(i + round) % acquirers.length] as [string, () => Promise<void>];
      micros.get(name)?.push(await acquireMicros(acquire));
    }
  }
  const rawMicros = median(micros.get(acquirers[0]?.[0] ?? '') ?? []);
  console.log(
    `\nacquire + release of an idle connection, one caller, ${ACQUIRES} per round, median of ${ACQUIRE_ROUNDS} rounds\n`,
  );
  console.log('| acquire | µs per acquire (median) | overhead vs raw |');
  console.log('| --- | ---: | ---: |');
  for (const [name] of acquirers) {
    const m = median(micros.get(name) ?? []);
    console.log(
      `| ${name} | ${fmt(m, 2)} | ${name.startsWith('raw') ? '-' : `+${fmt(m - rawMicros, 2)} µs`} |`,
    );
  }
} finally {
  await raw.end();
  await sluice.close();
  await sluiceNoLeak.close();
  await db.drop();
}
