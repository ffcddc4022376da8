// A TCP relay in front of the real upstream (the Django fixture) that the suite can kill,
// start again on the same port, or stall. To the gateway, `kill()` looks exactly like the
// upstream process dying (open connections reset, new ones refused) and `stall(true)` like an
// upstream that stops answering, while Django itself keeps running.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { listenOnLoopback } from './util.ts';

export interface TcpProxy {
  readonly port: number;
  readonly url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Resets every connection and stops listening: connection refused from now on. */
  kill(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /**
   * While stalled, nothing the upstream sends is passed on (requests still reach it); bytes held
   * are dropped when the stall ends and the connection is reset, as a hung server's would be.
   */
  stall(on: boolean): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const pairs = new Set<{ client: Socket; upstream: Socket; stalled: boolean }>();
  let stalled = false;
  let connections = 0;
  let port = 0;

  const server: Server = createServer((client) => {
    connections += 1;
    const upstream = connect({ host: targetHost, port: targetPort });
    const pair = { client, upstream, stalled: false };
    pairs.add(pair);
    client.on('data', (chunk) => {
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (chunk) => {
      if (stalled) {
        pair.stalled = true;
        return;
      }
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('end', () => (pair.stalled ? end() : upstream.end()));
    upstream.on('end', () => (pair.stalled ? undefined : client.end()));
    client.on('close', end);
    upstream.on('close', () => {
      if (!pair.stalled) end();
    });
    client.on('error', end);
    upstream.on('error', end);
  });

  const listen = async (): Promise<void> => {
    port = await listenOnLoopback(server, port);
  };
  await listen();

  const kill = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const { client, upstream } of pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    pairs.clear();
    await closed;
  };

  return {
    get port() {
      return port;
    },
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get connections() {
      return connections;
    },
    kill,
    start: listen,
    stall(on) {
      if (stalled && !on) {
        // connections that stalled mid-response cannot be resumed cleanly: reset them
        for (const pair of [...pairs]) {
          if (!pair.stalled) continue;
          pairs.delete(pair);
          pair.client.resetAndDestroy();
          pair.upstream.destroy();
        }
      }
      stalled = on;
    },
    close: kill,
  };
}
