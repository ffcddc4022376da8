import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { which } from './processes.js';

/** What one load run measured. */
export interface LoadResult {
  tool: 'wrk' | 'autocannon';
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Answers that were not 2xx/3xx. */
  non2xx: number;
  /** Connect, read, write errors and timeouts. */
  errors: number;
  requests: number;
}

export interface LoadOptions {
  url: string;
  headers?: Readonly<Record<string, string>>;
  connections: number;
  durationSeconds: number;
}

const autocannonBin = fileURLToPath(new URL('../../../node_modules/.bin/autocannon', import.meta.url));

/** The load generator the bench uses: Debian's `wrk` when installed, else autocannon. */
export function loadTool(): LoadResult['tool'] {
  if (which('wrk')) return 'wrk';
  if (existsSync(autocannonBin)) return 'autocannon';
  throw new Error('neither wrk (apt-get install -y wrk) nor autocannon (root devDependency) is available');
}

/** Runs the load generator in its own process for a bounded duration. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  return loadTool() === 'wrk' ? runWrk(o) : runAutocannon(o);
}

async function runWrk(o: LoadOptions): Promise<LoadResult> {
  const args = ['-t', '2', '-c', String(o.connections), '-d', `${o.durationSeconds}s`, '--latency'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(o.url);
  const out = await capture('wrk', args, (o.durationSeconds + 30) * 1000);
  return parseWrk(out);
}

/** Reads wrk's `--latency` report. */
export function parseWrk(out: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  if (rps === undefined) throw new Error(`cannot read wrk's output:\n${out}`);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    tool: 'wrk',
    requestsPerSecond: Number(rps),
    p50Ms: wrkLatency(out, '50%'),
    p99Ms: wrkLatency(out, '99%'),
    non2xx,
    errors,
    requests,
  };
}

function wrkLatency(out: string, label: string): number {
  const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  switch (m[2]) {
    case 'us':
      return v / 1000;
    case 'ms':
      return v;
    case 's':
      return v * 1000;
    default:
      return v * 60_000;
  }
}

async function runAutocannon(o: LoadOptions): Promise<LoadResult> {
  const args = ['-j', '-c', String(o.connections), '-d', String(o.durationSeconds)];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}=${v}`);
  args.push(o.url);
  const out = await capture(autocannonBin, args, (o.durationSeconds + 30) * 1000);
  const r = JSON.parse(out) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
    timeouts: number;
  };
  return {
    tool: 'autocannon',
    requestsPerSecond: r.requests.average,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    requests: r.requests.total,
  };
}

function capture(command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} exited ${code}: ${err || out}`));
    });
  });
}
