import { once } from 'node:events';
import http, { type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { createPool, type SluicePool } from '@sluice/pool';
import { type DjangoFixture, type OwnRedis, startDjango, startOwnRedis, waitFor } from '@sluice/test-support';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSessionCache,
  djangoDatabaseValidator,
  type SessionCache,
  sessionCache,
} from '../src/index.ts';
import { get } from './http-client.ts';

// One run against a private Redis the test kills and restarts, with real Django sessions and
// tokens; afterwards every Redis key and value, and every command Redis received, is searched
// for the credentials used.
let django: DjangoFixture;
let redis: OwnRedis;
let pool: SluicePool;
let server: Server;
let url: string;
let cache: SessionCache;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const commands: string[] = [];
const monitors: Socket[] = [];

/**
 * Records every command Redis receives (MONITOR) over a plain socket: ioredis's monitor() can
 * throw "Command queue state error" when monitored lines arrive in the same chunk as MONITOR's
 * OK, which happens when it starts during a burst of traffic (right after the restart).
 */
async function startMonitor(): Promise<void> {
  const { port } = new URL(redis.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.on('error', () => {}); // the kill closes it; what it saw is kept
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\r\n');
    pending = lines.pop() ?? '';
    // each monitored command is one '+<time> [<db> <client>] "<cmd>" "<arg>" ...' line
    for (const line of lines) if (line.startsWith('+') && line !== '+OK') commands.push(line);
  });
  await once(socket, 'connect');
  socket.write('MONITOR\r\n');
  monitors.push(socket);
}

beforeAll(async () => {
  [django, redis] = await Promise.all([startDjango({ label: 'sc_outage' }), startOwnRedis()]);
  await startMonitor();
  pool = createPool({
    connectionString: django.database.url,
    max: 4,
    applicationName: 'sluice-session-cache-test',
  });
  cache = createSessionCache({
    validator: djangoDatabaseValidator({ pool, secretKey: django.secretKey }),
    pepper: 'outage test pepper, at least 32 b',
    env: {},
    l1: false, // every request goes through L2, so the outage is felt by every request
    l2: {
      redis: redis.url,
      prefix: 'outage:',
      timeoutMs: 200,
      failureThreshold: 1,
      cooldownMs: 100,
      lock: true,
    },
  });
  const app = express();
  app.use(sessionCache({ cache }));
  app.get('/api/whoami', (req, res) => res.json({ id: req.sluice?.identity?.userId }));
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/whoami`;
}, 120_000);

afterAll(async () => {
  agent.destroy();
  for (const m of monitors) m.destroy();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await cache?.close();
  await pool?.close();
  await redis?.stop();
  await django?.stop();
});

/** Every key and every value in the Redis, whatever its type. */
async function scanAll(): Promise<string[]> {
  const scan = new Redis(redis.url);
  scan.on('error', () => {}); // failures surface through the commands
  try {
    const seen: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await scan.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        seen.push(key);
        const type = await scan.type(key);
        const value =
          type === 'string'
            ? await scan.get(key)
            : type === 'hash'
              ? JSON.stringify(await scan.hgetall(key))
              : type === 'list'
                ? JSON.stringify(await scan.lrange(key, 0, -1))
                : type === 'set'
                  ? JSON.stringify(await scan.smembers(key))
                  : type === 'zset'
                    ? JSON.stringify(await scan.zrange(key, 0, -1))
                    : JSON.stringify(await scan.call('XRANGE', key, '-', '+'));
        seen.push(value ?? '');
      }
    } while (cursor !== '0');
    return seen;
  } finally {
    scan.disconnect();
  }
}

describe('Redis outage with real Django credentials', () => {
  it('zero failed requests while Redis is killed; L2 is used again once it is back; no credential ever reaches Redis', async () => {
    await waitFor(() => cache.l2State === 'up' && cache.busState === 'subscribed', { intervalMs: 5 });
    const user = await django.login('user');
    const staff = await django.login('staff');
    const leaver = await django.login('staff');
    const valid: Record<string, string>[] = [
      { cookie: user.cookie },
      { authorization: `Token ${user.token}` },
      { cookie: staff.cookie },
      { authorization: `Token ${staff.token}` },
    ];
    const invalidToken = 'f'.repeat(40);
    const invalidSession = 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz';
    const invalid: Record<string, string>[] = [
      { authorization: `Token ${invalidToken}` },
      { cookie: `sessionid=${invalidSession}` },
    ];
    const secrets = [
      user.sessionId,
      user.token,
      staff.sessionId,
      staff.token,
      leaver.sessionId,
      invalidToken,
      invalidSession,
    ];

    let failed = 0;
    let done = 0;
    let stop = false;
    const worker = async (w: number) => {
      for (let i = w; !stop; i += 1) {
        const isValid = i % 4 !== 3;
        const headers = isValid
          ? (valid[i % valid.length] as Record<string, string>)
          : (invalid[i % invalid.length] as Record<string, string>);
        try {
          const r = await get(agent, url, headers);
          if (r.status !== (isValid ? 200 : 401)) failed += 1;
        } catch {
          failed += 1;
        }
        done += 1;
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));

    let scanned: string[] = [];
    try {
      await waitFor(() => done > 100, { what: 'traffic before the outage', timeoutMs: 20_000 });
      // a logout while Redis is up: invalidation goes through DEL + PUBLISH
      await fetch(`${django.url}/api/auth/logout`, { method: 'POST', headers: leaver.headers });
      await cache.invalidate({ kind: 'session', sessionKey: leaver.sessionId });

      scanned = await scanAll(); // what Redis holds before it loses everything
      // Waits on the state, not on the events: on a loaded machine a slow command can already have
      // taken L2 down (timeout 200 ms) before the kill, and then no new 'l2:down' comes.
      await redis.kill();
      await waitFor(() => cache.l2State !== 'up', { what: 'L2 down after the kill', timeoutMs: 20_000 });
      const atKill = done;
      await waitFor(() => done > atKill + 100, { what: 'traffic during the outage', timeoutMs: 20_000 });
      const l2HitsDuringOutage = cache.stats().l2Hits;

      await redis.start();
      await startMonitor();
      await waitFor(() => cache.l2State === 'up', { what: 'L2 up after the restart', timeoutMs: 20_000 });
      await waitFor(() => cache.stats().l2Hits > l2HitsDuringOutage + 50, {
        what: 'L2 hits after the restart',
        timeoutMs: 20_000,
      });
    } finally {
      // the workers end however the waits went, so a failure never leaves them running
      stop = true;
      await Promise.all(workers);
    }

    expect(failed).toBe(0);
    // L2 went down with the kill (waited for above); whether a command was in flight to fail at
    // that moment, and so counted in l2Errors, depends on the machine's load.
    expect(commands.length).toBeGreaterThan(50);

    expect(scanned.length).toBeGreaterThan(0);
    scanned.push(...(await scanAll()));
    for (const secret of secrets) {
      expect(scanned.filter((v) => v.includes(secret))).toEqual([]);
      expect(commands.filter((c) => c.includes(secret))).toEqual([]);
    }
  }, 90_000);
});
