import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { type DjangoFixture, freePort, startDjango, waitFor } from '@sluice/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayChild, memoryOf, repoRoot, spawnGateway } from './helpers.ts';

// The CLI as a child process (src/cli.ts through tsx) in front of the real Django fixture.
let django: DjangoFixture;
const children: GatewayChild[] = [];

beforeAll(async () => {
  django = await startDjango({ label: 'gw_cli', threads: 8 });
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await django?.stop();
});

async function start(args: string[]): Promise<GatewayChild> {
  const child = await spawnGateway(
    ['--upstream', django.url, '--public-path', '/api/stream', ...args],
    await freePort(),
  );
  children.push(child);
  return child;
}

const MB = 1024 * 1024;

/** 100 MB produced chunk by chunk: never held in memory at once. */
function patternBody(total: number, chunk = 256 * 1024): ReadableStream<Uint8Array> {
  const block = new Uint8Array(chunk);
  for (let i = 0; i < chunk; i++) block[i] = i % 256;
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) {
        controller.close();
        return;
      }
      const n = Math.min(chunk, total - sent);
      controller.enqueue(n === chunk ? block.slice() : block.slice(0, n));
      sent += n;
    },
  });
}

describe('sluice-gateway CLI', () => {
  it('says at once where it listens, what it forwards to and where its status page is', async () => {
    const gw = await start([]);
    // spawnGateway returned once /healthz answered: the start-up line was already out.
    const line =
      gw
        .stdout()
        .split('\n')
        .find((l) => l.startsWith('sluice-gateway ')) ?? '';
    expect(line).toMatch(
      /^sluice-gateway \S+ on http:\/\/127\.0\.0\.1:\d+ -> http:\/\/127\.0\.0\.1:\d+ \(embedded: /,
    );
    expect(line).toContain(`; status ${gw.adminUrl}/sluice/status`);
    // The listening log line is flushed too, not held in pino's buffer until 4 KiB accumulate.
    expect(gw.stdout()).toContain('"msg":"sluice-gateway listening"');
    gw.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
  });

  it('answers a taken port with one plain line and exit 1', async () => {
    const gw = await start([]);
    const port = new URL(gw.url).port;
    const result = spawnSync(
      process.execPath,
      [
        '--conditions=source',
        '--import',
        'tsx',
        'packages/gateway/src/cli.ts',
        '--',
        '--listen',
        `127.0.0.1:${port}`,
        '--admin-listen',
        'off',
      ],
      { cwd: repoRoot, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8' },
    );
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(
      `sluice-gateway: cannot listen on 127.0.0.1:${port}: the address is in use (EADDRINUSE). Pass --listen host:port (and --admin-listen host:port or off).`,
    );
    expect(result.stdout).toBe('');
    gw.kill('SIGTERM');
  });

  it('prints every bad flag with its reason and exits 2', () => {
    const result = spawnSync(
      process.execPath,
      [
        '--conditions=source',
        '--import',
        'tsx',
        'packages/gateway/src/cli.ts',
        '--listen',
        'nowhere',
        '--queue-max',
        '-3',
        '--bogus',
      ],
      { cwd: repoRoot, env: { PATH: process.env.PATH ?? '', SLUICE_UPSTREAM: 'ftp://x' }, encoding: 'utf8' },
    );
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('listen (--listen) = "nowhere": expected host:port');
    expect(result.stderr).toContain('queueMax (--queue-max) = "-3": must be between 0 and');
    expect(result.stderr).toContain('(flag) (--bogus)');
    expect(result.stderr).toContain('upstream (SLUICE_UPSTREAM) = "ftp://x"');
  });

  it('buffers a 100 MB upload and a 100 MB download through temp files with bounded memory', async () => {
    // A small memory threshold: nearly everything goes through the (unlinked) temp files.
    const gw = await start(['--buffer-memory', '16k']);
    const pid = gw.child.pid ?? 0;
    // Warm up (JIT, connection pools), then take the baseline.
    for (let i = 0; i < 20; i++)
      await (await fetch(`${gw.url}/api/stream/download?size=65536`)).arrayBuffer();
    const before = await memoryOf(pid);
    // Sample the resident set while the transfers run (VmHWM would include start-up's peak).
    let peak = before.rss;
    const sampler = setInterval(() => {
      void memoryOf(pid).then(
        (m) => {
          peak = Math.max(peak, m.rss);
        },
        () => undefined,
      );
    }, 20);

    const size = 100 * MB;
    const expected = createHash('sha256');
    const block = new Uint8Array(256 * 1024);
    for (let i = 0; i < block.length; i++) block[i] = i % 256;
    for (let sent = 0; sent < size; sent += block.length) expected.update(block);
    const upload = await fetch(`${gw.url}/api/stream/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: patternBody(size),
      duplex: 'half',
    } as RequestInit);
    expect(upload.status).toBe(200);
    const uploaded = (await upload.json()) as { bytes: number; sha256: string; chunked: boolean };
    expect(uploaded.bytes).toBe(size);
    expect(uploaded.sha256).toBe(expected.digest('hex'));
    expect(uploaded.chunked).toBe(false);

    const download = await fetch(`${gw.url}/api/stream/download?size=${size}`);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-length')).toBe(String(size));
    let received = 0;
    let intact = true;
    const reader = download.body?.getReader();
    for (;;) {
      const { done, value } = (await reader?.read()) ?? { done: true, value: undefined };
      if (done || !value) break;
      if (value[0] !== received % 256) intact = false;
      received += value.byteLength;
    }
    expect(received).toBe(size);
    expect(intact).toBe(true);

    clearInterval(sampler);
    const growth = peak - before.rss;
    // 200 MB went through; holding either body in memory would add at least 100 MB. What remains
    // is garbage not yet collected (measured 12-30 MB on a 2-core machine).
    expect(growth).toBeLessThan(64 * MB);
    gw.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
  }, 90_000);

  it('drains on SIGTERM: in-flight requests finish, queued ones get 503, exit 0', async () => {
    const gw = await start(['--db-budget', '1', '--shutdown-grace', '10s']);
    // One slow request holds the only slot: 10 chunks, 500 ms apart, so it is surely still running
    // when SIGTERM comes on a loaded machine, and surely done within the 10 s grace.
    const slow = fetch(`${gw.url}/api/stream/download?size=20&chunk=2&delayMs=500`).then(async (res) => ({
      status: res.status,
      bytes: (await res.arrayBuffer()).byteLength,
    }));
    slow.catch(() => {}); // awaited below; if an assertion fails first, afterAll's kill ends it
    await waitFor(async () => {
      const s = (await (await fetch(`${gw.adminUrl}/sluice/status.json`)).json()) as {
        admission: { inFlight: number };
      };
      return s.admission.inFlight === 1;
    });
    const queued = fetch(`${gw.url}/api/server/about`).then(async (res) => ({
      status: res.status,
      body: (await res.json()) as { code?: string },
    }));
    queued.catch(() => {}); // awaited below; if an assertion fails first, afterAll's kill ends it
    await waitFor(async () => {
      const s = (await (await fetch(`${gw.adminUrl}/sluice/status.json`)).json()) as {
        admission: { queued: number };
      };
      return s.admission.queued === 1;
    });
    gw.kill('SIGTERM');
    const q = await queued;
    expect(q.status).toBe(503);
    expect(q.body.code).toBe('E_CLOSED');
    // The gateway stopped accepting connections while the slow request is still running.
    await waitFor(async () => {
      try {
        await fetch(`${gw.url}/healthz`, { signal: AbortSignal.timeout(500) });
        return false;
      } catch {
        return true;
      }
    });
    const s = await slow;
    expect(s).toEqual({ status: 200, bytes: 20 });
    expect(await gw.exited).toBe(0);
    const lines = gw
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; completed?: number; cutOff?: number });
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['draining', 'sluice-gateway closed']));
    expect(lines.find((l) => l.msg === 'sluice-gateway closed')).toMatchObject({ cutOff: 0 });
  }, 60_000);
});
