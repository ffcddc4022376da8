// Client connections: a cap on all of them (kept under the open-file limit, so upstream, database
// and Redis sockets and buffer files always find a descriptor), a cap per address, and idle
// keep-alive connections closed early when the cap comes near. A refused connection gets a short
// 503 and is closed; it is the gateway's own refusal, never counted as an upstream failure.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { peerAddress } from './edge.js';

/** Figures of the connection guard. */
export type ConnectionFigures = ReturnType<ReturnType<typeof guardConnections>>;

/** The soft open-file limit of this process (Node raises it to the hard limit at start). */
export function openFileLimit(): number {
  try {
    const soft = Number(/^Max open files +(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]);
    return soft > 0 ? soft : 1024;
  } catch {
    return 1024;
  }
}

/**
 * The default connection cap: half of what the open-file limit leaves after the upstream
 * connections, the database pool and a margin (the other half is for buffer files).
 */
export function defaultMaxConnections(upstreamConnections: number, poolMax: number): number {
  return Math.max(16, Math.floor((openFileLimit() - upstreamConnections - poolMax - 64) / 2));
}

const REFUSAL_BODY = JSON.stringify({
  detail: 'Too many connections; retry shortly.',
  code: 'E_TOO_MANY_CONNECTIONS',
  message: 'Too many connections; retry shortly.',
});
const REFUSAL =
  'HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n' +
  `content-length: ${Buffer.byteLength(REFUSAL_BODY)}\r\nretry-after: 1\r\ncache-control: no-store\r\n` +
  `connection: close\r\n\r\n${REFUSAL_BODY}`;

/** Guards `server`'s connections; returns a reader of its figures. */
export function guardConnections(
  server: Server,
  limits: {
    readonly max: number;
    readonly perClient: number;
    /** Addresses the per-address cap does not apply to: trusted proxies, which carry many clients. */
    readonly exempt?: ((address: string) => boolean) | undefined;
  },
) {
  const byClient = new Map<string, number>();
  /** Connections refused since start, by cap. */
  const refused = { total: 0, perClient: 0 };
  let open = 0;
  let lastSweep = 0;
  // The guard stands in front of the HTTP server's own connection listener: a refused socket is
  // never parsed, so nothing but the refusal is ever written to it.
  const http = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const address = peerAddress(socket);
    const mine = byClient.get(address) ?? 0;
    if (open >= limits.max || (mine >= limits.perClient && !limits.exempt?.(address))) {
      if (open >= limits.max) refused.total += 1;
      else refused.perClient += 1;
      socket.on('error', () => socket.destroy());
      socket.end(REFUSAL, () => socket.destroy());
      return;
    }
    open += 1;
    byClient.set(address, mine + 1);
    for (const listener of http) listener.call(server, socket);
    socket.once('close', () => {
      open -= 1;
      const n = (byClient.get(address) ?? 1) - 1;
      if (n > 0) byClient.set(address, n);
      else byClient.delete(address);
    });
    // Close to the cap: idle keep-alive connections make room (at most once a second).
    const now = performance.now();
    if (open >= limits.max * 0.9 && now - lastSweep > 1_000) {
      lastSweep = now;
      server.closeIdleConnections();
    }
  });
  return () => ({ open, max: limits.max, perClientMax: limits.perClient, refused: { ...refused } });
}
