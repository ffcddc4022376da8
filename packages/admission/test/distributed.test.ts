import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deleteKeys, sharedRedisUrl, uniquePrefix, waitFor } from '@sluice/test-support';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisSemaphore } from '../src/index.ts';
import { listen } from './helpers.ts';

const prefix = uniquePrefix('admission-dist');
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const workerPath = fileURLToPath(new URL('./fixtures/distributed-worker.ts', import.meta.url));
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await deleteKeys(sharedRedisUrl, prefix);
});

interface Worker {
  readonly child: ChildProcess;
  readonly lines: string[];
  nextLine(match: RegExp, timeoutMs?: number): Promise<string>;
}

function startWorker(config: Record<string, unknown>): Worker {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', workerPath], {
    cwd: repoRoot,
    env: { ...process.env, SLUICE_WORKER: JSON.stringify({ redis: sharedRedisUrl, prefix, ...config }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  const lines: string[] = [];
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
  });
  return {
    child,
    lines,
    async nextLine(match, timeoutMs = 20_000) {
      await waitFor(() => lines.some((l) => match.test(l)), {
        timeoutMs,
        what: `a worker line matching ${match}`,
      });
      return lines.find((l) => match.test(l)) as string;
    },
  };
}

describe('RedisSemaphore across processes', () => {
  it('3 processes x 50 concurrent requests, global limit 10: the upstream never sees more than 10', async () => {
    let current = 0;
    let peak = 0;
    let served = 0;
    const pids = new Set<string>();
    const upstream = await listen((req, res) => {
      current += 1;
      peak = Math.max(peak, current);
      pids.add(new URL(req.url ?? '/', 'http://x').searchParams.get('pid') ?? '');
      setTimeout(() => {
        current -= 1;
        served += 1;
        res.end('done');
      }, 15);
    });
    try {
      const workers = [0, 1, 2].map(() =>
        startWorker({
          mode: 'load',
          name: 'load',
          limit: 10,
          leaseMs: 5000,
          upstream: upstream.url,
          requests: 50,
        }),
      );
      await Promise.all(workers.map((w) => w.nextLine(/^ready$/)));
      for (const w of workers) w.child.stdin?.write('go\n');
      const summaries = await Promise.all(workers.map((w) => w.nextLine(/^\{/, 40_000)));
      const results = summaries.map((s) => JSON.parse(s) as { ok: number; failed: number; mode: string });
      expect(results.map((r) => r.ok)).toEqual([50, 50, 50]);
      expect(results.every((r) => r.mode === 'redis')).toBe(true);
      expect(served).toBe(150);
      expect(pids.size).toBe(3);
      expect(peak).toBeLessThanOrEqual(10);
      expect(peak).toBeGreaterThanOrEqual(5); // the limit was actually used, not serialized
    } finally {
      await upstream.close();
    }
  }, 60_000);

  it("a killed process's leases are freed within the lease time", async () => {
    // Renewed every leaseMs / 3, so the live holder's leases outlive a stall of two thirds of it.
    const leaseMs = 2000;
    const holder = startWorker({ mode: 'hold', name: 'kill', limit: 3, leaseMs, hold: 3 });
    await holder.nextLine(/^held 3$/);
    const gate = new RedisSemaphore({
      redis: sharedRedisUrl,
      prefix,
      name: 'kill',
      limit: 3,
      leaseMs,
      queueTimeoutMs: 20_000,
    });
    try {
      let acquiredAt = 0;
      const waiting = gate.acquire().then((p) => {
        acquiredAt = Date.now();
        return p;
      });
      waiting.catch(() => {}); // awaited below; close() rejects it if an assertion fails first
      // held well past the lease time: the live process keeps renewing
      await new Promise((r) => setTimeout(r, leaseMs * 1.5));
      expect(acquiredAt).toBe(0);
      const killedAt = Date.now();
      holder.child.kill('SIGKILL');
      const permit = await waiting;
      const freedAfter = acquiredAt - killedAt;
      expect(freedAfter).toBeGreaterThan(0);
      // lease time plus the bounded poll, with slack for a loaded machine (far below the queue timeout)
      expect(freedAfter).toBeLessThanOrEqual(leaseMs + 3000);
      permit.release();
    } finally {
      holder.child.kill('SIGKILL');
      await gate.close();
    }
  }, 60_000);
});
