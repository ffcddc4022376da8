import { describe, expect, test } from 'vitest';
import { credentialExtractor, extractCredential, extractCredentials } from '../src/index.ts';

const KEY = 'abcdefgh12345678abcdefgh12345678';
const TOKEN = '0123456789abcdef0123456789abcdef01234567';
const basic = (s: string) => `Basic ${Buffer.from(s, 'utf8').toString('base64')}`;

describe('what each header yields', () => {
  test('none at all', () => {
    expect(extractCredential({})).toBeNull();
    expect(extractCredential({ cookie: 'csrftoken=abc', authorization: 'Digest x' })).toBeNull();
    expect(extractCredential({ cookie: 'sessionid=', authorization: '   ' })).toBeNull();
    expect(extractCredential({ cookie: [], authorization: [] })).toBeNull();
  });

  test('session cookie, token, bearer, basic', () => {
    expect(extractCredential({ cookie: `a=b; sessionid=${KEY}` })).toEqual({
      kind: 'session',
      sessionKey: KEY,
    });
    expect(extractCredential({ authorization: `Token ${TOKEN}` })).toEqual({ kind: 'token', token: TOKEN });
    expect(extractCredential({ authorization: 'Bearer abc.def-ghi_' })).toEqual({
      kind: 'bearer',
      token: 'abc.def-ghi_',
    });
    expect(extractCredential({ authorization: basic('alice:s3:cret') })).toEqual({
      kind: 'basic',
      username: 'alice',
      password: 's3:cret',
    });
  });

  test('malformed, with the header at fault', () => {
    const cases: [Record<string, string | string[]>, 'cookie' | 'authorization', RegExp][] = [
      [{ cookie: 'sessionid=short' }, 'cookie', /session key/],
      [{ cookie: 'sessionid=ABCDEFGH12345678' }, 'cookie', /session key/],
      [{ cookie: `sessionid=${'a'.repeat(41)}` }, 'cookie', /session key/],
      [{ authorization: 'Token' }, 'authorization', /no credentials/],
      [{ authorization: 'Token abc def' }, 'authorization', /spaces/],
      [{ authorization: `Token ${TOKEN}0` }, 'authorization', /40 hexadecimal/],
      [{ authorization: `Token ${TOKEN.slice(1)}g` }, 'authorization', /40 hexadecimal/],
      [{ authorization: 'Bearer a"b' }, 'authorization', /b64token/],
      [{ authorization: 'Basic' }, 'authorization', /no credentials/],
      [{ authorization: 'Basic !!!!' }, 'authorization', /base64/],
      [{ authorization: basic(':pw') }, 'authorization', /empty username/],
      [{ authorization: basic('a\0b:pw') }, 'authorization', /NUL/],
      [{ authorization: `Token ${TOKEN}\u0001` }, 'authorization', /control characters/],
      [{ cookie: `sessionid=${KEY}\r\nx: y` }, 'cookie', /control characters/],
      [{ authorization: [`Token ${TOKEN}`, `Token ${TOKEN}`] }, 'authorization', /more than one/],
      [{ cookie: `sessionid=${KEY}; pad=${'x'.repeat(9000)}` }, 'cookie', /exceeds 8192 bytes/],
    ];
    for (const [headers, source, reason] of cases) {
      const got = extractCredential(headers);
      expect(got, JSON.stringify(headers).slice(0, 80)).toMatchObject({ kind: 'malformed', source });
      expect(got?.kind === 'malformed' ? got.reason : '', JSON.stringify(headers).slice(0, 80)).toMatch(
        reason,
      );
    }
  });

  test('Basic credentials: UTF-8, else Latin-1 (as DRF decodes them); no colon means an empty password', () => {
    expect(extractCredential({ authorization: basic('üser:päss') })).toMatchObject({
      username: 'üser',
      password: 'päss',
    });
    const latin1 = Buffer.from([0xfc, 0x3a, 0xe4]).toString('base64');
    expect(extractCredential({ authorization: `Basic ${latin1}` })).toMatchObject({
      username: 'ü',
      password: 'ä',
    });
    expect(extractCredential({ authorization: basic('alice') })).toMatchObject({
      username: 'alice',
      password: '',
    });
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('a:b')]).toString('base64');
    expect(extractCredential({ authorization: `Basic ${bom}` })).toMatchObject({ username: '\ufeffa' });
  });

  test('schemes are matched case-insensitively, ASCII only', () => {
    expect(extractCredential({ authorization: `tOkEn ${TOKEN}` })).toMatchObject({ kind: 'token' });
    // U+212A KELVIN SIGN lower-cases to "k" in JavaScript, but not in DRF's bytes.lower().
    expect(extractCredential({ authorization: `To\u212Aen ${TOKEN}` })).toBeNull();
  });
});

describe('precedence (TokenAuthentication, SessionAuthentication, BasicAuthentication)', () => {
  const session = `sessionid=${KEY}`;
  test('Token and Bearer win over the cookie, even when malformed', () => {
    expect(extractCredential({ cookie: session, authorization: `Token ${TOKEN}` })).toMatchObject({
      kind: 'token',
    });
    expect(extractCredential({ cookie: session, authorization: 'Bearer x' })).toMatchObject({
      kind: 'bearer',
    });
    expect(extractCredential({ cookie: session, authorization: 'Token nope' })).toMatchObject({
      kind: 'malformed',
      source: 'authorization',
    });
  });

  test('a session cookie wins over Basic, valid or not', () => {
    expect(extractCredential({ cookie: session, authorization: basic('a:b') })).toMatchObject({
      kind: 'session',
    });
    expect(extractCredential({ cookie: session, authorization: 'Basic !!!!' })).toMatchObject({
      kind: 'session',
    });
  });

  test('a bad session key is only anonymous to Django, so Basic still counts', () => {
    expect(extractCredential({ cookie: 'sessionid=bad', authorization: basic('a:b') })).toMatchObject({
      kind: 'basic',
    });
    expect(extractCredential({ cookie: 'sessionid=bad', authorization: 'Basic !!!!' })).toMatchObject({
      kind: 'malformed',
      source: 'authorization',
    });
    expect(extractCredential({ cookie: 'sessionid=bad', authorization: 'Digest x' })).toMatchObject({
      kind: 'malformed',
      source: 'cookie',
    });
  });
});

describe('extractCredentials: every candidate DRF would try, in its order', () => {
  const session = `sessionid=${KEY}`;
  test('a session is followed by Basic, valid or malformed, which DRF tries when the session fails', () => {
    expect(extractCredentials({ cookie: session, authorization: basic('a:b') })).toEqual([
      { kind: 'session', sessionKey: KEY },
      { kind: 'basic', username: 'a', password: 'b' },
    ]);
    expect(extractCredentials({ cookie: session, authorization: 'Basic !!!!' })).toMatchObject([
      { kind: 'session' },
      { kind: 'malformed', source: 'authorization' },
    ]);
  });

  test('Token and Bearer stand alone; a bad session key gives way to Basic; none is empty', () => {
    expect(extractCredentials({ cookie: session, authorization: `Token ${TOKEN}` })).toEqual([
      { kind: 'token', token: TOKEN },
    ]);
    expect(extractCredentials({ cookie: session, authorization: 'Bearer x' })).toHaveLength(1);
    expect(extractCredentials({ cookie: 'sessionid=bad', authorization: basic('a:b') })).toEqual([
      { kind: 'basic', username: 'a', password: 'b' },
    ]);
    expect(extractCredentials({ cookie: 'sessionid=bad' })).toMatchObject([{ kind: 'malformed' }]);
    expect(extractCredentials({ cookie: 'csrftoken=x' })).toEqual([]);
  });
});

describe('header shapes', () => {
  test('repeated Cookie headers are joined as Node joins them, the last sessionid wins', () => {
    const other = 'zzzzzzzz99999999';
    expect(extractCredential({ cookie: [`sessionid=${KEY}`, `sessionid=${other}`] })).toEqual({
      kind: 'session',
      sessionKey: other,
    });
    expect(extractCredential({ authorization: [`Token ${TOKEN}`] })).toMatchObject({ kind: 'token' });
  });

  test('non-string values are malformed, not a crash', () => {
    expect(extractCredential({ cookie: 5 as never })).toMatchObject({ kind: 'malformed', source: 'cookie' });
    expect(extractCredential({ authorization: [5] as never })).toMatchObject({ kind: 'malformed' });
  });

  test('only own properties count', () => {
    const headers = Object.create({ authorization: `Token ${TOKEN}` }) as Record<string, string>;
    expect(extractCredential(headers)).toBeNull();
  });

  test('Latin-1 header text is read as the UTF-8 Django decodes', () => {
    const utf8AsLatin1 = Buffer.from(`\u00a0sessionid=${KEY}`, 'utf8').toString('latin1');
    expect(extractCredential({ cookie: utf8AsLatin1 })).toEqual({ kind: 'session', sessionKey: KEY });
  });
});

describe('options', () => {
  test('cookieName and maxHeaderBytes', () => {
    expect(extractCredential({ cookie: `cvat_sid=${KEY}; sessionid=x` }, { cookieName: 'cvat_sid' })).toEqual(
      {
        kind: 'session',
        sessionKey: KEY,
      },
    );
    expect(extractCredential({ authorization: `Token ${TOKEN}` }, { maxHeaderBytes: 20 })).toMatchObject({
      kind: 'malformed',
      reason: 'authorization header exceeds 20 bytes',
    });
    const extract = credentialExtractor({ maxHeaderBytes: 100_000 });
    expect(extract.name).toBe('extractCredentials');
    expect(extract({ cookie: `pad=${'x'.repeat(20_000)}; sessionid=${KEY}` })).toMatchObject([
      { kind: 'session' },
    ]);
  });

  test('are validated with the option named', () => {
    expect(() => credentialExtractor({ cookieName: '' })).toThrow(/options.cookieName/);
    expect(() => credentialExtractor({ cookieName: 'a=b' })).toThrow(TypeError);
    expect(() => credentialExtractor({ cookieName: ' sid' })).toThrow(TypeError);
    expect(() => credentialExtractor({ maxHeaderBytes: 0 })).toThrow(RangeError);
    expect(() => credentialExtractor({ maxHeaderBytes: 1.5 })).toThrow(/options.maxHeaderBytes/);
    expect(() => extractCredential(null as never)).toThrow(TypeError);
  });
});
