import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry } from '../src/entry.ts';
import { identityFor } from './helpers.ts';

describe('cache entries', () => {
  it('round-trip positive and negative entries as small JSON', () => {
    const positive = { valid: true as const, identity: identityFor(7, 'session', 5_000), expiresAt: 2_000 };
    const raw = encodeEntry(positive);
    expect(raw.length).toBeLessThan(200);
    expect(decodeEntry(raw, 1_000)).toEqual(positive);
    const negative = { valid: false as const, reason: 'session-not-found', expiresAt: 2_000 };
    expect(decodeEntry(encodeEntry(negative), 1_000)).toEqual(negative);
  });

  it('treats expired, corrupt and foreign values as absent', () => {
    const positive = { valid: true as const, identity: identityFor(7), expiresAt: 2_000 };
    expect(decodeEntry(encodeEntry(positive), 2_000)).toBeUndefined();
    expect(decodeEntry('not json', 0)).toBeUndefined();
    expect(decodeEntry('null', 0)).toBeUndefined();
    expect(decodeEntry(JSON.stringify({ v: 1, e: 5_000, i: { userId: 'x' } }), 0)).toBeUndefined();
    expect(decodeEntry(JSON.stringify({ v: 2, e: 5_000 }), 0)).toBeUndefined();
  });

  it('keeps only identity fields when decoding', () => {
    const raw = JSON.stringify({ v: 1, e: 5_000, i: { ...identityFor(3), password: 'leak' } });
    const entry = decodeEntry(raw, 0);
    expect(entry?.valid && 'password' in entry.identity).toBe(false);
  });
});
