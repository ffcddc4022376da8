import { describe, expect, test } from 'vitest';
import {
  decodeBase62,
  decodeBase64,
  decodeBase64Url,
  encodeBase62,
  encodeBase64Url,
  isValidSessionKey,
  saltedHmac,
} from '../src/index.ts';

describe('base62', () => {
  test('round-trips and matches Django for known values', () => {
    expect(encodeBase62(1_700_000_000)).toBe('1r31eq');
    expect(decodeBase62('1r31eq')).toBe(1_700_000_000);
    expect(encodeBase62(0)).toBe('0');
    expect(encodeBase62(-61)).toBe('-z');
    for (const n of [1, 61, 62, 3843, 3844, 2 ** 40]) expect(decodeBase62(encodeBase62(n))).toBe(n);
  });

  test('reads a lone "-" as 0 like Django, and refuses what Django cannot decode', () => {
    expect(decodeBase62('-')).toBe(0);
    for (const bad of ['', '+1', '1.5', 'a b', '12345678901', '--1'])
      expect(decodeBase62(bad), bad).toBeUndefined();
    expect(() => encodeBase62(1.5)).toThrow(RangeError);
  });
});

describe('base64', () => {
  test('URL-safe without padding, strict', () => {
    expect(encodeBase64Url(Buffer.from('"hello"'))).toBe('ImhlbGxvIg');
    expect(decodeBase64Url('ImhlbGxvIg')?.toString()).toBe('"hello"');
    expect(decodeBase64Url('')?.length).toBe(0);
    for (const bad of ['a', 'ab+c', 'ab/c', 'ab=c', 'abcd=', 'ab c'])
      expect(decodeBase64Url(bad), bad).toBeUndefined();
  });

  test('standard with padding, strict', () => {
    expect(decodeBase64('dXNlcjpwYXNz')?.toString()).toBe('user:pass');
    expect(decodeBase64('dXNlcg==')?.toString()).toBe('user');
    for (const bad of ['dXNlcg', 'dXNlcg=', 'dXNl-g==', 'dX=lcg==', 'dXNlcg===', '!!!!']) {
      expect(decodeBase64(bad), bad).toBeUndefined();
    }
  });
});

describe('salted_hmac and session keys', () => {
  test('saltedHmac is hmac(hash(salt + secret), value)', async () => {
    const { createHash, createHmac } = await import('node:crypto');
    const key = createHash('sha256').update('saltsecret').digest();
    expect(saltedHmac('salt', 'value', 'secret', 'sha256')).toEqual(
      createHmac('sha256', key).update('value').digest(),
    );
    const key1 = createHash('sha1').update('saltsecret').digest();
    expect(saltedHmac('salt', 'value', 'secret')).toEqual(createHmac('sha1', key1).update('value').digest());
  });

  test('session keys are [a-z0-9]{8,40}', () => {
    expect(isValidSessionKey('abcdefgh')).toBe(true);
    expect(isValidSessionKey('a'.repeat(40))).toBe(true);
    for (const bad of ['abcdefg', 'a'.repeat(41), 'ABCDEFGH', 'abcdefgh-', 'abcdefgh\n', '']) {
      expect(isValidSessionKey(bad), bad).toBe(false);
    }
    expect(isValidSessionKey(12345678 as unknown as string)).toBe(false);
  });
});
