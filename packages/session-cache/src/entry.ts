import { type Identity, isIdentity } from './identity.js';

/** What a cache tier holds for one credential key: a positive or a negative answer, with its own expiry. */
export type CacheEntry =
  | { readonly valid: true; readonly identity: Identity; readonly expiresAt: number }
  | { readonly valid: false; readonly reason: string; readonly expiresAt: number };

/** Serialises an entry for Redis: small JSON, no credential (the identity and an expiry only). */
export function encodeEntry(entry: CacheEntry): string {
  return entry.valid
    ? JSON.stringify({ v: 1, e: entry.expiresAt, i: entry.identity })
    : JSON.stringify({ v: 0, e: entry.expiresAt, r: entry.reason });
}

/** Parses what {@link encodeEntry} wrote; anything else (corrupt, foreign, expired) is `undefined`. */
export function decodeEntry(raw: string, now: number): CacheEntry | undefined {
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const r = o as Record<string, unknown>;
  const expiresAt = r.e;
  if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt) || expiresAt <= now) return undefined;
  if (r.v === 1 && isIdentity(r.i)) {
    // Copied field by field: whatever else the stored identity carries is dropped.
    const { userId, username, isActive, isStaff, isSuperuser, credentialKind, expiresAt: end } = r.i;
    const identity = { userId, username, isActive, isStaff, isSuperuser, credentialKind, expiresAt: end };
    return { valid: true, expiresAt, identity };
  }
  if (r.v === 0 && typeof r.r === 'string') return { valid: false, reason: r.r, expiresAt };
  return undefined;
}
