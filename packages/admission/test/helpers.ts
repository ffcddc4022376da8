import {
  Agent,
  type ClientRequest,
  createServer,
  type RequestListener,
  request,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';

// Small test helpers shared by this package's suites.

export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run (one macrotask turn, twice to be safe). */
export async function flush(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
}

/** Captures how a promise settles without an unhandled rejection. */
export function settle<T>(p: Promise<T>): {
  readonly state: 'pending' | 'resolved' | 'rejected';
  value?: T;
  error?: unknown;
} {
  const out: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = {
    state: 'pending',
  };
  p.then(
    (value) => {
      out.state = 'resolved';
      out.value = value;
    },
    (error: unknown) => {
      out.state = 'rejected';
      out.error = error;
    },
  );
  return out;
}

export interface Listening {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `handler` (an Express app or a plain listener) on a free port of 127.0.0.1. */
export async function listen(handler: RequestListener, backlog = 2048): Promise<Listening> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog }, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An agent without keep-alive or socket limit, so every request is its own connection. */
export const looseAgent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });

/**
 * A GET over a fresh connection; resolves with the whole reply. The promise is marked handled:
 * a test that fails before awaiting a request it started closes the server, and that request's
 * rejection must not surface as an unhandled one after the test (awaiting it still throws).
 */
export function get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  const reply = new Promise<Reply>((resolve, reject) => {
    const req = request(url, { agent: looseAgent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  reply.catch(() => {});
  return reply;
}

/** Starts a GET and returns the request, to be destroyed later (a client that goes away). */
export function open(url: string, headers: Record<string, string> = {}): ClientRequest {
  const req = request(url, { agent: looseAgent, headers });
  req.on('error', () => {});
  req.on('response', (res) => res.resume());
  req.end();
  return req;
}
