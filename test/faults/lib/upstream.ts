// A recording upstream that stands in for CVAT where the suite must see exactly what reached
// it: every header (to prove no forged identity header got through), its own in-flight counter
// and peak (to prove the global budget holds), introspection calls per credential (to prove a
// session validated once is not validated again), and switches to stall or die.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { forgedIdentityHeaders } from './abuse.ts';
import { listenOnLoopback } from './util.ts';

export interface UpstreamUser {
  readonly id: number;
  readonly username: string;
  readonly isStaff?: boolean;
}

export interface RecordingUpstreamOptions {
  /** Port to listen on; a free one when absent. */
  port?: number;
  /** Time every `/api/*` answer (other than `/api/users/self`) takes. @default 0 */
  delayMs?: number;
  /** Credentials the upstream accepts: `Token <key>` keys and `sessionid` cookie values. */
  tokens?: ReadonlyMap<string, UpstreamUser>;
  sessions?: ReadonlyMap<string, UpstreamUser>;
}

export interface ForgedSighting {
  readonly name: string;
  readonly value: string;
  readonly path: string;
}

export interface RecordingUpstream {
  readonly port: number;
  readonly url: string;
  readonly inFlight: number;
  readonly peak: number;
  readonly requests: number;
  /** Responses streaming right now (`GET /api/stream?bytes=N`). */
  readonly streaming: number;
  /** Identity headers carrying a forged marker that reached the upstream. Must stay empty. */
  readonly forged: readonly ForgedSighting[];
  /** `/api/users/self` calls by credential. */
  readonly introspections: ReadonlyMap<string, number>;
  /** Sets the peak back to the current in-flight count. */
  resetPeak(): void;
  setDelay(ms: number): void;
  /** While stalled, requests are held without an answer (until un-stalled or their socket closes). */
  stall(on: boolean): void;
  /** Dies: every connection destroyed, the port closed (connection refused). */
  kill(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

const forgedNames = new Set(
  forgedIdentityHeaders.flatMap((n) => [n.toLowerCase(), n.toLowerCase().replaceAll('-', '_')]),
);

function credentialOf(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Token ([0-9a-f]{40})$/i.exec(auth.trim());
    if (m) return `token:${m[1]}`;
  }
  const cookie = req.headers.cookie ?? '';
  const m = /(?:^|;\s*)sessionid=([a-z0-9]+)/.exec(cookie);
  return m ? `session:${m[1]}` : undefined;
}

export async function startRecordingUpstream(
  options: RecordingUpstreamOptions = {},
): Promise<RecordingUpstream> {
  let delayMs = options.delayMs ?? 0;
  let stalled = false;
  let inFlight = 0;
  let peak = 0;
  let requests = 0;
  let streaming = 0;
  const forged: ForgedSighting[] = [];
  const introspections = new Map<string, number>();
  const held = new Set<() => void>();
  const sockets = new Set<Socket>();
  const users = new Map<string, UpstreamUser>();
  for (const [k, u] of options.tokens ?? []) users.set(`token:${k}`, u);
  for (const [k, u] of options.sessions ?? []) users.set(`session:${k}`, u);

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  /** Streams `bytes` of body in 64 KiB chunks, honouring backpressure; stops when the client goes. */
  const stream = async (res: ServerResponse, bytes: number): Promise<void> => {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
    streaming += 1;
    try {
      for (let left = bytes; left > 0 && !res.destroyed; left -= chunk.length) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        if (!res.write(piece)) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
      if (!res.destroyed) res.end();
    } finally {
      streaming -= 1;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    for (const [name, value] of Object.entries(req.headers)) {
      if (!forgedNames.has(name)) continue;
      const text = Array.isArray(value) ? value.join(', ') : String(value);
      if (text.includes('forged'))
        forged.push({ name, value: text.slice(0, 200), path: (req.url ?? '').slice(0, 200) });
    }
    for await (const _ of req) {
      // drain the body
    }
    if (stalled) {
      await new Promise<void>((resolve) => {
        held.add(resolve);
        res.once('close', () => {
          held.delete(resolve);
          resolve();
        });
      });
      if (res.destroyed) return;
    }
    const url = req.url ?? '/';
    if (url.startsWith('/api/users/self')) {
      const credential = credentialOf(req);
      if (credential) introspections.set(credential, (introspections.get(credential) ?? 0) + 1);
      const user = credential ? users.get(credential) : undefined;
      if (!user) {
        json(res, 401, { detail: 'Authentication credentials were not provided.' });
        return;
      }
      json(res, 200, {
        id: user.id,
        username: user.username,
        first_name: '',
        last_name: '',
        email: `${user.username}@example.test`,
        groups: [],
        is_staff: user.isStaff ?? false,
        is_superuser: false,
        is_active: true,
      });
      return;
    }
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    if (res.destroyed) return;
    if (url.startsWith('/api/stream')) {
      await stream(res, Number(new URL(url, 'http://x').searchParams.get('bytes') ?? 1024 * 1024));
      return;
    }
    json(res, 200, { ok: true, method: req.method, path: url.slice(0, 200) });
  };

  const server: Server = createServer((req, res) => {
    requests += 1;
    inFlight += 1;
    if (inFlight > peak) peak = inFlight;
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      inFlight -= 1;
    };
    res.once('close', leave);
    handle(req, res).catch(() => {
      if (!res.headersSent) json(res, 500, { detail: 'recording upstream failed' });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  let port = options.port ?? 0;
  const listen = async (): Promise<void> => {
    port = await listenOnLoopback(server, port);
  };
  await listen();

  const kill = async (): Promise<void> => {
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.destroy();
    for (const release of held) release();
    await closed;
  };

  return {
    get port() {
      return port;
    },
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get inFlight() {
      return inFlight;
    },
    get peak() {
      return peak;
    },
    get requests() {
      return requests;
    },
    get streaming() {
      return streaming;
    },
    forged,
    introspections,
    resetPeak() {
      peak = inFlight;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    stall(on) {
      stalled = on;
      if (!on) {
        for (const release of [...held]) release();
      }
    },
    kill,
    start: listen,
    async close() {
      stalled = false;
      if (server.listening) await kill();
    },
  };
}
