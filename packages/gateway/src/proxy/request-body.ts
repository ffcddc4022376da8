// Receiving a request body in full before the upstream is involved: memory up to a threshold,
// then an unlinked temp file, never more than `maxBytes` (413), never slower than the client
// deadline (408). The admission slot is taken only once this is done.
import type { IncomingMessage } from 'node:http';
import { Spool, SpoolFullError, type SpoolOptions } from './spool.js';
import { watchTransfer } from './transfer-watch.js';

/** Limits of {@link receiveBody}: the spool's, and the client's pace. */
export interface BodyLimits extends Omit<SpoolOptions, 'whenFull'> {
  readonly idleMs: number;
  readonly minRate: number;
}

/** Why a body could not be received. */
export class BodyError extends Error {
  override readonly name = 'BodyError';
  constructor(
    readonly code: 'E_BODY_TOO_LARGE' | 'E_CLIENT_TIMEOUT' | 'E_CLIENT_ABORTED',
    message: string,
  ) {
    super(message);
  }
}

/** True when the request has a body to read. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** A declared `Content-Length` over the limit: refuse before reading a byte. */
export function declaredTooLarge(req: IncomingMessage, maxBytes: number): boolean {
  const length = Number(req.headers['content-length']);
  return Number.isFinite(length) && length > maxBytes;
}

/**
 * Reads the whole body of `req` into a spool. Resolves with the spool (ended); rejects with a
 * {@link BodyError} (the spool is destroyed then).
 */
export async function receiveBody(req: IncomingMessage, limits: BodyLimits): Promise<Spool> {
  const { memoryBytes, maxBytes, tempDir } = limits;
  const spool = new Spool({ memoryBytes, maxBytes, whenFull: 'reject', tempDir });
  let writing = false;
  let fail: (error: unknown) => void = () => undefined;
  const stop = watchTransfer({
    progress: () => req.socket?.bytesRead ?? 0,
    // While a chunk goes to the temp file the gateway, not the client, is the slow side.
    gatewayWaiting: () => writing,
    idleMs: limits.idleMs,
    minRate: limits.minRate,
    onStall: (reason) =>
      fail(new BodyError('E_CLIENT_TIMEOUT', `request body ${reason === 'idle' ? 'stalled' : 'too slow'}`)),
  });
  let stored: Promise<void> = Promise.resolve();
  const onData = (chunk: Buffer): void => {
    writing = true;
    req.pause();
    stored = spool.write(chunk).then(() => {
      writing = false;
      req.resume();
    });
    stored.catch(fail);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      fail = reject;
      req.on('data', onData);
      // The last chunk may still be on its way to the temp file.
      req.once('end', () => stored.then(resolve, reject));
      req.once('error', reject);
      req.once('close', () => {
        if (!req.complete)
          reject(new BodyError('E_CLIENT_ABORTED', 'the client closed the connection mid-body'));
      });
    });
    spool.end();
    return spool;
  } catch (error) {
    req.off('data', onData);
    await spool.destroy();
    if (error instanceof BodyError) throw error;
    if (error instanceof SpoolFullError) {
      throw new BodyError('E_BODY_TOO_LARGE', `the request body is larger than ${limits.maxBytes} bytes`);
    }
    if (req.destroyed && !req.complete)
      throw new BodyError('E_CLIENT_ABORTED', 'the client closed the connection mid-body');
    throw error; // the temp file failed (disk full, ...): the gateway's own error
  } finally {
    stop();
  }
}
