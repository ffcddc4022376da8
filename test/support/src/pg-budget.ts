import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import pg from 'pg';
import { connectionsHeld, descendants, socketsTo } from './connections.js';
import { pgPort, pgUrl } from './postgres.js';

/**
 * A cross-process budget of connections to the shared PostgreSQL server. The test runner's main
 * process runs the coordinator; every integration file asks it for its budget before its tests
 * run and gives it back when they are done (closing the socket gives it back too, so a crashed
 * worker never keeps its share). The coordinator grants a budget only while the sum of granted
 * budgets plus what other clients of the server hold now stays under `max_connections` minus
 * the superuser reserve and a margin. It reads what others hold from `pg_stat_activity`, minus
 * the connections its own process tree holds (counted from /proc), at start and again while a
 * file waits, so other runs starting or ending on the machine are taken into account.
 */

/** Options of {@link startPgBudget}. */
export interface PgBudgetOptions {
  /** Connections kept free on top of the superuser reserve. @default 3 */
  margin?: number | undefined;
  /** A fixed capacity instead of what the server can give (`SLUICE_TEST_PG_CAPACITY`). */
  capacity?: number | undefined;
  /**
   * How long a file waits for others to give connections back when nothing of this run holds
   * a budget; then it runs anyway with what there is. @default 30000
   */
  starvationMs?: number | undefined;
  /** How often running files' real connections are sampled. @default 250 */
  sampleMs?: number | undefined;
}

/** What one file asked for and used. */
export interface PgBudgetUse {
  readonly file: string;
  readonly budget: number;
  /** The most connections its process tree held at once (sampled). */
  readonly peak: number;
  readonly waitedMs: number;
  readonly heldMs: number;
}

/** The coordinator, run by the integration project's global setup. */
export interface PgBudget {
  /** The TCP port on 127.0.0.1 that files connect to. */
  readonly port: number;
  /** Connections this run could use at start: max - reserved - margin - what others held. */
  readonly capacity: number;
  /** What others held at start. */
  readonly othersAtStart: number;
  /** Files that have finished, in the order they finished. */
  uses(): readonly PgBudgetUse[];
  /** The most connections the whole run held at once (sampled). */
  peak(): number;
  close(): Promise<void>;
}

interface Holder {
  readonly file: string;
  readonly budget: number;
  readonly pid: number;
  readonly socket: Socket;
  readonly askedAt: number;
  grantedAt: number | undefined;
  /** What it was granted: its budget, or less when that is more than the server can give. */
  share: number;
  peak: number;
}

interface ServerState {
  readonly max: number;
  readonly reserved: number;
  readonly used: number;
}

const STATE_SQL = `SELECT current_setting('max_connections')::int AS max,
  current_setting('superuser_reserved_connections')::int AS reserved,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used`;

/** Starts the coordinator on a free port of 127.0.0.1. */
export async function startPgBudget(options: PgBudgetOptions = {}): Promise<PgBudget> {
  const margin = options.margin ?? 3;
  const starvationMs = options.starvationMs ?? 30_000;
  const sampleMs = options.sampleMs ?? 250;
  const admin = new pg.Client({
    connectionString: pgUrl('postgres'),
    application_name: 'sluice-test-budget',
  });
  admin.on('error', () => {});
  await admin.connect();

  const ours = (): number => connectionsHeld(descendants(process.pid), socketsTo(pgPort));
  const readOthers = async (): Promise<{ limit: number; others: number }> => {
    const { rows } = await admin.query<ServerState>(STATE_SQL);
    const s = rows[0] as ServerState;
    return { limit: s.max - s.reserved - margin, others: Math.max(0, s.used - ours()) };
  };

  const start = await readOthers();
  const limit = start.limit;
  let others = start.others;
  const capacity = options.capacity ?? Math.max(1, limit - others);
  const fixed = options.capacity !== undefined;
  let refreshedAt = Date.now();

  const waiting: Holder[] = [];
  const running = new Set<Holder>();
  const finished: PgBudgetUse[] = [];
  let runPeak = 0;
  let closed = false;

  const granted = (): number => {
    let sum = 0;
    for (const h of running) sum += h.share;
    return sum;
  };
  const free = (): number => (fixed ? capacity : limit - others) - granted();

  const grant = (h: Holder, share: number): void => {
    waiting.splice(waiting.indexOf(h), 1);
    h.share = share;
    h.grantedAt = Date.now();
    running.add(h);
    h.socket.write('granted\n');
  };

  let pumping = false;
  const pump = async (): Promise<void> => {
    if (pumping || closed) return;
    pumping = true;
    try {
      if (!fixed && waiting.length > 0 && Date.now() - refreshedAt > 500) {
        others = (await readOthers()).others;
        refreshedAt = Date.now();
      }
      // First fit: a small file may pass a big one that does not fit yet.
      for (const h of [...waiting]) {
        const avail = fixed ? capacity : limit - others;
        // A budget bigger than the server can give runs alone, with what there is.
        const need = Math.min(h.budget, Math.max(1, avail));
        const alone = granted() === 0;
        const starved = alone && Date.now() - h.askedAt > starvationMs;
        if (h.budget === 0 || (need <= free() && (need === h.budget || alone)) || starved) grant(h, need);
      }
    } catch {
      // the server is busy or gone; the next tick tries again
    } finally {
      pumping = false;
    }
  };

  const release = (h: Holder): void => {
    const i = waiting.indexOf(h);
    if (i >= 0) waiting.splice(i, 1);
    if (running.delete(h) && h.grantedAt !== undefined) {
      const now = Date.now();
      finished.push({
        file: h.file,
        budget: h.budget,
        peak: h.peak,
        waitedMs: h.grantedAt - h.askedAt,
        heldMs: now - h.grantedAt,
      });
    }
    void pump();
  };

  const sample = (): void => {
    if (running.size === 0) return;
    const sockets = socketsTo(pgPort);
    for (const h of running) h.peak = Math.max(h.peak, connectionsHeld(descendants(h.pid), sockets));
    runPeak = Math.max(runPeak, connectionsHeld(descendants(process.pid), sockets));
  };
  const sampler = setInterval(() => {
    sample();
    if (waiting.length > 0) void pump();
  }, sampleMs);
  sampler.unref();

  const server = createServer((socket) => {
    let buffer = '';
    let holder: Holder | undefined;
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('close', () => {
      if (holder) release(holder);
    });
    socket.on('data', (chunk: string) => {
      if (holder) return;
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      try {
        const ask = JSON.parse(buffer.slice(0, nl)) as { file: string; budget: number; pid: number };
        if (!Number.isInteger(ask.budget) || ask.budget < 0 || !Number.isInteger(ask.pid)) throw new Error();
        holder = { ...ask, socket, askedAt: Date.now(), grantedAt: undefined, share: 0, peak: 0 };
        waiting.push(holder);
        void pump();
      } catch {
        socket.end('bad request\n');
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  server.unref();
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    port,
    capacity,
    othersAtStart: start.others,
    uses: () => [...finished],
    peak: () => runPeak,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sampler);
      for (const h of [...waiting, ...running]) h.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await admin.end().catch(() => {});
    },
  };
}

/**
 * Asks the coordinator on `port` for `budget` connections for `file` (run by process `pid`) and
 * resolves once they are granted, with the function that gives them back.
 */
export async function acquirePgBudget(
  port: number,
  ask: { file: string; budget: number; pid?: number | undefined },
): Promise<() => void> {
  const socket = tcpConnect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: string): void => {
      buffer += chunk;
      if (!buffer.includes('\n')) return;
      cleanup();
      if (buffer.startsWith('granted\n')) resolve();
      else reject(new Error(`the connection budget coordinator refused: ${buffer.trim()}`));
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('the connection budget coordinator went away'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    function cleanup(): void {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
    }
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onError);
    socket.write(`${JSON.stringify({ file: ask.file, budget: ask.budget, pid: ask.pid ?? process.pid })}\n`);
  });
  socket.on('error', () => {});
  socket.unref();
  return () => {
    socket.end();
  };
}
