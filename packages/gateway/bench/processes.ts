import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A child process the bench started, and how to stop it. */
export interface Service {
  readonly child: ChildProcess;
  /** SIGTERM, then SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `command` with its stdin piped (so it dies with the bench) and stderr kept for errors. */
export function startService(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; stdout?: 'pipe' | 'ignore' } = {},
): Service {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['pipe', options.stdout ?? 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  child.on('exit', (code, signal) => {
    if (!stopping && code !== 0) {
      process.stderr.write(`${command} exited (${code ?? signal}): ${stderr}\n`);
    }
  });
  let stopping = false;
  let stopped: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> => {
    stopping = true;
    stopped ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
    return stopped;
  };
  return { child, stop };
}

/** The first stdout line of `service` parsed as JSON (the upstream announces its URL so). */
export async function firstJsonLine<T>(service: Service, timeoutMs = 20_000): Promise<T> {
  const out = service.child.stdout;
  if (!out) throw new Error('the service has no piped stdout');
  const lines = createInterface({ input: out });
  try {
    return await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no JSON line within ${timeoutMs} ms`)), timeoutMs);
      lines.once('line', (line) => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(line) as T);
        } catch (e) {
          reject(e);
        }
      });
      service.child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited (${code}) before announcing itself`));
      });
    });
  } finally {
    lines.close();
  }
}

/** Polls `url` until it answers (any status) or `timeoutMs` passes. */
export async function waitForHttp(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The path of `name` on PATH (or in /usr/sbin, where Debian puts nginx), or undefined. */
export function which(name: string): string | undefined {
  const found = spawnSync(
    'sh',
    ['-c', `command -v ${name} || { test -x /usr/sbin/${name} && echo /usr/sbin/${name}; }`],
    {
      encoding: 'utf8',
    },
  );
  const path = found.stdout.trim().split('\n')[0];
  return path ? path : undefined;
}
