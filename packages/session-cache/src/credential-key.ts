import { createHmac } from 'node:crypto';
import type { Credential } from '@sluice/django';

/**
 * The cache key of a credential: HMAC-SHA256 under a server-side pepper of the credential kind and
 * its secret parts, base64url (43 characters). Redis, logs, events and metrics only ever see this.
 *
 * @example
 * credentialKey(pepper, { kind: 'session', sessionKey }) // 'q3J0...'
 */
export function credentialKey(pepper: Buffer, credential: Credential): string {
  const h = createHmac('sha256', pepper).update(`${credential.kind}\0`);
  if (credential.kind === 'basic') {
    // Length-prefixed so that ("a:b", "c") and ("a", "b:c") never collide.
    h.update(`${Buffer.byteLength(credential.username)}\0${credential.username}\0${credential.password}`);
  } else {
    h.update(credential.kind === 'session' ? credential.sessionKey : credential.token);
  }
  return h.digest('base64url');
}

/** A short, loggable id for a cache key (a prefix of the HMAC, never the credential). */
export function keyId(key: string): string {
  return key.slice(0, 12);
}
