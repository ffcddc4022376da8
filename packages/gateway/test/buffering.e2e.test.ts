import { once } from 'node:events';
import { readdir, readlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessLogEntry, createGateway, type Gateway, type GatewayOptions } from '../src/index.ts';
import { memoryLogger, recordRequests } from './helpers.ts';

// A slot stands for the upstream's work: a client that trickles its body or never reads its
// answer must not hold one. A real Node upstream that counts what reaches it, and raw sockets for
// clients that misbehave on purpose.

let upstream: Server;
let upstreamUrl: string;
let upstreamRequests = 0;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    upstreamRequests += 1;
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/big') {
      const size = Number(url.searchParams.get('size'));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      const block = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      const more = (): void => {
        while (sent < size) {
          const n = Math.min(block.length, size - sent);
          sent += n;
          if (!res.write(n === block.length ? block : block.subarray(0, n)))
            return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return;
    }
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, bytes }));
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

function gatewayFor(options: Omit<GatewayOptions, 'upstream' | 'listen' | 'logger'>): {
  readonly gateway: Gateway;
  readonly url: string;
  readonly port: number;
  readonly log: AccessLogEntry[];
} {
  let gateway: Gateway | undefined;
  let port = 0;
  let log: AccessLogEntry[] = [];
  beforeAll(async () => {
    gateway = createGateway({
      ...options,
      upstream: upstreamUrl,
      listen: '127.0.0.1:0',
      logger: memoryLogger().logger,
    });
    log = recordRequests(gateway);
    port = (await gateway.listen()).port;
  });
  afterAll(async () => {
    await gateway?.close(500);
  });
  return {
    get gateway(): Gateway {
      if (!gateway) throw new Error('the gateway starts in beforeAll');
      return gateway;
    },
    get port() {
      return port;
    },
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get log() {
      return log;
    },
  };
}

/** A raw client: sends `head`, then whatever the test writes; collects what comes back. */
async function client(port: number, head: string): Promise<{ socket: Socket; received: () => string }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    if (received.length < 4096) received += chunk.slice(0, 4096);
  });
  socket.on('error', () => undefined);
  socket.write(head);
  return { socket, received: () => received };
}

/** Temp files this process holds open (spools unlink theirs at once: they show as deleted). */
async function openSpoolFiles(): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.includes('spool-') && target.endsWith('(deleted)')) n += 1;
  }
  return n;
}

describe('request buffering (default)', () => {
  const gw = gatewayFor({
    dbBudget: 2,
    clientBodyTimeoutMs: 1_000,
    clientMinRate: 1024,
    maxBodySize: 64 * 1024,
  });

  it('lets trickling bodies hold no slot, and cuts them at the minimum rate', async () => {
    const before = upstreamRequests;
    const tricklers = await Promise.all(
      [1, 2, 3].map(() =>
        client(gw.port, 'POST /api/auth/login HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n'),
      ),
    );
    const trickle = setInterval(() => {
      for (const t of tricklers) t.socket.write('x');
    }, 100);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Three bodies are arriving on a budget of two, and no slot is taken.
      expect(gw.gateway.status().admission.inFlight).toBe(0);
      const ok = await fetch(`${gw.url}/echo`, { method: 'POST', body: 'hello' });
      expect(ok.status).toBe(200);
      await ok.arrayBuffer();
      // It got a slot at once (had the bodies held both, it would wait until one was cut).
      await waitFor(() => gw.log.some((e) => e.route === '/echo'), { timeoutMs: 5_000 });
      expect(gw.log.find((e) => e.route === '/echo')?.queueWaitMs).toBeLessThan(100);
      // Cut once the timeout has passed at a rate far below 1 KiB/s.
      await waitFor(() => tricklers.every((t) => /^HTTP\/1\.1 408 /.test(t.received())), {
        timeoutMs: 5_000,
      });
      expect(tricklers[0]?.received()).toContain('E_CLIENT_TIMEOUT');
      expect(upstreamRequests - before).toBe(1);
    } finally {
      clearInterval(trickle);
      for (const t of tricklers) t.socket.destroy();
    }
  });

  it('answers 413 to a body over maxBodySize, declared or chunked, without the upstream', async () => {
    const before = upstreamRequests;
    const declared = await client(
      gw.port,
      'POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\n',
    );
    await waitFor(() => declared.received().startsWith('HTTP/1.1 413'), { timeoutMs: 5_000 });
    const chunked = await fetch(`${gw.url}/up`, {
      method: 'POST',
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 4; i++) controller.enqueue(new Uint8Array(32 * 1024));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit).catch(() => undefined);
    expect(chunked?.status).toBe(413);
    expect(upstreamRequests).toBe(before);
    declared.socket.destroy();
  });
});

describe('response buffering (default)', () => {
  const gw = gatewayFor({ dbBudget: 2, clientSendTimeoutMs: 10_000, bufferMemory: 64 * 1024 });

  it('frees the slots of clients that never read, keeps their answers on disk, then cuts them', {
    timeout: 60_000,
  }, async () => {
    const first = upstreamRequests;
    const readers = await Promise.all(
      [1, 2, 3].map(() => client(gw.port, `GET /big?size=${12 * 1024 * 1024} HTTP/1.1\r\nHost: gw\r\n\r\n`)),
    );
    for (const r of readers) r.socket.pause();
    try {
      await waitFor(() => upstreamRequests - first === 3, { timeoutMs: 10_000 });
      // The upstream sends its 16 MB at its own pace into the spools; the slots come back.
      await waitFor(() => gw.gateway.status().admission.inFlight === 0, { timeoutMs: 30_000 });
      // Not one of them has been answered in full: they hold no slot, only their spools.
      expect(gw.log).toEqual([]);
      expect(await openSpoolFiles()).toBeGreaterThanOrEqual(1);
      const ok = await fetch(`${gw.url}/echo`, { method: 'POST', body: 'hi' });
      expect(ok.status).toBe(200);
      // Nobody reads: after the send timeout the connections are cut and their files freed.
      await waitFor(() => gw.log.filter((e) => e.error === 'E_CLIENT_TIMEOUT').length === 3, {
        timeoutMs: 30_000,
      });
      await waitFor(async () => (await openSpoolFiles()) === 0, { timeoutMs: 5_000 });
    } finally {
      for (const r of readers) r.socket.destroy();
    }
  });
});

describe('without buffering', () => {
  const gw = gatewayFor({
    dbBudget: 1,
    requestBuffering: false,
    responseBuffering: false,
    clientBodyTimeoutMs: 800,
    clientSendTimeoutMs: 800,
    clientMinRate: 1024,
  });

  it('holds the slot while streaming, and never past the client deadline', async () => {
    const slow = await client(gw.port, `GET /big?size=${16 * 1024 * 1024} HTTP/1.1\r\nHost: gw\r\n\r\n`);
    slow.socket.pause();
    await waitFor(() => gw.gateway.status().admission.inFlight === 1, { timeoutMs: 5_000 });
    const started = performance.now();
    await waitFor(() => gw.gateway.status().admission.inFlight === 0, { timeoutMs: 5_000 });
    expect(performance.now() - started).toBeLessThan(3_000);
    slow.socket.destroy();

    const trickler = await client(gw.port, 'POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n');
    const trickle = setInterval(() => trickler.socket.write('x'), 100);
    try {
      await waitFor(() => gw.gateway.status().admission.inFlight === 1, { timeoutMs: 5_000 });
      await waitFor(() => gw.gateway.status().admission.inFlight === 0, { timeoutMs: 5_000 });
      await waitFor(() => trickler.received().startsWith('HTTP/1.1 408'), { timeoutMs: 5_000 });
    } finally {
      clearInterval(trickle);
      trickler.socket.destroy();
    }
  });
});
