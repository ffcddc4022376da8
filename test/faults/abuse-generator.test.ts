// Checks the abuse generator's premise, so the fault suite's "zero database queries for
// malformed credentials" means something: every request it makes that a server can parse
// carries either no credential or one @sluice/django calls malformed. Runs in the root
// `vitest run` (fast, no gateway needed).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { extractCredential } from '../../packages/django/src/index.ts';
import { abuseCase, abuseCategories, abuseVariantCount, forgedIdentityHeaders } from './lib/abuse.ts';
import { sendRaw } from './lib/raw-client.ts';

let server: Server;
let port: number;
const parsed: { index: number; headers: IncomingHttpHeaders }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const index = Number(req.headers['x-case'] ?? -1);
    parsed.push({ index, headers: req.headers });
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  server.on('connect', (_req, socket) =>
    socket.end('HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n'),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

test('cases are deterministic and cover every category and variant', () => {
  const a = abuseCase(1234, 'h:1');
  const b = abuseCase(1234, 'h:1');
  expect(a.bytes.equals(b.bytes)).toBe(true);
  const seen = new Set<string>();
  const categories = new Set<string>();
  for (let i = 0; i < abuseVariantCount * abuseCategories.length; i += 1) {
    const c = abuseCase(i, 'h:1');
    seen.add(`${c.category}/${c.variant}`);
    categories.add(c.category);
  }
  expect(categories.size).toBe(abuseCategories.length);
  expect(seen.size).toBe(abuseVariantCount);
});

test('every credential a parser lets through is malformed or absent', async () => {
  const host = `127.0.0.1:${port}`;
  const outcomes = new Map<string, string>();
  for (let i = 0; i < abuseVariantCount * abuseCategories.length; i += 1) {
    const c = abuseCase(i, host);
    const key = `${c.category}/${c.variant}`;
    if (outcomes.has(key)) continue;
    const before = parsed.length;
    const outcome = await sendRaw(port, c.bytes, { timeoutMs: 5_000, head: c.head });
    outcomes.set(key, outcome.kind);
    for (const p of parsed.slice(before)) {
      const credential = extractCredential(p.headers);
      if (credential !== null && credential.kind !== 'malformed') {
        throw new Error(`${key} carries a well-formed ${credential.kind} credential`);
      }
    }
  }
  // a plain Node server answers every case (the gateway must do at least as well)
  expect([...outcomes].filter(([, kind]) => kind !== 'answered')).toEqual([]);
});

test('forged identity cases carry the marker in a header the recording upstream watches', () => {
  const names = new Set(forgedIdentityHeaders.map((n) => n.toLowerCase()));
  let forged = 0;
  for (let i = 0; i < abuseVariantCount * abuseCategories.length; i += 1) {
    const c = abuseCase(i, 'h:1');
    if (c.category !== 'forged-identity') continue;
    const text = c.bytes.toString('latin1').toLowerCase();
    expect(text).toContain(`forged-${i}`);
    expect([...names].some((n) => text.includes(n) || text.includes(n.replaceAll('-', '_')))).toBe(true);
    forged += 1;
  }
  expect(forged).toBeGreaterThan(0);
});
