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
  const h = createHmac('sha256', pepper);
  switch (credential.kind) {
    case 'session':
      h.update('session\0').update(credential.sessionKey);
      break;
    case 'token':
      h.update('token\0').update(credential.token);
      break;
    case 'bearer':
      h.update('bearer\0').update(credential.token);
      break;
    case 'basic':
      // Length-prefixed so that ("a:b", "c") and ("a", "b:c") never collide.
      h.update(`basic\0${Buffer.byteLength(credential.username)}\0`)
        .update(credential.username)
        .update('\0')
        .update(credential.password);
      break;
    default:
      return unreachable(credential);
  }
  return h.digest('base64url');
}

/** A short, loggable id for a cache key (a prefix of the HMAC, never the credential). */
export function keyId(key: string): string {
  return key.slice(0, 12);
}

function unreachable(x: never): never {
  throw new TypeError(`unknown credential kind ${JSON.stringify((x as { kind?: unknown }).kind)}`);
}
