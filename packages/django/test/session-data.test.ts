import { deflateSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import {
  DEFAULT_SESSION_SALT,
  dumpSessionData,
  encodeBase62,
  encodeBase64Url,
  isSessionDataError,
  loadSessionData,
  readSessionDataUnverified,
  type SessionDataError,
  type SessionDataErrorReason,
  saltedHmac,
  signObject,
  unsignObject,
} from '../src/index.ts';

const secretKey = 'unit-test-secret-key';
const now = () => 1_700_000_000_000;

/** Signs raw payload text the way Django's TimestampSigner does, whatever it contains. */
function signRaw(payload: string, key = secretKey, salt = DEFAULT_SESSION_SALT): string {
  const value = `${payload}:${encodeBase62(1_700_000_000)}`;
  return `${value}:${encodeBase64Url(saltedHmac(`${salt}signer`, value, key, 'sha256'))}`;
}

function errorOf(fn: () => unknown): SessionDataError {
  try {
    fn();
  } catch (error) {
    if (isSessionDataError(error)) return error;
    throw error;
  }
  throw new Error('expected a SessionDataError');
}

function expectRefused(
  fn: () => unknown,
  code: SessionDataError['code'],
  reason: SessionDataErrorReason,
): void {
  const error = errorOf(fn);
  expect({ code: error.code, reason: error.reason }).toEqual({ code, reason });
}

describe('loadSessionData', () => {
  test('round-trips what dumpSessionData writes', () => {
    const session = { _auth_user_id: '42', nested: { list: [1, 'two', null, true] }, ü: 'ö' };
    const data = dumpSessionData(session, { secretKey, now });
    expect(data.endsWith(`:${encodeBase62(1_700_000_000)}`, data.lastIndexOf(':'))).toBe(true);
    expect(loadSessionData(data, { secretKey })).toEqual(session);
  });

  test('compresses only when that makes the payload shorter', () => {
    expect(dumpSessionData({ a: 1 }, { secretKey, now }).startsWith('.')).toBe(false);
    expect(dumpSessionData({ a: 'x'.repeat(200) }, { secretKey, now }).startsWith('.')).toBe(true);
  });

  test('a different salt is a different signature (e.g. the signed_cookies backend)', () => {
    const salt = 'django.contrib.sessions.backends.signed_cookies';
    const data = dumpSessionData({ a: 1 }, { secretKey, salt, now });
    expect(loadSessionData(data, { secretKey, salt })).toEqual({ a: 1 });
    expectRefused(() => loadSessionData(data, { secretKey }), 'E_SESSION_BAD_SIGNATURE', 'signature');
  });

  test('refuses what is not Django session data, before any key is used', () => {
    const cases: [unknown, SessionDataErrorReason][] = [
      [42, 'not-a-string'],
      ['', 'structure'],
      ['abc:def', 'structure'],
      [':abc', 'structure'],
      ['a b:1:sig', 'structure'],
      ['e30:1r31e%:sig', 'structure'],
      ['e30:!:sig', 'structure'],
      ['e30:1r31eqqqqqqq:sig', 'timestamp'],
      ['e30::sig', 'timestamp'],
      ['abcd', 'structure'],
    ];
    for (const [data, reason] of cases) {
      expectRefused(() => loadSessionData(data as string, { secretKey }), 'E_SESSION_MALFORMED', reason);
    }
  });

  test('checks the signature before decoding anything', () => {
    expectRefused(() => loadSessionData('!!!', { secretKey }), 'E_SESSION_MALFORMED', 'structure');
    expectRefused(
      () => loadSessionData(`.${'A'.repeat(50)}:1r31eq:${'x'.repeat(43)}`, { secretKey }),
      'E_SESSION_BAD_SIGNATURE',
      'signature',
    );
    expectRefused(
      () => loadSessionData('e30:1r31eq:short', { secretKey }),
      'E_SESSION_BAD_SIGNATURE',
      'signature',
    );
  });

  test('a signature differing only in its padding bits is still a different signature', () => {
    const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const data = dumpSessionData({ a: 1 }, { secretKey, now });
    const last = ALPHABET.indexOf(data.at(-1) ?? '');
    expect(last % 4).toBe(0);
    for (let bits = 1; bits < 4; bits++) {
      const sameDigest = data.slice(0, -1) + ALPHABET[last + bits];
      expect(Buffer.from(sameDigest.slice(-43), 'base64url')).toEqual(
        Buffer.from(data.slice(-43), 'base64url'),
      );
      expectRefused(() => loadSessionData(sameDigest, { secretKey }), 'E_SESSION_BAD_SIGNATURE', 'signature');
    }
  });

  test('refuses signed payloads that are not base64, zlib, JSON or a dictionary', () => {
    expectRefused(() => loadSessionData(signRaw('e30:x'), { secretKey }), 'E_SESSION_MALFORMED', 'base64');
    expectRefused(() => loadSessionData(signRaw('a'), { secretKey }), 'E_SESSION_MALFORMED', 'base64');
    expectRefused(() => loadSessionData(signRaw('.e30'), { secretKey }), 'E_SESSION_MALFORMED', 'decompress');
    expectRefused(() => loadSessionData(signRaw('.'), { secretKey }), 'E_SESSION_MALFORMED', 'decompress');
    expectRefused(
      () => loadSessionData(signRaw(encodeBase64Url(Buffer.from('{"a":'))), { secretKey }),
      'E_SESSION_MALFORMED',
      'json',
    );
    for (const json of ['[1,2]', '"s"', '3', 'null']) {
      expectRefused(
        () => loadSessionData(signRaw(encodeBase64Url(Buffer.from(json))), { secretKey }),
        'E_SESSION_MALFORMED',
        'not-an-object',
      );
    }
  });

  test('reads the JSON as Latin-1, like Django', () => {
    const data = signRaw(
      encodeBase64Url(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe9, 0x22, 0x7d])),
    );
    expect(loadSessionData(data, { secretKey })).toEqual({ a: '\u00e9' });
  });

  test('a zip bomb is a typed error, not an out-of-memory', () => {
    const bomb = deflateSync(Buffer.alloc(17 * 1024 * 1024, 0x20));
    const data = signRaw(`.${encodeBase64Url(bomb)}`);
    expectRefused(
      () => loadSessionData(data, { secretKey }),
      'E_SESSION_MALFORMED',
      'decompressed-too-large',
    );
    expectRefused(() => readSessionDataUnverified(data), 'E_SESSION_MALFORMED', 'decompressed-too-large');
    const small = signRaw(`.${encodeBase64Url(deflateSync(Buffer.from(`{"a":"${'x'.repeat(5000)}"}`)))}`);
    expect(loadSessionData(small, { secretKey })).toEqual({ a: 'x'.repeat(5000) });
    expectRefused(
      () => loadSessionData(small, { secretKey, maxDecompressedBytes: 1000 }),
      'E_SESSION_MALFORMED',
      'decompressed-too-large',
    );
  });

  test('bounds the input length', () => {
    const data = dumpSessionData({ a: 'x' }, { secretKey, now });
    expectRefused(
      () => loadSessionData(data, { secretKey, maxLength: data.length - 1 }),
      'E_SESSION_MALFORMED',
      'too-large',
    );
    expect(loadSessionData(data, { secretKey, maxLength: data.length })).toEqual({ a: 'x' });
    expectRefused(
      () => loadSessionData('x'.repeat(5 * 1024 * 1024), { secretKey }),
      'E_SESSION_MALFORMED',
      'too-large',
    );
  });

  test('validates options and names the bad one', () => {
    const data = dumpSessionData({}, { secretKey, now });
    expect(() => loadSessionData(data, undefined as never)).toThrow(/options should be an object/);
    expect(() => loadSessionData(data, { secretKey: '' })).toThrow(
      /options.secretKey should be a non-empty string/,
    );
    expect(() => loadSessionData(data, { secretKey, fallbackKeys: 'old' as never })).toThrow(
      /options.fallbackKeys/,
    );
    expect(() => loadSessionData(data, { secretKey, fallbackKeys: [''] })).toThrow(
      /options.fallbackKeys\[0\]/,
    );
    expect(() => loadSessionData(data, { secretKey, maxLength: 0 })).toThrow(RangeError);
    expect(() => loadSessionData(data, { secretKey, maxDecompressedBytes: 1.5 })).toThrow(
      /maxDecompressedBytes/,
    );
    expect(() => loadSessionData(data, { secretKey, allowLegacy: 'yes' as never })).toThrow(/allowLegacy/);
    expect(() => loadSessionData(data, { secretKey, salt: 1 as never })).toThrow(/options.salt/);
  });
});

describe('readSessionDataUnverified', () => {
  test('decodes without a key and without checking the signature', () => {
    const data = dumpSessionData({ a: 1 }, { secretKey: 'someone-else', now });
    expect(readSessionDataUnverified(data)).toEqual({ a: 1 });
    expect(readSessionDataUnverified(`${data.slice(0, data.lastIndexOf(':'))}:${'A'.repeat(43)}`)).toEqual({
      a: 1,
    });
    expectRefused(() => readSessionDataUnverified('garbage'), 'E_SESSION_MALFORMED', 'structure');
  });
});

describe('dumpSessionData', () => {
  test('validates its arguments', () => {
    expect(() => dumpSessionData({}, { secretKey: '' })).toThrow(TypeError);
    expect(() => dumpSessionData(null as never, { secretKey })).toThrow(/session should be/);
    expect(() => dumpSessionData([] as never, { secretKey })).toThrow(/session should be/);
    expect(() => dumpSessionData({}, { secretKey, now: 5 as never })).toThrow(/options.now/);
    expect(() => dumpSessionData({}, { secretKey, now: () => Number.NaN })).toThrow(RangeError);
    expect(() => dumpSessionData({ d: new Date() }, { secretKey, now })).toThrow(TypeError);
  });

  test('uses the clock for the timestamp (whole seconds)', () => {
    const a = dumpSessionData({}, { secretKey, now: () => 1_700_000_000_999 });
    expect(a.split(':')[1]).toBe(encodeBase62(1_700_000_000));
  });
});

describe('signObject / unsignObject', () => {
  test('default salt and a custom one', () => {
    const signed = signObject({ x: [1, 2] }, { secretKey, now });
    expect(unsignObject(signed, { secretKey })).toEqual({
      value: { x: [1, 2] },
      signedAt: 1_700_000_000_000,
    });
    expectRefused(
      () => unsignObject(signed, { secretKey, salt: 'other' }),
      'E_SESSION_BAD_SIGNATURE',
      'signature',
    );
  });
});

describe('SessionDataError', () => {
  test('carries code, reason and cause; the guard recognises it', () => {
    const error = errorOf(() => loadSessionData(signRaw(encodeBase64Url(Buffer.from('{'))), { secretKey }));
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('SessionDataError');
    expect(error.message).toMatch(/malformed \(json\)/);
    expect(error.cause).toBeInstanceOf(SyntaxError);
    expect(isSessionDataError(new Error('x'))).toBe(false);
    expect(isSessionDataError(null)).toBe(false);
    // instanceof, as every Sluice guard: a look-alike plain Error is not one
    const lookalike = Object.assign(new Error('x'), {
      name: 'SessionDataError',
      code: 'E_SESSION_MALFORMED',
    });
    expect(isSessionDataError(lookalike)).toBe(false);
    expect(isSessionDataError(error, 'E_SESSION_MALFORMED')).toBe(true);
    expect(isSessionDataError(error, 'E_SESSION_BAD_SIGNATURE')).toBe(false);
  });
});
