// Cookie parsing and Authorization handling checked against real Django and DRF
// (test/django/vectors.py runs parse_cookie, a WSGIRequest and DRF's authentication classes).
import { type DjangoVectors, type DrfOutcome, djangoVectors } from '@sluice/test-support';
import { beforeAll, describe, expect, test } from 'vitest';
import { extractCredential, isValidSessionKey, parseCookie } from '../src/index.ts';

const KEY = 'abcdefgh12345678abcdefgh12345678';
const OTHER = 'zzzzzzzz99999999zzzzzzzz99999999';
const TOKEN = '0123456789abcdef0123456789abcdef01234567';

const cookies = [
  '',
  `sessionid=${KEY}`,
  `sessionid=${KEY}; sessionid=${OTHER}`,
  `sessionid=${KEY};sessionid=`,
  `sessionid=; sessionid=${KEY}`,
  `  sessionid  =  ${KEY}  `,
  `sessionid="${KEY}"`,
  'sessionid="abc\\144efgh12345678"',
  `foo; sessionid=${KEY}`,
  `sessionid=${KEY}=x`,
  `SESSIONID=${KEY}`,
  'sessionid=short',
  'sessionid=ABCDEFGH12345678',
  `sessionid=${'a'.repeat(41)}`,
  'a=1;;;b=2; ;=;c',
  `\u00a0sessionid\u00a0=${KEY}`,
  `\u3000sessionid=${KEY}\u2003`,
  `sessionid=${KEY}\u0085`,
  `x=\u00e9t\u00e9; sessionid=${KEY}`,
  `__proto__=1; constructor=2; sessionid=${KEY}`,
  `sessionid=${KEY}; Path=/; sessionid=${OTHER}`,
  `"sessionid"=${KEY}`,
  'a="\\"quoted\\" value\\\\"',
  'a="unterminated',
  'a=""',
  'a="\\400\\377\\0"',
  'a="\\\n"',
  `sessionid=${KEY}\t`,
  `csrftoken=abc; sessionid=${KEY}; messages="a\\054b"`,
];

const latin1Basic = Buffer.from([0xfc, 0x73, 0x65, 0x72, 0x3a, 0x70, 0xe4, 0x73, 0x73]).toString('base64');
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const authorization = [
  '',
  `Token ${TOKEN}`,
  `token ${TOKEN}`,
  `TOKEN    ${TOKEN}`,
  `Token\t${TOKEN}`,
  'Token',
  'Token a b',
  'Token abc',
  `Token ${TOKEN.toUpperCase()}`,
  `Token ${TOKEN.slice(0, 39)}\u00e9`,
  'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc-_~+/==',
  'bearer abc',
  'Bearer',
  'Bearer a b',
  'Bearer tok=n',
  `Basic ${b64('user:pass')}`,
  `basic ${b64('user:pass:with:colons')}`,
  `Basic ${b64('user')}`,
  `Basic ${b64('üser:päss')}`,
  `Basic ${latin1Basic}`,
  'Basic',
  'Basic a b',
  'Basic !!!!',
  `Basic ${b64('user:pass')}=`,
  `Basic ${b64(':pass')}`,
  `Basic ${b64('user:')}`,
  'Digest username="x"',
  'Tokens abc',
];

/** Reasons where Sluice is deliberately stricter than DRF (which would still query and fail). */
const STRICTER = [
  'Token is not 40 hexadecimal characters',
  'Bearer token is not an RFC 6750 b64token',
  'Basic credentials are not base64',
  'Basic credentials have an empty username',
];

let v: DjangoVectors;

beforeAll(async () => {
  v = await djangoVectors({ cookies, authorization });
}, 60_000);

describe('Cookie header', () => {
  test('parseCookie gives what django.http.cookie.parse_cookie gives, in the same order', () => {
    expect(v.cookies).toHaveLength(cookies.length);
    for (const c of v.cookies) {
      expect([...parseCookie(c.header)], JSON.stringify(c.header)).toEqual(c.parsed);
    }
  });

  test('the duplicate Django keeps is the one extractCredential uses', () => {
    const dup = v.cookies.find((c) => c.header === `sessionid=${KEY}; sessionid=${OTHER}`);
    expect(dup?.djangoSessionKey).toBe(OTHER);
    expect(extractCredential({ cookie: dup?.latin1Header ?? '' })).toEqual({
      kind: 'session',
      sessionKey: OTHER,
    });
  });

  test('extractCredential reads the session key Django reads from the same bytes', () => {
    for (const c of v.cookies) {
      const got = extractCredential({ cookie: c.latin1Header });
      const label = JSON.stringify(c.header);
      const djangoKey = c.djangoSessionKey;
      if (djangoKey !== null && isValidSessionKey(djangoKey)) {
        expect(got, label).toEqual({ kind: 'session', sessionKey: djangoKey });
      } else if (got !== null) {
        // Django has no session for it, or one Sluice refuses as a key Django never generates.
        expect(got, label).toMatchObject({ kind: 'malformed', source: 'cookie' });
      }
    }
  });
});

function drfVerdict(
  entry: DjangoVectors['authorization'][number],
): { scheme: string; outcome: DrfOutcome } | null {
  for (const scheme of ['token', 'bearer', 'basic'] as const) {
    if (entry[scheme].result !== 'none') return { scheme, outcome: entry[scheme] };
  }
  return null;
}

describe('Authorization header', () => {
  test('DRF and extractCredential agree: none, failed, or the same credential', () => {
    expect(v.authorization).toHaveLength(authorization.length);
    for (const a of v.authorization) {
      const got = extractCredential({ authorization: a.latin1Header });
      const label = JSON.stringify(a.header);
      const verdict = drfVerdict(a);
      if (verdict === null) {
        expect(got, label).toBeNull();
        continue;
      }
      const { scheme, outcome } = verdict;
      if (outcome.result === 'failed') {
        expect(got, label).toMatchObject({ kind: 'malformed', source: 'authorization' });
        continue;
      }
      if (outcome.result !== 'lookup') throw new Error('unreachable');
      if (got?.kind === 'malformed') {
        expect(STRICTER, `${label}: ${got.reason}`).toContain(got.reason);
        continue;
      }
      if (scheme === 'basic') {
        expect(got, label).toEqual({ kind: 'basic', username: outcome.args[0], password: outcome.args[1] });
      } else {
        expect(got, label).toEqual({ kind: scheme, token: outcome.args[0] });
      }
    }
  });

  test('the vectors exercise every DRF outcome', () => {
    const outcomes = new Set(v.authorization.map((a) => drfVerdict(a)?.outcome.result ?? 'none'));
    expect([...outcomes].sort()).toEqual(['failed', 'lookup', 'none']);
    const basic = v.authorization.find((a) => a.header === `Basic ${latin1Basic}`);
    expect(basic?.basic).toEqual({ result: 'lookup', args: ['\u00fcser', 'p\u00e4ss'] });
  });
});
