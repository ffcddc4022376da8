import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';

/**
 * Server processes the demo and the benchmarks start (the gateway, PgBouncer) must not outlive
 * them, however they end:
 * - killed (even with SIGKILL): the child is started through util-linux `setpriv --pdeathsig KILL`,
 *   so the kernel kills it when this process dies;
 * - exiting (normally, or after a signal handler ran): an `exit` hook SIGKILLs every child still
 *   running.
 * `user` runs the child as that user (PgBouncer refuses to run as root); it needs `setpriv`.
 */
export function spawnGuarded(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { user?: string } = {},
): ChildProcess {
  const { user, ...spawnOptions } = options;
  const wrap: string[] = [];
  if (hasSetpriv()) {
    if (user !== undefined) wrap.push(`--reuid=${user}`, `--regid=${user}`, '--clear-groups');
    wrap.push('--pdeathsig', 'KILL', command);
  } else if (user !== undefined) {
    throw new Error(`running ${command} as ${user} needs setpriv (util-linux)`);
  }
  const child =
    wrap.length > 0 ? spawn('setpriv', [...wrap, ...args], spawnOptions) : spawn(command, args, spawnOptions);
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. Idempotent. */
export function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
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
}

const live = new Set<ChildProcess>();
let hooked = false;
let setpriv: boolean | undefined;

function hasSetpriv(): boolean {
  setpriv ??= spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  return setpriv;
}
