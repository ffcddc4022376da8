// Starts gateways as child processes (the way they run in production: one process each, so a
// crash shows up as an exit, a SIGKILL is a real SIGKILL and the load driver keeps its own CPU).
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Metrics, scrapeMetrics } from './metrics.ts';

export interface ProcessSample {
  readonly at: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly eldP50Ms: number;
  readonly eldP99Ms: number;
  readonly eldMaxMs: number;
}

/** One request as the gateway itself saw it. */
export interface AccessEntry {
  readonly at: number;
  readonly status: number;
  /** Time inside the gateway, from the request to the end of the response. */
  readonly durationMs: number;
  /** The gateway's error code, '' when none. */
  readonly error: string;
  /** The path, ids replaced by `:id`. */
  readonly route: string;
}

export interface GatewayProcess {
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  /** The admin listener: `/metrics`, `/readyz`, `/sluice/status.json`. */
  readonly adminUrl: string;
  readonly samples: readonly ProcessSample[];
  /** Exit code or signal once it exited; undefined while running. */
  readonly exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** stdout and stderr tail. */
  logs(): string;
  metrics(): Promise<Metrics>;
  /** The gateway's own access log entries since `since` (epoch ms). */
  accessLog(since?: number): Promise<AccessEntry[]>;
  /** Sends a signal (SIGKILL: a crash). Resolves once the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Asks the gateway to close, then waits for the exit (SIGKILL after `timeoutMs`). */
  close(timeoutMs?: number): Promise<void>;
}

export interface GatewayProcessOptions {
  /** `createGateway()` input; `listen` defaults to 127.0.0.1:0, `logLevel` to 'warn'. */
  readonly gateway: Record<string, unknown>;
  /** RSS / event-loop sampling interval. @default 1000 */
  readonly sampleMs?: number;
  /**
   * Most access-log entries the child keeps for {@link GatewayProcess.accessLog} (0: none). The
   * ring lives in the gateway's own heap, so a memory measurement (the soak) turns it off.
   * @default 200000
   */
  readonly accessLogMax?: number;
  /** @default 60000 */
  readonly startTimeoutMs?: number;
  /** The child's open-file limit (soft and hard). @default this process's */
  readonly fileLimit?: number;
}

const entry = fileURLToPath(new URL('./gateway-child.ts', import.meta.url));
const live = new Set<ChildProcess>();
let hook = false;

export async function spawnGateway(options: GatewayProcessOptions): Promise<GatewayProcess> {
  if (!hook) {
    hook = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  const config = {
    gateway: { listen: '127.0.0.1:0', logLevel: 'warn', ...options.gateway },
    sampleMs: options.sampleMs ?? 1000,
    accessLogMax: options.accessLogMax ?? 200_000,
  };
  const execArgv = ['--conditions=source', '--import', 'tsx'];
  const spawnOptions = {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
    env: { ...process.env, SLUICE_FAULTS_GATEWAY: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'] as ['ignore', 'pipe', 'pipe', 'ipc'],
  };
  // A lower open-file limit runs the child under prlimit (which execs it: the IPC channel stays).
  const child =
    options.fileLimit === undefined
      ? fork(entry, [], { ...spawnOptions, execArgv })
      : spawn(
          'prlimit',
          [`--nofile=${options.fileLimit}:${options.fileLimit}`, '--', process.execPath, ...execArgv, entry],
          spawnOptions,
        );
  live.add(child);
  let tail = '';
  const keep = (c: Buffer): void => {
    tail = (tail + c.toString('utf8')).slice(-16_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const samples: ProcessSample[] = [];
  const pending = new Map<number, (entries: AccessEntry[]) => void>();
  let nextId = 0;
  let exit: GatewayProcess['exit'];
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      live.delete(child);
      resolve();
    });
  });
  let adminPort = 0;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`gateway did not start in time:\n${tail}`)),
      options.startTimeoutMs ?? 60_000,
    );
    child.on(
      'message',
      (m: { type?: string; port?: number; adminPort?: number } & Partial<ProcessSample>) => {
        if (m.type === 'listening' && typeof m.port === 'number') {
          clearTimeout(timer);
          adminPort = m.adminPort ?? 0;
          resolve(m.port);
        } else if (m.type === 'access-log') {
          const reply = m as unknown as { id: number; entries: [number, number, number, string, string][] };
          pending.get(reply.id)?.(
            reply.entries.map(([at, status, durationMs, error, route]) => ({
              at,
              status,
              durationMs,
              error,
              route,
            })),
          );
          pending.delete(reply.id);
        } else if (m.type === 'sample') {
          samples.push(m as unknown as ProcessSample);
          if (samples.length > 100_000) samples.shift();
        }
      },
    );
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`gateway exited during start (${exit?.code ?? exit?.signal}):\n${tail}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (exit) return;
    child.kill(signal);
    await exited;
  };
  return {
    pid: child.pid ?? 0,
    port,
    url,
    adminUrl,
    samples,
    get exit() {
      return exit;
    },
    logs: () => tail,
    metrics: () => scrapeMetrics(adminUrl),
    accessLog(since = 0) {
      if (exit || !child.connected) return Promise.resolve([]);
      const id = nextId++;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        child.send({ type: 'access-log', id, since });
      });
    },
    kill,
    async close(timeoutMs = 15_000) {
      if (exit) return;
      if (child.connected) child.send({ type: 'close' });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
