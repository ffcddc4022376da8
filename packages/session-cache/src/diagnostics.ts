import diagnosticsChannel from 'node:diagnostics_channel';

/**
 * `node:diagnostics_channel` channels, one per operation. Messages carry `keyId` (a prefix of the
 * HMAC cache key), never a credential.
 *
 * - `sluice:session-cache:lookup`: `{ keyId, kind, tier: 'l1' | 'l2' | 'validator', status: 'valid' | 'invalid' | 'error', coalesced }`
 * - `sluice:session-cache:validate`: `{ keyId, kind, outcome: 'valid' | 'invalid' | 'error', durationMs, reason? }`
 * - `sluice:session-cache:invalidate`: `{ keyId, origin: 'local' | 'remote' }`
 * - `sluice:session-cache:l2`: `{ state: 'down' | 'up', error?, downForMs? }`
 */
export const channels = {
  lookup: diagnosticsChannel.channel('sluice:session-cache:lookup'),
  validate: diagnosticsChannel.channel('sluice:session-cache:validate'),
  invalidate: diagnosticsChannel.channel('sluice:session-cache:invalidate'),
  l2: diagnosticsChannel.channel('sluice:session-cache:l2'),
} as const;
