// The edge: what the gateway decides on must be what the upstream acts on, and no client can
// exhaust it. An encoded-path flood must not reach the upstream; a client holding thousands of
// idle connections must not starve the others (a gateway with a low open-file limit); a request
// whose Connection header would delete the credential the gateway validated is refused.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runLoad } from '../support/src/index.ts';
import { spawnGateway } from './lib/gateway-process.ts';
import { recordScenario } from './lib/report.ts';
import { type RecordingUpstream, startRecordingUpstream, type UpstreamUser } from './lib/upstream.ts';
import { gatewayStatus, sleep } from './lib/util.ts';

const tokens = new Map<string, UpstreamUser>([
  [randomBytes(20).toString('hex'), { id: 1, username: 'alice' }],
  [randomBytes(20).toString('hex'), { id: 2, username: 'bob' }],
]);
const [alice, bob] = [...tokens.keys()] as [string, string];
const bobSession = 'b'.repeat(32);

let upstream: RecordingUpstream;

beforeAll(async () => {
  upstream = await startRecordingUpstream({
    tokens,
    sessions: new Map([[bobSession, { id: 2, username: 'bob' }]]),
  });
});

afterAll(async () => {
  await upstream?.close();
});

/** Sends one raw request on a fresh socket; resolves with the status line. */
async function rawStatus(port: number, text: string, localAddress = '127.0.0.1'): Promise<string> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  socket.write(text);
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (c: string) => {
    received += c;
  });
  await Promise.race([once(socket, 'close'), sleep(5_000)]);
  socket.destroy();
  return received.split('\r\n')[0] ?? '';
}

test('encoded-path flood: answered at the edge, 0 upstream requests', async () => {
  const gateway = await spawnGateway({ gateway: { upstream: upstream.url, dbBudget: 8 } });
  try {
    const before = upstream.requests;
    const paths = [
      '/%61pi/tasks',
      '/api/t%61sks/1',
      '/%61%70%69/users/self',
      '/api%2Ftasks',
      '/api/x/..%2F..%2Ftasks',
    ];
    const report = await runLoad({
      target: gateway.url,
      concurrency: 32,
      maxRequests: 6_000,
      durationMs: 30_000,
      request: (i) => ({ method: 'GET', path: paths[i % paths.length] ?? '/' }),
    });
    const reached = upstream.requests - before;
    const statuses = report.byStatus as Record<string, number>;
    const survived =
      reached === 0 && report.lost === 0 && report.errors === 0 && (statuses['200'] ?? 0) === 0;
    recordScenario({
      group: 'abuse',
      scenario: 'encoded-path flood',
      fault: `${report.sent} requests on percent-encoded /api paths (encoded letters, encoded slashes, dot segments)`,
      survived,
      load: report,
      badInputs: report.sent,
      notes: `upstream requests ${reached}; answers ${JSON.stringify(statuses)}`,
    });
    expect(reached).toBe(0);
    expect(survived).toBe(true);
  } finally {
    await gateway.close();
  }
});

test('file-descriptor exhaustion: one address opens thousands of idle connections, others are served', async () => {
  // A low open-file limit, as on a default container: the connection caps must keep the
  // gateway's own descriptors (upstream, buffers) free and every other client served.
  const gateway = await spawnGateway({ gateway: { upstream: upstream.url, dbBudget: 8 }, fileLimit: 1024 });
  const held: Socket[] = [];
  try {
    const flood = 3_000;
    let refusedFlood = 0;
    await Promise.all(
      Array.from({ length: flood }, async () => {
        const s = connect({ port: gateway.port, host: '127.0.0.1' });
        s.on('error', () => undefined);
        s.setEncoding('latin1');
        s.on('data', (c: string) => {
          if (c.startsWith('HTTP/1.1 503')) refusedFlood += 1;
        });
        held.push(s);
        await Promise.race([once(s, 'connect'), sleep(5_000)]);
      }),
    );
    await sleep(500);
    // Other clients (another address) while the flood holds its connections: every one served.
    const others: string[] = [];
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; i < 25; i++) {
          const token = (w + i) % 2 ? alice : bob;
          others.push(
            await rawStatus(
              gateway.port,
              `GET /api/users/self HTTP/1.1\r\nHost: gw\r\nAuthorization: Token ${token}\r\nConnection: close\r\n\r\n`,
              '127.0.0.2',
            ),
          );
        }
      }),
    );
    const served = others.filter((o) => o.startsWith('HTTP/1.1 200')).length;
    const status = await gatewayStatus(gateway.adminUrl);
    const connections = status.connections;
    const upstreamErrors = status.requests.upstreamErrors;
    const survived =
      gateway.exit === undefined && served === others.length && upstreamErrors === 0 && refusedFlood > 0;
    recordScenario({
      group: 'abuse',
      scenario: 'fd exhaustion',
      fault: `${flood} idle connections from one address; open-file limit 1024`,
      survived,
      badInputs: flood,
      notes: `cap ${connections?.max} (per address 256); flood refused ${refusedFlood} (503 E_TOO_MANY_CONNECTIONS); another address: ${served} of ${others.length} served; upstream errors ${upstreamErrors}`,
    });
    expect(survived).toBe(true);
  } finally {
    for (const s of held) s.destroy();
    await gateway.close();
  }
});

test('credential and Connection mix: refused, or the validated identity is the one forwarded', async () => {
  const gateway = await spawnGateway({ gateway: { upstream: upstream.url, dbBudget: 8 } });
  try {
    const before = upstream.requests;
    const cases = [
      `Authorization: Token ${alice}\r\nCookie: sessionid=${bobSession}\r\nConnection: authorization`,
      `Authorization: Basic ${Buffer.from('alice:pw').toString('base64')}\r\nCookie: sessionid=${bobSession}\r\nConnection: cookie`,
      `Authorization: Token ${alice}\r\nConnection: keep-alive, Host`,
      `Authorization: Token ${alice}\r\nConnection: content-length\r\nContent-Length: 0`,
    ];
    const answers = await Promise.all(
      cases.map((h) => rawStatus(gateway.port, `GET /api/users/self HTTP/1.1\r\nHost: gw\r\n${h}\r\n\r\n`)),
    );
    const refused = answers.filter((a) => a.startsWith('HTTP/1.1 400')).length;
    const reached = upstream.requests - before;
    const survived = refused === cases.length && reached === 0;
    recordScenario({
      group: 'abuse',
      scenario: 'credential/Connection mix',
      fault:
        "Token or Basic plus another user's cookie, with Connection naming Authorization, Cookie, Host or Content-Length",
      survived,
      badInputs: cases.length,
      notes: `refused ${refused} of ${cases.length} with 400; upstream requests ${reached}`,
    });
    expect(survived).toBe(true);
  } finally {
    await gateway.close();
  }
});
