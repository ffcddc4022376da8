import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** `root` and every process below it, from each thread's `children` list (Linux /proc). */
export function descendants(root: number): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i += 1) {
    const pid = out[i];
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // gone, or no /proc
    }
    for (const tid of tasks) {
      try {
        for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) {
          if (child.trim() !== '') out.push(Number(child));
        }
      } catch {
        // the thread ended
      }
    }
  }
  return out;
}

/** Socket inodes of established TCP connections whose remote end is `port` (IPv4 and IPv6). */
export function socketsTo(port: number): Set<string> {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[2] rem_address, f[3] state (01 = ESTABLISHED), f[9] inode
      if (f[2]?.endsWith(hexPort) && f[3] === '01' && f[9] && f[9] !== '0') inodes.add(f[9]);
    }
  }
  return inodes;
}

/**
 * How many TCP connections to `port` the processes `pids` hold open, counted from the client
 * side: a connection made by a child (gunicorn, a gateway, PgBouncer) counts when its pid is
 * given. Works on Linux; elsewhere it returns 0.
 */
export function connectionsHeld(pids: Iterable<number>, sockets: ReadonlySet<string>): number {
  const seen = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode && sockets.has(inode)) seen.add(inode);
      } catch {
        // closed meanwhile
      }
    }
  }
  return seen.size;
}
