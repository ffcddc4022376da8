// Where the machine's CPU went during a run: each server the run started (its process and every
// descendant, exited ones included through the kernel's children totals), the benchmark process
// itself (load client and samplers), and everything else on the machine. On a shared 2-core
// machine that last figure says how much of a run's outcome is other people's work.
import { readdirSync, readFileSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

/** utime + stime (+ cutime + cstime: reaped children) of one process, in ticks; 0 when gone. */
function ticks(pid: number, withChildren: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = Number(f[11]) + Number(f[12]);
    return withChildren ? own + Number(f[13]) + Number(f[14]) : own;
  } catch {
    return 0;
  }
}

/** Parent of every live process (Linux /proc). */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      map.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // raced with an exit
    }
  }
  return map;
}

/** CPU seconds of `pid` and its descendants, live and reaped. */
function treeSeconds(root: number, tree: Map<number, number>): number {
  let total = ticks(root, true);
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    for (const [child, parent] of tree) {
      if (parent !== pid) continue;
      total += ticks(child, false);
      stack.push(child);
    }
  }
  return total / TICK;
}

/** Busy CPU seconds of the whole machine (all cores) since boot, from /proc/stat. */
function machineSeconds(): number {
  const cpu =
    readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal: busy is all but idle and iowait
  const busy = cpu.slice(0, 8).reduce((a, v, i) => (i === 3 || i === 4 ? a : a + v), 0);
  return busy / TICK;
}

/** CPU seconds a run used, by part. */
export interface CpuUse {
  /** Wall-clock seconds between the two readings. */
  wall: number;
  /** Busy seconds of the whole machine (2 cores: at most 2 x wall). */
  machine: number;
  /** By part: `django`, `postgres`, `pgbouncer`, `gateway`, `bench` (the load client), `others`. */
  parts: Record<string, number>;
}

/** Starts measuring `pids` (by part; undefined parts are skipped); `stop()` returns the use since. */
export function measureCpu(pids: Record<string, number | undefined>): { stop(): CpuUse } {
  const read = (): { at: number; machine: number; self: number; parts: Record<string, number> } => {
    const tree = parents();
    const parts: Record<string, number> = {};
    for (const [name, pid] of Object.entries(pids))
      if (pid !== undefined) parts[name] = treeSeconds(pid, tree);
    const self = process.cpuUsage();
    return { at: performance.now(), machine: machineSeconds(), self: (self.user + self.system) / 1e6, parts };
  };
  const start = read();
  return {
    stop() {
      const end = read();
      const parts: Record<string, number> = {};
      for (const name of Object.keys(end.parts)) {
        parts[name] = Math.max(0, (end.parts[name] ?? 0) - (start.parts[name] ?? 0));
      }
      parts.bench = end.self - start.self;
      const machine = end.machine - start.machine;
      const ours = Object.values(parts).reduce((a, v) => a + v, 0);
      parts.others = Math.max(0, machine - ours);
      return { wall: (end.at - start.at) / 1000, machine, parts };
    },
  };
}
