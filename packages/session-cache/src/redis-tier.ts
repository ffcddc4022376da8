import { Health, isTimeoutError, withTimeout } from '@sluice/kit';
import type { ResolvedOptions } from './cache-options.js';
import { L2Error } from './errors.js';
import { quitClient, type RedisClient } from './redis-client.js';

/** Options of {@link RedisTier}: the resolved `l2` options, and the client built from them. */
export type RedisTierOptions = NonNullable<ResolvedOptions['l2']> & {
  readonly client: RedisClient;
  /** Whether `close()` should quit the client (true when the cache built it). */
  readonly ownsClient: boolean;
  readonly now: () => number;
  /** One command failed. */
  readonly onError: (error: L2Error) => void;
};

const UNLOCK_SCRIPT =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/** Adds a key to a user's set and extends the set's lifetime to the entry's (never shortens it). */
const INDEX_SCRIPT =
  "redis.call('sadd', KEYS[1], ARGV[1]) if redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then " +
  "redis.call('pexpire', KEYS[1], ARGV[2]) end return 1";

/**
 * The Redis (L2) tier. Keys: `<prefix>c:<hmac>` (an entry), `<prefix>u:<userId>` (a set of the
 * user's entry keys, as HMACs, living as long as the longest of them), `<prefix>l:<hmac>` (a
 * single-flight lock). Every command is bounded by `timeoutMs` and refused at once while the
 * client is not connected (no offline queue grows). Its health is the kit's `Health`: failed
 * commands (`failureThreshold` in a row) or a lost connection mark it down, then a PING every
 * `cooldownMs` (or the client's `ready`) brings it back; the cache skips L2 while it is not up.
 */
export class RedisTier {
  readonly client: RedisClient;
  readonly health: Health;
  readonly #o: RedisTierOptions;
  #closed = false;
  readonly #onReady = (): void => this.health.success();
  readonly #onClose = (): void =>
    this.health.suspect(new L2Error('E_L2_UNAVAILABLE', 'connection', 'the redis connection closed'));

  constructor(options: RedisTierOptions) {
    this.#o = options;
    this.client = options.client;
    const ready = this.client.status === 'ready';
    this.health = new Health({
      name: 'redis',
      probe: async () => {
        if (this.client.status !== 'ready') throw this.#notConnected('ping');
        await this.client.ping();
      },
      probeIntervalMs: options.cooldownMs,
      probeTimeoutMs: options.timeoutMs,
      failureThreshold: options.failureThreshold,
      initial: ready ? 'up' : 'connecting',
      connectTimeoutMs: ready ? undefined : options.cooldownMs,
      now: options.now,
    });
    this.client.on('ready', this.#onReady);
    this.client.on('close', this.#onClose);
    if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
  }

  /** True when requests may use L2 right now. */
  get available(): boolean {
    return !this.#closed && this.health.state === 'up' && this.client.status === 'ready';
  }

  get(key: string): Promise<string | null> {
    return this.#run('get', () => this.client.get(this.#key('c', key)));
  }

  /** Stores an entry for `ttlMs` and, for a valid one, adds its key to its user's set. */
  async set(key: string, value: string, ttlMs: number, userId: number | undefined): Promise<void> {
    const px = Math.max(1, Math.ceil(ttlMs));
    await Promise.all([
      this.#run('set', () => this.client.set(this.#key('c', key), value, 'PX', px)),
      userId === undefined
        ? undefined
        : this.#run('index', () => this.client.eval(INDEX_SCRIPT, 1, this.#key('u', userId), key, px)),
    ]);
  }

  async del(key: string): Promise<void> {
    await this.#run('del', () => this.client.del(this.#key('c', key)));
  }

  /** Deletes every entry in `userId`'s set but `except`; resolves the keys whose entry existed. */
  async evictUser(userId: number, except: string | undefined): Promise<string[]> {
    const set = this.#key('u', userId);
    const keys = (await this.#run('smembers', () => this.client.smembers(set))).filter((k) => k !== except);
    if (keys.length === 0) return [];
    // One DEL per key: the entries live in different slots of a cluster.
    const deleted = await Promise.all(
      keys.map((k) => this.#run('del', () => this.client.del(this.#key('c', k)))),
    );
    await this.#run('srem', () => this.client.srem(set, ...keys));
    return keys.filter((_, i) => deleted[i] === 1);
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run('publish', () => this.client.publish(channel, message));
  }

  /** `SET NX PX`: true when this caller now holds the single-flight lock of `key`. */
  async lock(key: string, token: string, ttlMs: number): Promise<boolean> {
    return (
      (await this.#run('lock', () => this.client.set(this.#key('l', key), token, 'PX', ttlMs, 'NX'))) === 'OK'
    );
  }

  /** Releases the lock only if this caller still holds it. */
  async unlock(key: string, token: string): Promise<void> {
    await this.#run('unlock', () => this.client.eval(UNLOCK_SCRIPT, 1, this.#key('l', key), token));
  }

  /** Stops probing and quits the client when the tier built it. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.client.off('ready', this.#onReady);
    this.client.off('close', this.#onClose);
    await this.health.close();
    if (this.#o.ownsClient) await quitClient(this.client, this.#o.timeoutMs);
  }

  /** `c`: an entry, `u`: a user's set, `l`: a lock. */
  #key(kind: 'c' | 'u' | 'l', id: string | number): string {
    return `${this.#o.prefix}${kind}:${id}`;
  }

  #notConnected(operation: string): L2Error {
    return new L2Error('E_L2_UNAVAILABLE', operation, `redis is not connected (${this.client.status})`);
  }

  async #run<T>(operation: string, command: () => Promise<T>): Promise<T> {
    let error: L2Error;
    if (this.#closed) error = new L2Error('E_L2_UNAVAILABLE', operation, 'the L2 tier is closed');
    else if (this.client.status !== 'ready') error = this.#notConnected(operation);
    else {
      try {
        const value = await withTimeout(command, this.#o.timeoutMs);
        this.health.success();
        return value;
      } catch (cause) {
        error = isTimeoutError(cause)
          ? new L2Error(
              'E_L2_TIMEOUT',
              operation,
              `redis ${operation} took longer than ${this.#o.timeoutMs} ms`,
            )
          : new L2Error('E_L2_ERROR', operation, `redis ${operation} failed: ${messageOf(cause)}`, { cause });
      }
    }
    this.#o.onError(error);
    this.health.failure(error);
    throw error;
  }
}

/** The L2 form of an error that took L2 down (a command's, a probe's, or the connect timeout's). */
export function toL2Error(error: unknown): L2Error {
  if (error instanceof L2Error) return error;
  return isTimeoutError(error)
    ? new L2Error('E_L2_TIMEOUT', 'ping', messageOf(error), { cause: error })
    : new L2Error('E_L2_UNAVAILABLE', 'connect', messageOf(error), { cause: error });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
