import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The machine's temporary folder (`TMPDIR` or /tmp) as it was before a test run pointed `TMPDIR`
 * at its own folder (kept in `SLUICE_SYSTEM_TMPDIR` for every process started after that).
 */
process.env.SLUICE_SYSTEM_TMPDIR ??= process.env.TMPDIR || '/tmp';
export const systemTmp = process.env.SLUICE_SYSTEM_TMPDIR;

/** Folders named `sluice-<what>-<pid>-<random>`: the pid is the process that made it. */
const OWNED = /^sluice-[a-z-]+?-(\d+)-[^/]+$/;

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** Pids of processes (other than this one) whose command line or working folder is inside `dir`. */
export function processesUsing(dir: string): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${entry}/cwd`);
      } catch {
        // a kernel thread or another user's process
      }
      if (cmdline.includes(`${dir}/`) || cwd === dir || cwd.startsWith(`${dir}/`)) found.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return found;
}

/** SIGKILLs whatever still runs from `dir`, then removes it. */
export function removeWithProcesses(dir: string): void {
  for (const pid of processesUsing(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Removes `sluice-<what>-<pid>-*` folders in `dir` whose process is gone (a run that was
 * SIGKILLed never ran its cleanup), killing servers still running from them first. Returns
 * the names removed.
 */
export function sweepStaleTmp(dir: string = systemTmp): string[] {
  const removed: string[] = [];
  for (const entry of readdirSync(dir)) {
    const pid = Number(OWNED.exec(entry)?.[1]);
    if (!pid || pid === process.pid || !isGone(pid)) continue;
    removeWithProcesses(join(dir, entry));
    removed.push(entry);
  }
  return removed;
}

/** A test run's own temporary folder. */
export interface RunTmp {
  readonly dir: string;
  /** What is in it now (what the run left behind, when called at the end). */
  contents(): string[];
  /** Kills what still runs from it and removes it. */
  remove(): void;
}

/**
 * Sweeps what dead runs left in the system's temporary folder, then makes this run's own,
 * `sluice-run-<pid>-<random>` (mode 1777, so servers started as the `postgres` user can make
 * their folders in it), and points `TMPDIR` at it: workers and the servers they start inherit
 * it, so whatever a test forgets is removed with the folder at the end.
 */
export function createRunTmp(): RunTmp {
  sweepStaleTmp(systemTmp);
  const dir = mkdtempSync(join(systemTmp, `sluice-run-${process.pid}-`));
  chmodSync(dir, 0o1777);
  process.env.TMPDIR = dir;
  return {
    dir,
    contents: () => {
      try {
        return readdirSync(dir);
      } catch {
        return [];
      }
    },
    remove: () => {
      removeWithProcesses(dir);
      if (process.env.TMPDIR === dir) process.env.TMPDIR = systemTmp;
    },
  };
}
