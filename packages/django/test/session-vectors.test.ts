// Vectors produced at test time by real Django (test/django/vectors.py): every one must round-trip
// exactly, decode to Django's dictionary and dump to Django's bytes.
import { type DjangoVectors, djangoVectors, type SessionVector } from '@sluice/test-support';
import fc from 'fast-check';
import { deflate } from 'pako';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  dumpPythonJson,
  dumpSessionData,
  isSessionDataError,
  loadSessionData,
  readSessionDataUnverified,
  type SessionDataErrorCode,
  sessionAuthHash,
  signObject,
  unsignObject,
  verifySessionAuthHash,
} from '../src/index.ts';

/** Deterministic inputs for the zlib comparison: sizes around the window, block and match limits. */
function zlibInputs(): Buffer[] {
  let seed = 0x9e3779b9;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x1_0000_0000;
  };
  const inputs: Buffer[] = [Buffer.alloc(0), Buffer.from('a'), Buffer.from('{}'), Buffer.alloc(70_000, 0x61)];
  const alphabets = ['abcdefgh{}":,0123', 'ab', 'the quick brown fox jumps over the lazy dog '];
  for (const size of [3, 100, 1_000, 16_384, 40_000, 65_274, 65_536, 70_000, 140_000]) {
    inputs.push(Buffer.from(Array.from({ length: size }, () => Math.floor(random() * 256))));
    for (const alphabet of alphabets) {
      inputs.push(
        Buffer.from(
          Array.from({ length: size }, () => alphabet[Math.floor(random() * alphabet.length)]).join(''),
        ),
      );
    }
  }
  return inputs;
}

/** Random sessions for the byte-identity comparison, written as Python will read them back. */
function randomSessions(): string[] {
  const value = fc.letrec((tie) => ({
    leaf: fc.oneof(
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.integer(),
      fc.double({ noNaN: false }),
      fc.boolean(),
      fc.constant(null),
    ),
    node: fc.oneof(
      { depthSize: 'small' },
      tie('leaf'),
      fc.array(tie('node'), { maxLength: 4 }),
      fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), tie('node'), { maxKeys: 4 }),
    ),
  })).node;
  const session = fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), value, { maxKeys: 8 });
  return fc.sample(session, { numRuns: 150, seed: 42 }).map((s) => dumpPythonJson(s));
}

const inputs = zlibInputs();
const sessionTexts = randomSessions();
let v: DjangoVectors;
let secretKey: string;
let now: () => number;

beforeAll(async () => {
  v = await djangoVectors({ zlib: inputs.map((b) => b.toString('base64')), encode: sessionTexts });
  secretKey = v.secretKey;
  now = () => v.timestamp * 1000 + 250;
}, 60_000);

/** toBe for long strings: on a mismatch, reports where they part instead of both in full. */
function expectSame(actual: string, expected: string, label: string): void {
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  const around = (s: string) => s.slice(Math.max(0, i - 40), i + 40);
  expect({ at: i, actual: around(actual), expected: around(expected) }, label).toEqual({
    at: -1,
    actual: '',
    expected: '',
  });
}

/** Django 3.x reads the legacy formats; 4.0 dropped them. */
function djangoReadsLegacy(): boolean {
  return v.django.startsWith('3.');
}

function codeOf(fn: () => unknown): SessionDataErrorCode | 'no error' {
  try {
    fn();
    return 'no error';
  } catch (error) {
    if (isSessionDataError(error)) return error.code;
    throw error;
  }
}

/** The dictionary to dump, in Python's key order. */
function inPythonOrder(vector: SessionVector, loaded: Record<string, unknown>): Map<string, unknown> {
  return new Map(vector.session ? vector.entries : Object.entries(loaded));
}

describe('sessions encoded by SessionStore().encode()', () => {
  test('cover the shapes the issue asks for', () => {
    const names = v.sessions.map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(['plain', 'compressed', 'unicode', 'nested', 'large', 'empty']),
    );
    const byName = new Map(v.sessions.map((s) => [s.name, s]));
    expect(byName.get('plain')?.compressed).toBe(false);
    expect(byName.get('compressed')?.compressed).toBe(true);
    expect(byName.get('large')?.sessionData.length).toBeGreaterThan(65_536);
  });

  test('decode to the dictionary Django encoded (and Django itself decodes)', () => {
    for (const vector of [...v.sessions, v.auth.vector]) {
      const loaded = loadSessionData(vector.sessionData, { secretKey });
      if (vector.session) {
        expect(loaded, vector.name).toEqual(vector.session);
        expect(vector.decodedByDjango, vector.name).toEqual(vector.session);
      }
      expect(readSessionDataUnverified(vector.sessionData), vector.name).toEqual(loaded);
    }
  });

  test('dump to the bytes Django wrote, JSON and all', () => {
    for (const vector of [...v.sessions, v.auth.vector]) {
      const loaded = loadSessionData(vector.sessionData, { secretKey });
      const ordered = inPythonOrder(vector, loaded);
      expectSame(dumpPythonJson(ordered), vector.sessionJson, vector.name);
      expectSame(dumpSessionData(ordered, { secretKey, now }), vector.sessionData, vector.name);
    }
  });

  test('NaN and the infinities survive as Python writes them', () => {
    const vector = v.sessions.find((s) => s.name === 'special-floats');
    expect(vector?.sessionJson).toContain('NaN');
    const loaded = loadSessionData(vector?.sessionData ?? '', { secretKey });
    expect(loaded.nan).toBeNaN();
    expect(loaded.inf).toBe(Number.POSITIVE_INFINITY);
    expect(loaded.ninf).toBe(Number.NEGATIVE_INFINITY);
    expect(loaded.f).toBe(1.5);
  });

  test('a __proto__ key is data, not a prototype', () => {
    const vector = v.sessions.find((s) => s.name === 'proto-key');
    const loaded = loadSessionData(vector?.sessionData ?? '', { secretKey });
    expect(Object.getPrototypeOf(loaded)).toBe(Object.prototype);
    expect(Object.hasOwn(loaded, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test('random sessions dump byte-identically to Django', () => {
    expect(v.encoded).toHaveLength(sessionTexts.length);
    sessionTexts.forEach((text, i) => {
      const expected = v.encoded[i] ?? '';
      // The text came from a JavaScript object, so its key order is already JavaScript's: Python
      // keeps it, and the same text and bytes must come back.
      const loaded = loadSessionData(expected, { secretKey });
      expectSame(dumpPythonJson(loaded), text, text);
      expectSame(dumpSessionData(loaded, { secretKey, now }), expected, text);
    });
  });
});

describe('refusals', () => {
  test('tampered data fails with the right code, where Django answers an empty session', () => {
    expect(v.tampered.cases.length).toBeGreaterThanOrEqual(6);
    for (const c of v.tampered.cases) {
      expect(
        codeOf(() => loadSessionData(c.sessionData, { secretKey })),
        c.name,
      ).toBe(c.code);
      expect(c.decodedByDjango, c.name).toEqual({});
    }
    expect(loadSessionData(v.tampered.original, { secretKey })).toMatchObject({ _auth_user_id: '3' });
  });

  test('another secret: refused, unless that secret is given', () => {
    const o = v.otherSecret;
    expect(codeOf(() => loadSessionData(o.sessionData, { secretKey }))).toBe('E_SESSION_BAD_SIGNATURE');
    expect(loadSessionData(o.sessionData, { secretKey: o.secretKey })).toEqual(o.session);
    expect(codeOf(() => loadSessionData(o.sessionData, { secretKey, salt: 'another.salt' }))).toBe(
      'E_SESSION_BAD_SIGNATURE',
    );
  });

  test('fallback keys: data signed with a rotated-out key loads only when it is a fallback', () => {
    const f = v.fallback;
    expect(codeOf(() => loadSessionData(f.sessionData, { secretKey }))).toBe('E_SESSION_BAD_SIGNATURE');
    expect(loadSessionData(f.sessionData, { secretKey, fallbackKeys: ['unrelated', f.oldKey] })).toEqual(
      f.session,
    );
    // Django 4.1+ reads it the same way; older Django has no fallbacks and answers an empty session.
    expect(f.decodedByDjango).toEqual(f.djangoHasFallbacks ? f.session : null);
  });

  test('legacy (pre-3.1) data is refused without allowLegacy and decoded with it', () => {
    for (const l of v.legacy) {
      const key = l.secretKey ?? secretKey;
      expect(
        codeOf(() => loadSessionData(l.sessionData, { secretKey: key })),
        l.name,
      ).toBe('E_SESSION_LEGACY_DISABLED');
      expect(
        codeOf(() => readSessionDataUnverified(l.sessionData)),
        l.name,
      ).toBe('E_SESSION_LEGACY_DISABLED');
      expect(loadSessionData(l.sessionData, { secretKey: key, allowLegacy: true }), l.name).toEqual(
        l.session,
      );
      expect(readSessionDataUnverified(l.sessionData, { allowLegacy: true }), l.name).toEqual(l.session);
      // Django 3.1/3.2 still read the legacy format; 4.0+ answer an empty session.
      if (!l.secretKey) expect(l.decodedByDjango, l.name).toEqual(djangoReadsLegacy() ? l.session : {});
    }
    const old = v.legacy.find((l) => l.secretKey);
    expect(codeOf(() => loadSessionData(old?.sessionData ?? '', { secretKey, allowLegacy: true }))).toBe(
      'E_SESSION_BAD_SIGNATURE',
    );
    expect(
      loadSessionData(old?.sessionData ?? '', {
        secretKey,
        fallbackKeys: [old?.secretKey ?? ''],
        allowLegacy: true,
      }),
    ).toEqual(old?.session);
  });

  test('tampered legacy data fails its sha1 check', () => {
    const l = v.legacy[0];
    const raw = Buffer.from(l?.sessionData ?? '', 'base64')
      .toString('latin1')
      .replace('"en"', '"de"');
    const tampered = Buffer.from(raw, 'latin1').toString('base64');
    expect(codeOf(() => loadSessionData(tampered, { secretKey, allowLegacy: true }))).toBe(
      'E_SESSION_BAD_SIGNATURE',
    );
  });

  test('sha1-signed values (Django 3.1/3.2) need allowLegacy', () => {
    const s = v.sha1Signed;
    expect(codeOf(() => loadSessionData(s.sessionData, { secretKey }))).toBe('E_SESSION_LEGACY_DISABLED');
    expect(loadSessionData(s.sessionData, { secretKey, allowLegacy: true })).toEqual(s.session);
    expect(s.decodedByDjango).toEqual(djangoReadsLegacy() ? s.session : {});
    expect(codeOf(() => loadSessionData(s.sessionData, { secretKey: 'wrong', allowLegacy: true }))).toBe(
      'E_SESSION_BAD_SIGNATURE',
    );
  });
});

describe('the _auth_user_hash check', () => {
  test('sessionAuthHash is what Django stored at login', () => {
    const a = v.auth;
    expect(sessionAuthHash(a.passwordHash, secretKey)).toBe(a.hash);
    expect(a.vector.session?._auth_user_hash).toBe(a.hash);
    expect(sessionAuthHash(a.passwordHash, secretKey, 'sha1')).toBe(a.legacySha1Hash);
  });

  test('verifySessionAuthHash accepts the right password hash and refuses another', () => {
    const a = v.auth;
    const session = loadSessionData(a.vector.sessionData, { secretKey });
    expect(verifySessionAuthHash(session, a.passwordHash, { secretKey })).toBe(true);
    expect(verifySessionAuthHash(session, a.otherPasswordHash, { secretKey })).toBe(false);
    expect(verifySessionAuthHash(session, a.passwordHash, { secretKey: 'other' })).toBe(false);
    expect(
      verifySessionAuthHash({ ...session, _auth_user_hash: undefined }, a.passwordHash, { secretKey }),
    ).toBe(false);
  });

  test('a hash made under a fallback key verifies only with fallbackKeys', () => {
    const a = v.auth;
    const session = { _auth_user_id: '1', _auth_user_hash: a.hashUnderOldKey };
    expect(verifySessionAuthHash(session, a.passwordHash, { secretKey })).toBe(false);
    const oldKey = v.fallback.oldKey;
    expect(verifySessionAuthHash(session, a.passwordHash, { secretKey, fallbackKeys: [oldKey] })).toBe(true);
  });

  test('the legacy sha1 hash verifies only with allowLegacy', () => {
    const a = v.auth;
    const session = { _auth_user_hash: a.legacySha1Hash };
    expect(verifySessionAuthHash(session, a.passwordHash, { secretKey })).toBe(false);
    expect(verifySessionAuthHash(session, a.passwordHash, { secretKey, allowLegacy: true })).toBe(true);
  });
});

describe('signing.dumps / signing.loads', () => {
  test('signObject writes what signing.dumps wrote; unsignObject reads it back', () => {
    expect(v.signing.length).toBeGreaterThan(3);
    for (const s of v.signing) {
      expect(signObject(s.value, { secretKey, salt: s.salt, compress: s.compress, now }), s.signed).toBe(
        s.signed,
      );
      const back = unsignObject(s.signed, { secretKey, salt: s.salt });
      expect(back.value).toEqual(s.value);
      expect(back.signedAt).toBe(v.timestamp * 1000);
    }
  });
});

describe('compression', () => {
  test("pako's deflate (what dumpSessionData uses) matches Python's zlib.compress byte for byte", () => {
    expect(v.zlib).toHaveLength(inputs.length);
    inputs.forEach((input, i) => {
      expectSame(
        Buffer.from(deflate(input)).toString('hex'),
        v.zlib[i] ?? '',
        `input ${i} (${input.length} bytes)`,
      );
    });
  });
});
