import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { credentialKey, keyId } from '../src/credential-key.ts';

const pepper = Buffer.from('a pepper of at least sixteen bytes');

describe('credentialKey', () => {
  it('is a 43-character base64url HMAC that depends on the pepper', () => {
    const k = credentialKey(pepper, { kind: 'session', sessionKey: 'abcdefgh12345678' });
    expect(k).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(credentialKey(pepper, { kind: 'session', sessionKey: 'abcdefgh12345678' })).toBe(k);
    expect(
      credentialKey(Buffer.from('another pepper, also long enough'), {
        kind: 'session',
        sessionKey: 'abcdefgh12345678',
      }),
    ).not.toBe(k);
    expect(keyId(k)).toBe(k.slice(0, 12));
  });

  it('derives the same keys from one release to the next (instances share them in Redis)', () => {
    expect(credentialKey(pepper, { kind: 'session', sessionKey: 'abcdefgh12345678' })).toBe(
      'bKQaaXDyw6fwzVbgHqoH3_mcNpw1eeR-EYSLaMCqZ88',
    );
    expect(credentialKey(pepper, { kind: 'token', token: 'a'.repeat(40) })).toBe(
      '8HQEBR2haib-eyAmfhU5QbTEi1cQiHtDuRZe6h5oCas',
    );
    expect(credentialKey(pepper, { kind: 'bearer', token: 'b64.token' })).toBe(
      'NE6-GN6KuwpvL2JFqOEmLiF6RNjA-lB2QZ2Ad5dmrMg',
    );
    expect(credentialKey(pepper, { kind: 'basic', username: 'ada', password: 'pw:é' })).toBe(
      'dHTIZ0ShaTBeducypFU9OmCchIhkZ4ClHzCr-aElxAQ',
    );
  });

  it('separates credential kinds carrying the same secret', () => {
    const secret = 'a'.repeat(40);
    const keys = new Set([
      credentialKey(pepper, { kind: 'session', sessionKey: secret }),
      credentialKey(pepper, { kind: 'token', token: secret }),
      credentialKey(pepper, { kind: 'bearer', token: secret }),
      credentialKey(pepper, { kind: 'basic', username: secret, password: '' }),
    ]);
    expect(keys.size).toBe(4);
  });

  it('never confuses where a Basic username ends and the password begins', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (u1, p1, u2, p2) => {
        fc.pre(u1 !== u2 || p1 !== p2);
        expect(credentialKey(pepper, { kind: 'basic', username: u1, password: p1 })).not.toBe(
          credentialKey(pepper, { kind: 'basic', username: u2, password: p2 }),
        );
      }),
    );
    expect(credentialKey(pepper, { kind: 'basic', username: 'a:b', password: 'c' })).not.toBe(
      credentialKey(pepper, { kind: 'basic', username: 'a', password: 'b:c' }),
    );
  });

  it('never contains the credential', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9]{8,40}$/), (sessionKey) => {
        const k = credentialKey(pepper, { kind: 'session', sessionKey });
        expect(k.includes(sessionKey)).toBe(false);
      }),
    );
  });
});
