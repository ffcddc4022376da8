import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort, uniqueSuffix, waitFor } from './ports.js';

/** The machine's shared Redis. Suites that share it isolate themselves with `uniquePrefix()`. */
export const sharedRedisUrl = process.env.SLUICE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A key prefix no other suite (or run) uses: `sluice-test:<label>:<pid>_<rand>:`. */
export function uniquePrefix(label: string): string {
  return `sluice-test:${label}:${uniqueSuffix()}:`;
}

/** Deletes every key under `prefix` on the given Redis (SCAN, never KEYS). */
export async function deleteKeys(url: string, prefix: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  // Failures surface through connect() and the commands; without a listener ioredis also prints them.
  redis.on('error', () => {});
  let deleted = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

export interface OwnRedis {
  readonly port: number;
  readonly url: string;
  /** SIGKILLs the server (a crash); `start()` brings it back on the same port. */
  kill(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a private `redis-server` on a free port, with nothing on disk, for tests that kill
 * or restart Redis. Never touches the machine's shared Redis.
 */
export async function startOwnRedis(extraArgs: string[] = []): Promise<OwnRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let stopped = false;

  const start = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
      { stdio: 'ignore' },
    );
    await waitFor(
      async () => {
        const probe = new Redis(url, {
          lazyConnect: true,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
        });
        // Refused until the server listens: that is what the probe waits out, not an error to print.
        probe.on('error', () => {});
        try {
          await probe.connect();
          return (await probe.ping()) === 'PONG';
        } finally {
          probe.disconnect();
        }
      },
      { what: `redis-server on port ${port}` },
    );
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await kill();
  };
  await start();
  return { port, url, kill, start, stop, [Symbol.asyncDispose]: stop };
}
