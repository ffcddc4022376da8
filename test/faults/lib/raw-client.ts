// Sends bytes an HTTP client would refuse to send, over a plain TCP socket, and reads back
// whatever answer comes: the status line, headers and body (by Content-Length, chunked, or
// until the server closes).
import { connect } from 'node:net';

export type RawOutcome =
  | { kind: 'answered'; status: number; headers: Record<string, string>; body: string }
  /** The server closed the connection without a single byte of response. */
  | { kind: 'closed' }
  /** The connection was reset before a complete status line arrived. */
  | { kind: 'reset'; code: string }
  /** Nothing complete arrived in time. */
  | { kind: 'timeout' }
  | { kind: 'connect-error'; code: string };

export interface RawOptions {
  /** @default 10000 */
  timeoutMs?: number;
  /** The request was HEAD: a response has no body whatever its headers say. */
  head?: boolean;
  /**
   * Written in pieces with this pause between them (a slow client). The last piece is
   * followed by nothing: the socket stays open until the answer or the timeout.
   */
  trickle?: { chunkBytes: number; pauseMs: number };
}

const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_RESPONSE = 1024 * 1024;

interface Head {
  status: number;
  headers: Record<string, string>;
  bodyStart: number;
}

function parseHead(buf: Buffer): Head | 'incomplete' | 'garbage' {
  const end = buf.indexOf(HEADER_END);
  if (end < 0) return buf.length > 64 * 1024 ? 'garbage' : 'incomplete';
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/\d\.\d (\d{3})/.exec(lines[0] ?? '');
  if (!m) return 'garbage';
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(m[1]), headers, bodyStart: end + 4 };
}

/** Whether `body` (after the head) holds the whole response body. */
function bodyComplete(head: Head, body: Buffer, isHead: boolean): boolean {
  if (isHead || head.status === 204 || head.status === 304) return true;
  if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) {
    return body.includes(Buffer.from('0\r\n\r\n')) && body.subarray(-5).toString('latin1') === '0\r\n\r\n';
  }
  const length = head.headers['content-length'];
  if (length !== undefined) return body.length >= Number(length);
  return false;
}

/**
 * Writes `bytes` to 127.0.0.1:`port` and waits for one complete HTTP response. Interim 1xx
 * responses (other than 101) are skipped.
 */
export function sendRaw(port: number, bytes: Buffer, options: RawOptions = {}): Promise<RawOutcome> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    let settled = false;
    let head: Head | undefined;
    const pieces: NodeJS.Timeout[] = [];
    const finish = (outcome: RawOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const t of pieces) clearTimeout(t);
      socket.destroy();
      resolve(outcome);
    };
    const answered = (): RawOutcome | undefined => {
      if (!head) return undefined;
      return {
        kind: 'answered',
        status: head.status,
        headers: head.headers,
        body: received.subarray(head.bodyStart, head.bodyStart + 4096).toString('utf8'),
      };
    };
    const timer = setTimeout(() => finish(answered() ?? { kind: 'timeout' }), timeoutMs);
    socket.on('connect', () => {
      if (!options.trickle) {
        socket.write(bytes);
        return;
      }
      const { chunkBytes, pauseMs } = options.trickle;
      for (let at = 0, n = 0; at < bytes.length; at += chunkBytes, n += 1) {
        const piece = bytes.subarray(at, at + chunkBytes);
        pieces.push(
          setTimeout(() => {
            if (!socket.destroyed && socket.writable) socket.write(piece);
          }, n * pauseMs),
        );
      }
    });
    socket.on('data', (chunk: Buffer) => {
      if (received.length < MAX_RESPONSE) received = Buffer.concat([received, chunk]);
      for (;;) {
        if (!head) {
          const parsed = parseHead(received);
          if (parsed === 'incomplete') return;
          if (parsed === 'garbage') {
            finish({ kind: 'answered', status: 0, headers: {}, body: received.toString('latin1', 0, 200) });
            return;
          }
          if (parsed.status >= 100 && parsed.status < 200 && parsed.status !== 101) {
            received = received.subarray(parsed.bodyStart);
            continue;
          }
          head = parsed;
        }
        if (bodyComplete(head, received.subarray(head.bodyStart), options.head === true)) {
          finish(answered() ?? { kind: 'timeout' });
        }
        return;
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      if (err.code === 'ECONNREFUSED') {
        finish({ kind: 'connect-error', code: err.code });
        return;
      }
      // A complete status line and headers count as an answer even if the body was cut short.
      finish(answered() ?? { kind: 'reset', code: err.code ?? 'ERROR' });
    });
    socket.on('close', () => {
      if (settled) return;
      if (head) finish(answered() ?? { kind: 'closed' });
      else finish(received.length > 0 ? { kind: 'reset', code: 'PARTIAL_HEAD' } : { kind: 'closed' });
    });
  });
}
