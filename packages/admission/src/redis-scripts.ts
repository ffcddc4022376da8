import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/** A Redis client or a Redis Cluster client from ioredis. */
export type RedisLike = Redis | Cluster;

/** A Lua script run with EVALSHA, falling back to EVAL when the server does not have it cached. */
export class LuaScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(
    client: RedisLike,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return client.eval(this.source, keys.length, ...keys, ...args);
      }
      throw error;
    }
  }
}

// Every script takes the server clock (TIME), so processes with skewed clocks agree on expiry.
// All keys of one semaphore share a hash tag, so each script touches one Redis Cluster slot.
const clock = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS: leases, bulk leases, this key's leases (= KEYS[1] when there is no per-key limit).
 * ARGV: lease id, lease ms, limit, bulk cap (-1 for interactive work), per-key limit (0 = none).
 * Prunes expired leases, then admits when the total, the bulk share and the key's share allow.
 * Returns { status, leases held, ms until the soonest blocking lease expires, bulk leases held }:
 * status 1 = granted, 0 = limit reached, 2 = bulk share reached, 3 = key's share reached.
 */
export const acquireScript = new LuaScript(`${clock}
local ttl = tonumber(ARGV[2])
local function soonest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return math.max(0, tonumber(first[2]) - now) end
  return ttl
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
local bulk = redis.call('ZCARD', KEYS[2])
if count >= tonumber(ARGV[3]) then return {0, count, soonest(KEYS[1]), bulk} end
local bulkCap = tonumber(ARGV[4])
if bulkCap >= 0 and bulk >= bulkCap then return {2, count, soonest(KEYS[2]), bulk} end
local perKey = tonumber(ARGV[5])
if perKey > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= perKey then return {3, count, soonest(KEYS[3]), bulk} end
end
local expiry = now + ttl
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
if bulkCap >= 0 then
  redis.call('ZADD', KEYS[2], expiry, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  bulk = bulk + 1
end
if perKey > 0 then
  redis.call('ZADD', KEYS[3], expiry, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ttl * 2)
end
return {1, count + 1, 0, bulk}
`);

/**
 * KEYS: leases, bulk leases, then one key-lease set per lease (= KEYS[1] when none).
 * ARGV: release channel, then the lease ids. Removes the leases and, when any was held,
 * publishes how many on the channel so waiting processes retry at once.
 */
export const releaseScript = new LuaScript(`
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  removed = removed + redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  local k = KEYS[i + 1]
  if k ~= KEYS[1] then redis.call('ZREM', k, id) end
end
if removed > 0 then redis.call('PUBLISH', ARGV[1], removed) end
return removed
`);

/**
 * KEYS: leases, bulk leases, then one key-lease set per lease (= KEYS[1] when none).
 * ARGV: lease ms, then pairs of (lease id, '1' for bulk or '0'). Pushes every lease's expiry
 * forward, adding it back when it is missing (Redis restarted, or the lease was taken while
 * Redis was unreachable), so Redis counts every permit this process really holds.
 */
export const renewScript = new LuaScript(`${clock}
local ttl = tonumber(ARGV[1])
local expiry = now + ttl
local n = (#ARGV - 1) / 2
for i = 1, n do
  local id = ARGV[2 * i]
  redis.call('ZADD', KEYS[1], expiry, id)
  if ARGV[2 * i + 1] == '1' then redis.call('ZADD', KEYS[2], expiry, id) end
  local k = KEYS[i + 2]
  if k ~= KEYS[1] then
    redis.call('ZADD', k, expiry, id)
    redis.call('PEXPIRE', k, ttl * 2)
  end
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return n
`);
