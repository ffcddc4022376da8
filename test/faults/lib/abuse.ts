// The abuse generator: deterministic malformed HTTP/1.1 requests as raw bytes, many of which no
// HTTP client library would agree to send. Every credential in them is malformed on purpose (so
// none may cost a database query), and every forged identity header carries the marker
// `forged-<index>` so the upstream can tell if one got through.

export const abuseCategories = [
  'bad-cookie',
  'sql-session-key',
  'oversized-header',
  'repeated-header',
  'invalid-utf8',
  'crlf-injection',
  'forged-identity',
  'bogus-authorization',
  'absurd-path',
  'absurd-method',
  'broken-framing',
] as const;

export type AbuseCategory = (typeof abuseCategories)[number];

export interface AbuseCase {
  readonly index: number;
  readonly category: AbuseCategory;
  /** Which variant of the category (stable across runs). */
  readonly variant: string;
  readonly bytes: Buffer;
  /** HEAD request: the answer has no body. */
  readonly head: boolean;
}

/**
 * Headers a client might forge to pass itself off as someone. The gateway must never let a
 * client-sent one reach the upstream. The underscore spellings matter: Django (WSGI/ASGI) maps
 * `-` and `_` to the same `HTTP_*` key.
 */
export const forgedIdentityHeaders = [
  'X-Sluice-User',
  'X-Sluice-User-Id',
  'X-Sluice-Username',
  'X-Sluice-Identity',
  'X-Sluice-Credential-Kind',
  'X-Sluice-Is-Staff',
  'X-Sluice-Is-Superuser',
  'X-Remote-User',
  'Remote-User',
  'X-Forwarded-User',
  'X-Authenticated-User',
  'X-Auth-Request-User',
  'X-User-Id',
] as const;

/** A small deterministic PRNG (mulberry32), so a run can be replayed by index. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const hex = (rand: () => number, n: number): string =>
  Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('');
const alnum = (rand: () => number, n: number): string =>
  Array.from({ length: n }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[Math.floor(rand() * 36)]).join('');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

interface Ctx {
  readonly host: string;
  readonly index: number;
  readonly rand: () => number;
  readonly marker: string;
}

type Parts = (string | Buffer)[];
type Variant = readonly [name: string, build: (c: Ctx) => Parts];

const apiPaths = [
  '/api/users/self',
  '/api/tasks/1/dataset/export?format=CVAT%20for%20images%201.1',
  '/api/requests/abc',
  '/api/tasks/1/dataset/download',
];

function path(c: Ctx): string {
  return apiPaths[c.index % apiPaths.length] ?? '/api/users/self';
}

/** A complete request: request line, Host, the given header lines, blank line, optional body. */
function req(c: Ctx, method: string, target: string, headers: Parts, body: Parts = []): Parts {
  return [`${method} ${target} HTTP/1.1\r\nHost: ${c.host}\r\n`, ...headers, '\r\n', ...body];
}

const header = (name: string | Buffer, value: string | Buffer): Parts => [name, ': ', value, '\r\n'];

const badCookie: Variant[] = [
  ['empty key', (c) => req(c, 'GET', path(c), header('Cookie', 'sessionid='))],
  ['too short', (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=${alnum(c.rand, 5)}`))],
  ['too long', (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=${alnum(c.rand, 300)}`))],
  [
    'upper case',
    (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=${alnum(c.rand, 32).toUpperCase()}`)),
  ],
  ['punctuation', (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=${alnum(c.rand, 16)}-._~!`))],
  ['quoted', (c) => req(c, 'GET', path(c), header('Cookie', `sessionid="${alnum(c.rand, 30)}+"`))],
  [
    'non-ascii',
    (c) =>
      req(c, 'GET', path(c), header('Cookie', Buffer.from(`sessionid=ключ${alnum(c.rand, 28)}`, 'utf8'))),
  ],
  ['no equals', (c) => req(c, 'GET', path(c), header('Cookie', 'sessionid'))],
  ['only separators', (c) => req(c, 'GET', path(c), header('Cookie', ';;;; ; ;=;=='))],
  [
    'two bad session cookies',
    (c) =>
      req(
        c,
        'GET',
        path(c),
        header('Cookie', `sessionid=${alnum(c.rand, 4)}; sessionid=${alnum(c.rand, 3)}!`),
      ),
  ],
  [
    'percent encoded',
    (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=%00%00${alnum(c.rand, 30)}`)),
  ],
  [
    'huge cookie jar',
    (c) =>
      req(
        c,
        'GET',
        path(c),
        header(
          'Cookie',
          Array.from({ length: 200 }, (_, i) => `c${i}=${alnum(c.rand, 20)}`)
            .concat(`sessionid=${alnum(c.rand, 6)}`)
            .join('; '),
        ),
      ),
  ],
];

const sqlKeys = [
  "' OR '1'='1",
  "1'; DROP TABLE django_session; --",
  "abc' UNION SELECT password FROM auth_user --",
  '%27%20OR%201%3D1%20--',
  '$$; SELECT pg_sleep(10); $$',
  "x' AND (SELECT COUNT(*) FROM authtoken_token) > 0 --",
  '1 OR 1=1',
  "'); DELETE FROM auth_user; --",
  '\\x27 OR 1=1 /*',
];

const sqlSessionKey: Variant[] = sqlKeys.flatMap((key): Variant[] => [
  [`cookie ${key.slice(0, 12)}`, (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=${key}`))],
  [`token ${key.slice(0, 12)}`, (c) => req(c, 'GET', path(c), header('Authorization', `Token ${key}`))],
]);

const oversizedHeader: Variant[] = [
  ['20 KB header', (c) => req(c, 'GET', path(c), header('X-Big', 'a'.repeat(20 * 1024)))],
  ['48 KB header', (c) => req(c, 'GET', path(c), header('X-Big', 'b'.repeat(48 * 1024)))],
  ['10 KB cookie', (c) => req(c, 'GET', path(c), header('Cookie', `sessionid=${alnum(c.rand, 10 * 1024)}`))],
  [
    '12 KB authorization',
    (c) => req(c, 'GET', path(c), header('Authorization', `Token ${hex(c.rand, 12 * 1024)}`)),
  ],
  [
    '200 headers',
    (c) =>
      req(
        c,
        'GET',
        path(c),
        Array.from({ length: 200 }, (_, i) => header(`X-H${i}`, alnum(c.rand, 20))).flat(),
      ),
  ],
  ['12 KB request target', (c) => req(c, 'GET', `/api/${'x'.repeat(12 * 1024)}`, [])],
  ['40 KB query', (c) => req(c, 'GET', `/api/users/self?${'q=1&'.repeat(10 * 1024)}`, [])],
];

const repeatedHeader: Variant[] = [
  [
    '50 cookie headers',
    (c) =>
      req(
        c,
        'GET',
        path(c),
        Array.from({ length: 50 }, (_, i) => header('Cookie', `sessionid=bad!${i}`)).flat(),
      ),
  ],
  [
    'two authorization headers',
    (c) =>
      req(c, 'GET', path(c), [
        ...header('Authorization', 'Token nothex'),
        ...header('Authorization', 'Bearer'),
      ]),
  ],
  [
    'three hosts',
    (c) => req(c, 'GET', path(c), [...header('Host', 'evil.example'), ...header('Host', 'a.b')]),
  ],
  [
    'conflicting content-length',
    (c) =>
      req(c, 'POST', path(c), [...header('Content-Length', '2'), ...header('Content-Length', '4')], ['{}']),
  ],
  [
    '300 x-forwarded-for',
    (c) =>
      req(
        c,
        'GET',
        path(c),
        Array.from({ length: 300 }, (_, i) => header('X-Forwarded-For', `10.0.${i % 250}.1`)).flat(),
      ),
  ],
  [
    'repeated transfer-encoding',
    (c) =>
      req(
        c,
        'POST',
        path(c),
        [...header('Transfer-Encoding', 'chunked'), ...header('Transfer-Encoding', 'chunked')],
        ['2\r\n{}\r\n0\r\n\r\n'],
      ),
  ],
];

const invalidUtf8: Variant[] = [
  ['raw bytes in path', (c) => req(c, 'GET', `/api/users/self?q=${'\xff\xfe\xfd'}`, [])],
  ['overlong slash in path', (c) => req(c, 'GET', '/api/\xc0\xaf\xc0\xafetc/passwd', [])],
  ['percent-encoded invalid', (c) => req(c, 'GET', '/api/users/%ff%fe%c3%28', [])],
  [
    'raw bytes in cookie',
    (c) => req(c, 'GET', path(c), header('Cookie', b('sessionid=\xff\xfe\xfd\xfc\xfb\xfa'))),
  ],
  [
    'raw bytes in token',
    (c) => req(c, 'GET', path(c), header('Authorization', b(`Token \xff${hex(c.rand, 39)}`))),
  ],
  [
    'lone surrogate bytes',
    (c) => req(c, 'GET', path(c), header('Cookie', b('sessionid=\xed\xa0\x80abcdefgh'))),
  ],
  ['NUL in header value', (c) => req(c, 'GET', path(c), header('X-Note', b('a\x00b')))],
  ['raw bytes in header name', (c) => req(c, 'GET', path(c), header(b('X-\xff\xfe'), 'v'))],
  [
    'invalid JSON body bytes',
    (c) => req(c, 'POST', path(c), header('Content-Length', '4'), [b('\xff\xfe\x00\x01')]),
  ],
];

const crlfInjection: Variant[] = [
  [
    'encoded CRLF in path',
    (c) => req(c, 'GET', `/api/users/self%0d%0aX-Sluice-User:%20${c.marker}%0d%0a`, []),
  ],
  ['bare CR in value', (c) => req(c, 'GET', path(c), header('X-Note', `a\rX-Sluice-User: ${c.marker}`))],
  ['bare LF in value', (c) => req(c, 'GET', path(c), header('X-Note', `a\nX-Sluice-User: ${c.marker}`))],
  [
    'LF-only line endings',
    (c) => [`GET ${path(c)} HTTP/1.1\nHost: ${c.host}\nX-Sluice-User: ${c.marker}\nCookie: sessionid=x!\n\n`],
  ],
  ['obs-fold continuation', (c) => req(c, 'GET', path(c), [`X-Note: a\r\n X-Remote-User: ${c.marker}\r\n`])],
  ['space before colon', (c) => req(c, 'GET', path(c), [`X-Sluice-User : ${c.marker}\r\n`])],
  ['CRLF in cookie', (c) => req(c, 'GET', path(c), header('Cookie', 'sessionid=abc%0d%0aSet-Cookie:%20x=1'))],
  [
    'header injected via encoded query',
    (c) => req(c, 'GET', `/api/users/self?next=%0d%0aX-Remote-User:%20${c.marker}`, []),
  ],
  ['CR in request line', (c) => [`GET /api/users/self\r HTTP/1.1\r\nHost: ${c.host}\r\n\r\n`]],
];

function forgedVariants(): Variant[] {
  const variants: Variant[] = [];
  for (const name of forgedIdentityHeaders) {
    variants.push([`${name}`, (c) => req(c, 'GET', path(c), header(name, c.marker))]);
    variants.push([
      `${name} lower case, bad cookie`,
      (c) =>
        req(c, 'GET', path(c), [
          ...header(name.toLowerCase(), c.marker),
          ...header('Cookie', `sessionid=${alnum(c.rand, 3)}`),
        ]),
    ]);
    variants.push([
      `${name} with underscores`,
      (c) => req(c, 'GET', path(c), header(name.replaceAll('-', '_'), c.marker)),
    ]);
    variants.push([
      `${name} twice, public path`,
      (c) =>
        req(c, 'GET', '/api/server/about', [
          ...header(name, c.marker),
          ...header(name.toUpperCase(), c.marker),
        ]),
    ]);
  }
  return variants;
}

const forgedIdentity = forgedVariants();

const bogusAuthorization: Variant[] = [
  ['Token without key', (c) => req(c, 'GET', path(c), header('Authorization', 'Token'))],
  ['Token too short', (c) => req(c, 'GET', path(c), header('Authorization', `Token ${hex(c.rand, 39)}`))],
  ['Token too long', (c) => req(c, 'GET', path(c), header('Authorization', `Token ${hex(c.rand, 41)}`))],
  ['Token not hex', (c) => req(c, 'GET', path(c), header('Authorization', `Token ${'g'.repeat(40)}`))],
  [
    'Token with spaces',
    (c) => req(c, 'GET', path(c), header('Authorization', `Token ${hex(c.rand, 20)} x y`)),
  ],
  ['Bearer without token', (c) => req(c, 'GET', path(c), header('Authorization', 'Bearer'))],
  ['Bearer with spaces', (c) => req(c, 'GET', path(c), header('Authorization', 'Bearer a b c'))],
  ['Bearer of 8 KB', (c) => req(c, 'GET', path(c), header('Authorization', `Bearer ${alnum(c.rand, 8192)}`))],
  ['Basic not base64', (c) => req(c, 'GET', path(c), header('Authorization', 'Basic !!!***'))],
  ['Basic empty username', (c) => req(c, 'GET', path(c), header('Authorization', `Basic ${b64(':secret')}`))],
  ['Basic empty', (c) => req(c, 'GET', path(c), header('Authorization', 'Basic'))],
  ['Digest', (c) => req(c, 'GET', path(c), header('Authorization', 'Digest username="admin", realm="x"'))],
  [
    'NTLM',
    (c) =>
      req(c, 'GET', path(c), header('Authorization', 'NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA=')),
  ],
  [
    'Negotiate',
    (c) => req(c, 'GET', path(c), header('Authorization', 'Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg')),
  ],
  [
    'AWS signature',
    (c) => req(c, 'GET', path(c), header('Authorization', 'AWS4-HMAC-SHA256 Credential=AKIA/x')),
  ],
  ['unknown scheme', (c) => req(c, 'GET', path(c), header('Authorization', `Bogus ${hex(c.rand, 40)}`))],
  ['empty value', (c) => req(c, 'GET', path(c), header('Authorization', ''))],
  ['only spaces', (c) => req(c, 'GET', path(c), header('Authorization', '      '))],
];

const absurdPath: Variant[] = [
  ['asterisk', (c) => req(c, 'GET', '*', [])],
  ['absolute form', (c) => req(c, 'GET', `http://evil.example${path(c)}`, [])],
  ['dot segments', (c) => req(c, 'GET', '/api/../../../etc/passwd', [])],
  ['encoded dot segments', (c) => req(c, 'GET', '/api/%2e%2e/%2e%2e/etc/passwd', [])],
  ['public prefix escape', (c) => req(c, 'GET', '/api/server/about/../users/self', [])],
  ['public prefix encoded escape', (c) => req(c, 'GET', '/api/server/about/%2e%2e/users/self', [])],
  ['many slashes', (c) => req(c, 'GET', '//////api//users///self', [])],
  ['fragment', (c) => req(c, 'GET', '/api/users/self#frag', [])],
  ['encoded NUL', (c) => req(c, 'GET', '/api/%00', [])],
  ['bad percent', (c) => req(c, 'GET', '/api/%zz%', [])],
  ['lone percent', (c) => req(c, 'GET', '/%', [])],
  ['no leading slash', (c) => req(c, 'GET', 'api/users/self', [])],
  ['backslashes', (c) => req(c, 'GET', '/api\\..\\..\\users\\self', [])],
  ['8 KB path', (c) => req(c, 'GET', `/${'a/'.repeat(4000)}`, [])],
  ['status page with junk', (c) => req(c, 'GET', '/sluice/status/../../api/users/self?%', [])],
  ['metrics with query junk', (c) => req(c, 'GET', '/metrics?%%%', [])],
];

const absurdMethod: Variant[] = [
  ['FOO', (c) => req(c, 'FOO', path(c), [])],
  ['lower-case get', (c) => req(c, 'get', path(c), [])],
  ['GETT', (c) => req(c, 'GETT', path(c), [])],
  ['NUL in method', (c) => req(c, 'G\x00ET', path(c), [])],
  ['1000-char method', (c) => req(c, 'A'.repeat(1000), path(c), [])],
  ['CONNECT', (c) => req(c, 'CONNECT', '127.0.0.1:22', [])],
  ['TRACE', (c) => req(c, 'TRACE', path(c), [])],
  ['PROPFIND', (c) => req(c, 'PROPFIND', path(c), header('Content-Length', '0'))],
  ['PURGE', (c) => req(c, 'PURGE', path(c), [])],
  ['OPTIONS *', (c) => req(c, 'OPTIONS', '*', [])],
  ['DELETE self', (c) => req(c, 'DELETE', '/api/users/self', header('Cookie', 'sessionid=!'))],
  ['HEAD', (c) => req(c, 'HEAD', path(c), header('Cookie', 'sessionid=short'))],
  ['M-SEARCH', (c) => req(c, 'M-SEARCH', '*', [])],
  ['HTTP/2 preface', () => ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n']],
];

const brokenFraming: Variant[] = [
  ['negative content-length', (c) => req(c, 'POST', path(c), header('Content-Length', '-1'))],
  ['exponent content-length', (c) => req(c, 'POST', path(c), header('Content-Length', '1e3'))],
  [
    'content-length and chunked',
    (c) =>
      req(
        c,
        'POST',
        path(c),
        [...header('Content-Length', '4'), ...header('Transfer-Encoding', 'chunked')],
        ['0\r\n\r\n'],
      ),
  ],
  [
    'bad chunk size',
    (c) => req(c, 'POST', path(c), header('Transfer-Encoding', 'chunked'), ['zz\r\nhello\r\n0\r\n\r\n']),
  ],
  [
    'unknown transfer-encoding',
    (c) => req(c, 'POST', path(c), header('Transfer-Encoding', 'xchunked'), ['0\r\n\r\n']),
  ],
  ['HTTP/9.9', (c) => [`GET ${path(c)} HTTP/9.9\r\nHost: ${c.host}\r\n\r\n`]],
  ['HTTP/1.1 without Host', (c) => [`GET ${path(c)} HTTP/1.1\r\n\r\n`]],
  ['HTTP/1.0 without Host', (c) => [`GET ${path(c)} HTTP/1.0\r\n\r\n`]],
  ['HTTP/0.9', (c) => [`GET ${path(c)}\r\n\r\n`]],
  ['TLS client hello', () => [Buffer.from('16030100a5010000a10303', 'hex'), Buffer.alloc(160, 1)]],
  ['plain text', () => ['hello there\r\n\r\n']],
  ['blank lines then garbage', () => ['\r\n\r\n\r\nXYZ\r\n\r\n']],
  [
    'expect 100-continue with body',
    (c) =>
      req(
        c,
        'POST',
        path(c),
        [
          ...header('Expect', '100-continue'),
          ...header('Content-Length', '2'),
          ...header('Cookie', 'sessionid=!'),
        ],
        ['{}'],
      ),
  ],
  [
    'upgrade to websocket',
    (c) => req(c, 'GET', path(c), [...header('Upgrade', 'websocket'), ...header('Connection', 'Upgrade')]),
  ],
  [
    'h2c upgrade',
    (c) =>
      req(c, 'GET', path(c), [
        ...header('Upgrade', 'h2c'),
        ...header('Connection', 'Upgrade, HTTP2-Settings'),
        ...header('HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA'),
      ]),
  ],
];

const table: Record<AbuseCategory, Variant[]> = {
  'bad-cookie': badCookie,
  'sql-session-key': sqlSessionKey,
  'oversized-header': oversizedHeader,
  'repeated-header': repeatedHeader,
  'invalid-utf8': invalidUtf8,
  'crlf-injection': crlfInjection,
  'forged-identity': forgedIdentity,
  'bogus-authorization': bogusAuthorization,
  'absurd-path': absurdPath,
  'absurd-method': absurdMethod,
  'broken-framing': brokenFraming,
};

/** The number of distinct variants over all categories. */
export const abuseVariantCount = Object.values(table).reduce((n, v) => n + v.length, 0);

/**
 * Malformed request number `index` for a server reached as `host` (the Host header value).
 * Categories go round robin; variants cycle within a category, random parts are seeded by index.
 */
export function abuseCase(index: number, host: string): AbuseCase {
  const category = abuseCategories[index % abuseCategories.length] ?? 'bad-cookie';
  const variants = table[category];
  const round = Math.floor(index / abuseCategories.length);
  const [variant, build] = variants[round % variants.length] ?? badCookie[0]!;
  const ctx: Ctx = { host, index, rand: rng(index + 1), marker: `forged-${index}` };
  const bytes = Buffer.concat(build(ctx).map((p) => (typeof p === 'string' ? b(p) : p)));
  return { index, category, variant, bytes, head: bytes.subarray(0, 5).toString('latin1') === 'HEAD ' };
}
