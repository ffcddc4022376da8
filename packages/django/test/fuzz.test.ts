// Property tests: arbitrary input never throws anything but the typed errors, and sizes are bounded
// so nothing can run long (the suite's timeout would catch a hang).
import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  DEFAULT_SESSION_SALT,
  dumpSessionData,
  encodeBase62,
  encodeBase64Url,
  extractCredential,
  isSessionDataError,
  loadSessionData,
  parseCookie,
  readSessionDataUnverified,
  saltedHmac,
} from '../src/index.ts';

const secretKey = 'fuzz-secret-key';
const SIGNED_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:';

/** Either a session dictionary or a typed SessionDataError; anything else fails the property. */
function decodesOrRefuses(fn: () => Record<string, unknown>): void {
  try {
    const session = fn();
    expect(typeof session).toBe('object');
    expect(Array.isArray(session)).toBe(false);
  } catch (error) {
    if (!isSessionDataError(error)) throw error;
    expect(['E_SESSION_MALFORMED', 'E_SESSION_BAD_SIGNATURE', 'E_SESSION_LEGACY_DISABLED']).toContain(
      error.code,
    );
  }
}

function both(data: string): void {
  decodesOrRefuses(() => loadSessionData(data, { secretKey, allowLegacy: true }));
  decodesOrRefuses(() => loadSessionData(data, { secretKey }));
  decodesOrRefuses(() => readSessionDataUnverified(data, { allowLegacy: true }));
  decodesOrRefuses(() => readSessionDataUnverified(data));
}

function signRaw(payload: string): string {
  const value = `${payload}:${encodeBase62(1_700_000_000)}`;
  return `${value}:${encodeBase64Url(saltedHmac(`${DEFAULT_SESSION_SALT}signer`, value, secretKey, 'sha256'))}`;
}

const anyString = fc.oneof(
  fc.string({ maxLength: 2000 }),
  fc.string({ unit: 'binary', maxLength: 500 }),
  fc.string({ unit: fc.constantFrom(...SIGNED_ALPHABET), maxLength: 400 }),
  fc.string({ unit: fc.constantFrom(...'ABCDabcd0123+/='), maxLength: 200 }),
);

describe('session data', () => {
  test('arbitrary strings', () => {
    fc.assert(fc.property(anyString, both), { numRuns: 500 });
  });

  test('validly signed arbitrary payloads (reaching base64, zlib and JSON)', () => {
    const payload = fc.oneof(
      fc.string({ unit: fc.constantFrom(...SIGNED_ALPHABET), maxLength: 200 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => encodeBase64Url(b)),
      fc.uint8Array({ maxLength: 300 }).map((b) => `.${encodeBase64Url(b)}`),
      fc.uint8Array({ maxLength: 300 }).map((b) => `.${encodeBase64Url(deflateSync(b))}`),
      fc.json({ maxDepth: 4 }).map((j) => encodeBase64Url(Buffer.from(j, 'latin1'))),
      fc.json({ maxDepth: 4 }).map((j) => `.${encodeBase64Url(deflateSync(Buffer.from(j, 'latin1')))}`),
    );
    fc.assert(
      fc.property(payload, (p) => both(signRaw(p))),
      { numRuns: 400 },
    );
  });

  test('one-character mutations of real session data', () => {
    const good = dumpSessionData({ _auth_user_id: '1', cart: ['a', 'b', 'c'], n: 1.5 }, { secretKey });
    fc.assert(
      fc.property(fc.nat({ max: good.length - 1 }), fc.constantFrom(...`${SIGNED_ALPHABET}+/= !`), (i, c) => {
        const mutated = good.slice(0, i) + c + good.slice(i + 1);
        both(mutated);
        if (mutated !== good) {
          expect(() => loadSessionData(mutated, { secretKey })).toThrow();
        }
      }),
      { numRuns: 400 },
    );
  });

  test('legacy-shaped data', () => {
    const legacy = fc
      .tuple(fc.stringMatching(/^[0-9a-f]{40}$/), fc.uint8Array({ maxLength: 200 }))
      .map(([hash, body]) => Buffer.concat([Buffer.from(`${hash}:`), body]).toString('base64'));
    fc.assert(fc.property(legacy, both), { numRuns: 200 });
  });

  test('dump then load is the identity for JSON sessions', () => {
    const session = fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), {
      maxKeys: 8,
    });
    fc.assert(
      fc.property(session, (s) => {
        expect(loadSessionData(dumpSessionData(s, { secretKey }), { secretKey })).toEqual(s);
      }),
      { numRuns: 200 },
    );
  });
});

describe('headers', () => {
  const value = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 100 }),
    fc.string({
      unit: fc.constantFrom(...' \t;="\\\x00\x7fsesionidTokBarcxyz0123456789abcdef:+/'),
      maxLength: 300,
    }),
    fc
      .constantFrom('Token ', 'Bearer ', 'Basic ', 'sessionid=')
      .chain((p) => fc.string({ maxLength: 80 }).map((s) => p + s)),
    fc.string({ maxLength: 20 }).map((s) => s.repeat(600)),
  );
  const headerValue = fc.oneof(value, fc.array(value, { maxLength: 3 }), fc.constant(undefined));
  const headers = fc.dictionary(
    fc.constantFrom('cookie', 'authorization', 'Cookie', 'x-other', '__proto__'),
    headerValue,
    { maxKeys: 4 },
  );

  test('extractCredential never throws and answers a well-formed result', () => {
    fc.assert(
      fc.property(headers, fc.option(fc.integer({ min: 1, max: 20_000 }), { nil: undefined }), (h, max) => {
        const got = extractCredential(h, max === undefined ? undefined : { maxHeaderBytes: max });
        if (got === null) return;
        switch (got.kind) {
          case 'session':
            expect(got.sessionKey).toMatch(/^[a-z0-9]{8,40}$/);
            break;
          case 'token':
            expect(got.token).toMatch(/^[0-9a-fA-F]{40}$/);
            break;
          case 'bearer':
            expect(got.token).toMatch(/^[A-Za-z0-9\-._~+/]+=*$/);
            break;
          case 'basic':
            expect(got.username.length).toBeGreaterThan(0);
            break;
          case 'malformed':
            expect(got.reason.length).toBeGreaterThan(0);
            expect(['cookie', 'authorization']).toContain(got.source);
            break;
          default:
            throw new Error(`unexpected ${JSON.stringify(got)}`);
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('parseCookie never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2000 }), (s) => {
        for (const [k, v] of parseCookie(s)) {
          expect(typeof k).toBe('string');
          expect(typeof v).toBe('string');
        }
      }),
      { numRuns: 500 },
    );
  });

  test('adversarial header shapes at the size limit finish', () => {
    for (const filler of [';', '=', ' ', '"', '\\', 'a=;', 'sessionid=x;']) {
      const header = filler.repeat(Math.floor(8192 / filler.length));
      expect(
        extractCredential({ cookie: header, authorization: `Basic ${'A'.repeat(8180)}` }),
      ).not.toBeUndefined();
      expect(parseCookie(header)).toBeInstanceOf(Map);
    }
  });
});
