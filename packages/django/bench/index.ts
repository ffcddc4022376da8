// `pnpm bench django`: loadSessionData beside a baseline that does only the unavoidable work with
// Node's primitives (createHmac with the derived key precomputed, base64url, inflateSync,
// JSON.parse) on the same inputs; then readSessionDataUnverified, dumpSessionData and
// extractCredential. Pure computation, no I/O. Prints a markdown table.
import { createHash, createHmac } from 'node:crypto';
import { deflateSync, inflateSync } from 'node:zlib';
import { Bench } from 'tinybench';
import {
  DEFAULT_SESSION_SALT,
  dumpSessionData,
  extractCredential,
  loadSessionData,
  readSessionDataUnverified,
} from '../src/index.ts';

const secretKey = 'bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz';
const now = () => 1_700_000_000_000;

/** A small session: zlib would not make it shorter, so Django stores it uncompressed. */
const smallSession = { django_language: 'en', _auth_user_id: '42' };
/** A logged-in session as django.contrib.auth.login() leaves it (Django stores it compressed). */
const authSession = {
  _auth_user_id: '42',
  _auth_user_backend: 'django.contrib.auth.backends.ModelBackend',
  _auth_user_hash: 'c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2',
};
/** A session with some application state (about 2 KB of JSON: Django stores it compressed). */
const richSession = {
  ...authSession,
  django_language: 'en',
  recent_tasks: Array.from({ length: 40 }, (_, i) => ({
    id: 1000 + i,
    name: `task-${i}`,
    status: 'completed',
  })),
};

const plain = dumpSessionData(smallSession, { secretKey, now });
const auth = dumpSessionData(authSession, { secretKey, now });
const compressed = dumpSessionData(richSession, { secretKey, now });
if (plain.startsWith('.') || !auth.startsWith('.') || !compressed.startsWith('.')) {
  throw new Error('bench inputs are not as intended');
}

const signerKey = createHash('sha256').update(`${DEFAULT_SESSION_SALT}signer${secretKey}`).digest();

/** The least any decoder must do: split, HMAC, compare, base64, inflate, JSON.parse. */
function rawLoad(data: string): unknown {
  const sigSep = data.lastIndexOf(':');
  const value = data.slice(0, sigSep);
  const expected = createHmac('sha256', signerKey).update(value).digest('base64url');
  if (expected !== data.slice(sigSep + 1)) throw new Error('bad signature');
  const payload = value.slice(0, value.lastIndexOf(':'));
  const isCompressed = payload.startsWith('.');
  let bytes = Buffer.from(isCompressed ? payload.slice(1) : payload, 'base64url');
  if (isCompressed) bytes = inflateSync(bytes);
  return JSON.parse(bytes.toString('latin1'));
}

/** The least an encoder must do with Node's own zlib (whose output differs from Django's). */
function rawDump(session: unknown): string {
  const json = Buffer.from(JSON.stringify(session), 'latin1');
  const deflated = deflateSync(json);
  const payload =
    deflated.length < json.length - 1 ? `.${deflated.toString('base64url')}` : json.toString('base64url');
  const value = `${payload}:1r31eq`;
  return `${value}:${createHmac('sha256', signerKey).update(value).digest('base64url')}`;
}

const headers = {
  session: {
    cookie: 'csrftoken=Yq3Lzk9mUeQ2cE4wRrTtBbNnMmAaSsDd; sessionid=k3j4h5g6f7d8s9a0q1w2e3r4t5y6u7i8',
  },
  token: { authorization: 'Token 0123456789abcdef0123456789abcdef01234567' },
  basic: { authorization: 'Basic YWxpY2U6czNjcmV0LXBhc3N3b3Jk' },
};

interface Row {
  readonly label: string;
  readonly sluice: string;
  readonly baseline?: string;
}

const rows: Row[] = [
  { label: 'loadSessionData, plain (small session)', sluice: 'load plain', baseline: 'raw plain' },
  { label: 'loadSessionData, compressed (login session)', sluice: 'load auth', baseline: 'raw auth' },
  { label: 'loadSessionData, compressed (2 KB JSON)', sluice: 'load compressed', baseline: 'raw compressed' },
  { label: 'readSessionDataUnverified, compressed', sluice: 'read compressed', baseline: 'raw compressed' },
  { label: 'dumpSessionData, plain', sluice: 'dump plain', baseline: 'raw dump plain' },
  { label: 'dumpSessionData, compressed (login session)', sluice: 'dump auth', baseline: 'raw dump auth' },
  {
    label: 'dumpSessionData, compressed (2 KB JSON)',
    sluice: 'dump compressed',
    baseline: 'raw dump compressed',
  },
  { label: 'extractCredential, session cookie', sluice: 'extract session' },
  { label: 'extractCredential, Token', sluice: 'extract token' },
  { label: 'extractCredential, Basic', sluice: 'extract basic' },
];

const tasks: Record<string, () => unknown> = {
  'load plain': () => loadSessionData(plain, { secretKey }),
  'raw plain': () => rawLoad(plain),
  'load auth': () => loadSessionData(auth, { secretKey }),
  'raw auth': () => rawLoad(auth),
  'load compressed': () => loadSessionData(compressed, { secretKey }),
  'raw compressed': () => rawLoad(compressed),
  'read compressed': () => readSessionDataUnverified(compressed),
  'dump plain': () => dumpSessionData(smallSession, { secretKey, now }),
  'raw dump plain': () => rawDump(smallSession),
  'dump auth': () => dumpSessionData(authSession, { secretKey, now }),
  'raw dump auth': () => rawDump(authSession),
  'dump compressed': () => dumpSessionData(richSession, { secretKey, now }),
  'raw dump compressed': () => rawDump(richSession),
  'extract session': () => extractCredential(headers.session),
  'extract token': () => extractCredential(headers.token),
  'extract basic': () => extractCredential(headers.basic),
};

// Short rounds, every task once per round, medians over rounds: a busy machine slows both sides
// of a comparison alike instead of whichever happened to run during the noise.
const ROUNDS = 7;
const samples = new Map<string, number[]>(Object.keys(tasks).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const bench = new Bench({ time: 120, warmupTime: round === 0 ? 100 : 20 });
  for (const [name, fn] of Object.entries(tasks)) bench.add(name, fn);
  await bench.run();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result && 'throughput' in result) samples.get(task.name)?.push(result.throughput.mean);
  }
}

function opsPerSecond(name: string): number {
  const values = [...(samples.get(name) ?? [])].sort((a, b) => a - b);
  const median = values[Math.floor(values.length / 2)];
  if (median === undefined) throw new Error(`no result for ${name}`);
  return median;
}
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

console.log(
  `Inputs: plain ${plain.length}, login ${auth.length}, 2 KB session ${compressed.length} chars. Node ${process.version}.\n`,
);
console.log(`Median of ${ROUNDS} interleaved rounds.\n`);
console.log('| operation | Sluice ops/s | Node baseline ops/s | Sluice / baseline |');
console.log('| --- | ---: | ---: | ---: |');
for (const row of rows) {
  const sluice = opsPerSecond(row.sluice);
  if (row.baseline === undefined) {
    console.log(`| ${row.label} | ${fmt(sluice)} | n/a | n/a |`);
    continue;
  }
  const baseline = opsPerSecond(row.baseline);
  console.log(`| ${row.label} | ${fmt(sluice)} | ${fmt(baseline)} | ${(sluice / baseline).toFixed(2)} |`);
}
