import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { waitFor } from './ports.js';

/** Options for {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /** Number of master nodes (no replicas). Redis Cluster needs at least 3. @default 3 */
  nodes?: number;
  /** `cluster-node-timeout` in ms. @default 2000 */
  nodeTimeoutMs?: number;
  /** How long to wait for `cluster_state:ok`. @default 30000 */
  startTimeoutMs?: number;
}

export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
}

/** A private Redis Cluster on local ports, owned by one test. */
export interface OwnRedisCluster {
  readonly nodes: readonly RedisClusterNode[];
  /** Stops every node and removes the folder with their nodes.conf files. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Nodes left running by a crashed test would hold their ports: kill them when the process exits. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of liveChildren) c.kill('SIGKILL');
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops nodes and removes folders left by processes that are gone (a test runner may kill its
 * workers before their exit hooks run).
 */
function sweepStale(): void {
  for (const entry of readdirSync(tmpdir())) {
    const owner = Number(/^sluice-redis-cluster-(\d+)-/.exec(entry)?.[1]);
    if (!owner || owner === process.pid || isAlive(owner)) continue;
    const dir = join(tmpdir(), entry);
    try {
      for (const pid of readFileSync(join(dir, 'pids'), 'utf8').split('\n').map(Number)) {
        if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('redis-server')) {
          process.kill(pid, 'SIGKILL');
        }
      }
    } catch {
      // nothing left running
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether `port` can be bound on 127.0.0.1 right now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port whose cluster bus port (`port + 10000`) is free as well. Picked below the kernel's
 * ephemeral range so `+10000` stays a valid port.
 */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port) || taken.has(port + 10_000)) continue;
    if ((await canBind(port)) && (await canBind(port + 10_000))) {
      taken.add(port);
      taken.add(port + 10_000);
      return port;
    }
  }
  throw new Error('no free port pair (port and port+10000) found for a Redis Cluster node');
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    child.stderr?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(' ')} failed (${code}): ${out.slice(-2000)}`));
    });
  });
}

async function probe(port: number, check: (r: Redis) => Promise<boolean>): Promise<boolean> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await check(client);
  } finally {
    client.disconnect();
  }
}

/**
 * Starts `nodes` redis-server processes with `--cluster-enabled yes` on free local ports (their
 * bus ports free too), joins them with `redis-cli --cluster create` (no replicas) and waits until
 * every node reports `cluster_state:ok`. Nothing is persisted; `stop()` removes the folder.
 *
 * @example
 * await using cluster = await startRedisCluster({ nodes: 3 });
 * const client = new Cluster(cluster.nodes);
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<OwnRedisCluster> {
  const count = options.nodes ?? 3;
  if (!Number.isInteger(count) || count < 3) {
    throw new RangeError(`nodes should be an integer >= 3, got ${String(options.nodes)}`);
  }
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 2000;
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  sweepStale();
  const dir = await mkdtemp(join(tmpdir(), `sluice-redis-cluster-${process.pid}-`));
  const children: ChildProcess[] = [];
  installExitHook();
  const nodes: RedisClusterNode[] = [];
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const taken = new Set<number>();
    for (let i = 0; i < count; i += 1) {
      const port = await freeClusterPort(taken);
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          'no',
        ],
        { stdio: 'ignore' },
      );
      children.push(child);
      liveChildren.add(child);
      child.once('exit', () => liveChildren.delete(child));
      nodes.push({ host: '127.0.0.1', port });
    }
    await writeFile(join(dir, 'pids'), children.map((c) => c.pid ?? 0).join('\n'));
    for (const node of nodes) {
      await waitFor(() => probe(node.port, async (r) => (await r.ping()) === 'PONG'), {
        timeoutMs: startTimeoutMs,
        what: `cluster node on port ${node.port}`,
      });
    }
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `${n.host}:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      startTimeoutMs,
    );
    for (const node of nodes) {
      await waitFor(
        () =>
          probe(node.port, async (r) => {
            const info = String(await r.call('CLUSTER', 'INFO'));
            return (
              info.includes('cluster_state:ok') &&
              info.includes(`cluster_known_nodes:${count}`) &&
              info.includes('cluster_slots_ok:16384')
            );
          }),
        { timeoutMs: startTimeoutMs, what: `cluster_state:ok on port ${node.port}` },
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, stop, [Symbol.asyncDispose]: stop };
}
