import type { Cluster, Redis } from 'ioredis';
import { Breaker } from './breaker.js';
import { L2Error } from './errors.js';

/** A Redis client the L2 tier can use: an ioredis `Redis` or `Cluster`. */
export type RedisClient = Redis | Cluster;

/** Options of {@link RedisTier}. */
export interface RedisTierOptions {
  readonly client: RedisClient;
  /** Whether `close()` should quit the client (true when the tier built it from a URL). */
  readonly ownsClient: boolean;
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  readonly now: () => number;
  readonly onDown: (error: L2Error) => void;
  readonly onUp: (downForMs: number) => void;
  readonly onError: (error: L2Error) => void;
}

const UNLOCK_SCRIPT =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/**
 * The Redis (L2) tier: every command is bounded by `timeoutMs`, refused at once while the client
 * is not connected (no offline queue grows), and skipped entirely while the breaker is open. It
 * never throws to the cache on the hot path: callers get `L2Error`s they turn into a fallback.
 */
export class RedisTier {
  readonly client: RedisClient;
  readonly breaker: Breaker;
  readonly #o: RedisTierOptions;
  #probeTimer: NodeJS.Timeout | undefined;
  #startupTimer: NodeJS.Timeout | undefined;
  /** True until the client is first ready: requests skip L2 quietly instead of counting failures. */
  #starting: boolean;
  #closed = false;

  constructor(options: RedisTierOptions) {
    this.#o = options;
    this.client = options.client;
    this.breaker = new Breaker({
      failureThreshold: options.failureThreshold,
      cooldownMs: options.cooldownMs,
      now: options.now,
      onOpen: (error) => {
        options.onDown(toL2Error('down', error));
        this.#scheduleProbe();
      },
      onClose: (downForMs) => options.onUp(downForMs),
    });
    this.#starting = this.client.status !== 'ready';
    if (this.#starting) {
      const ready = (): void => {
        this.#starting = false;
        if (this.#startupTimer) clearTimeout(this.#startupTimer);
        this.#startupTimer = undefined;
      };
      this.client.once('ready', ready);
      // Not ready within a cooldown: say so (l2 down) and let the probe bring it back.
      this.#startupTimer = setTimeout(() => {
        this.#startupTimer = undefined;
        if (!this.#starting || this.#closed) return;
        this.#starting = false;
        this.breaker.forceOpen(
          new L2Error(
            'E_L2_UNAVAILABLE',
            'connect',
            `redis did not become ready within ${options.cooldownMs} ms`,
          ),
        );
      }, options.cooldownMs);
      this.#startupTimer.unref();
      if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
    }
  }

  /** True when requests may use L2 right now. */
  get available(): boolean {
    return this.breaker.allowsRequests && this.client.status === 'ready' && !this.#closed;
  }

  /** True until the client is first ready (or the startup wait gave up). */
  get starting(): boolean {
    return this.#starting;
  }

  /** The key under which an entry lives in Redis. */
  entryKey(key: string): string {
    return `${this.#o.prefix}c:${key}`;
  }

  /** The key of the single-flight lock of an entry. */
  lockKey(key: string): string {
    return `${this.#o.prefix}l:${key}`;
  }

  get(key: string): Promise<string | null> {
    return this.#run('get', () => this.client.get(this.entryKey(key)));
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.#run('set', () =>
      this.client.set(this.entryKey(key), value, 'PX', Math.max(1, Math.ceil(ttlMs))),
    );
  }

  async del(key: string): Promise<void> {
    await this.#run('del', () => this.client.del(this.entryKey(key)));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run('publish', () => this.client.publish(channel, message));
  }

  /** `SET NX PX`: true when this caller now holds the lock. */
  async lock(key: string, token: string, ttlMs: number): Promise<boolean> {
    const r = await this.#run('lock', () => this.client.set(this.lockKey(key), token, 'PX', ttlMs, 'NX'));
    return r === 'OK';
  }

  /** Releases the lock only if this caller still holds it. */
  async unlock(key: string, token: string): Promise<void> {
    await this.#run('unlock', () => this.client.eval(UNLOCK_SCRIPT, 1, this.lockKey(key), token));
  }

  #run<T>(operation: string, command: () => Promise<T>, probe = false): Promise<T> {
    if (this.#closed)
      return Promise.reject(new L2Error('E_L2_UNAVAILABLE', operation, 'the L2 tier is closed'));
    if (!probe && !this.breaker.allowsRequests) {
      return Promise.reject(new L2Error('E_L2_UNAVAILABLE', operation, 'the L2 breaker is open'));
    }
    if (this.client.status !== 'ready') {
      const error = new L2Error(
        'E_L2_UNAVAILABLE',
        operation,
        `redis is not connected (${this.client.status})`,
      );
      if (this.#starting) return Promise.reject(error);
      this.#failed(error, probe);
      return Promise.reject(error);
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        const error = new L2Error(
          'E_L2_TIMEOUT',
          operation,
          `redis ${operation} took longer than ${this.#o.timeoutMs} ms`,
        );
        this.#failed(error, probe);
        reject(error);
      }, this.#o.timeoutMs);
      timer.unref();
      command().then(
        (value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (!probe) this.breaker.success();
          resolve(value);
        },
        (cause: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const error = new L2Error(
            'E_L2_ERROR',
            operation,
            `redis ${operation} failed: ${messageOf(cause)}`,
            {
              cause,
            },
          );
          this.#failed(error, probe);
          reject(error);
        },
      );
    });
  }

  #failed(error: L2Error, probe: boolean): void {
    this.#o.onError(error);
    if (!probe) this.breaker.failure(error);
  }

  #scheduleProbe(): void {
    if (this.#closed || this.#probeTimer) return;
    const delay = Math.max(1, this.breaker.msUntilProbe());
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      void this.probe();
    }, delay);
    this.#probeTimer.unref();
  }

  /** Runs one PING when the breaker is open and its cooldown has passed. Resolves true when L2 is back. */
  async probe(): Promise<boolean> {
    if (this.#closed) return false;
    if (!this.breaker.startProbe()) {
      if (this.breaker.name === 'open') this.#scheduleProbe();
      return this.breaker.name === 'closed';
    }
    try {
      await this.#run('ping', () => this.client.ping(), true);
      this.breaker.success();
      return true;
    } catch (error) {
      this.breaker.failure(error);
      this.#scheduleProbe();
      return false;
    }
  }

  /** Stops the probe timer and quits the client when the tier built it. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#probeTimer) clearTimeout(this.#probeTimer);
    if (this.#startupTimer) clearTimeout(this.#startupTimer);
    this.#probeTimer = undefined;
    this.#startupTimer = undefined;
    if (this.#o.ownsClient) await quitClient(this.client, this.#o.timeoutMs);
  }
}

/** Quits an ioredis client politely within `timeoutMs`, then drops the connection. */
export async function quitClient(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      client.quit().catch(() => undefined),
      new Promise((r) => {
        timer = setTimeout(r, Math.max(timeoutMs, 100));
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }
  client.disconnect();
}

function toL2Error(operation: string, error: unknown): L2Error {
  return error instanceof L2Error
    ? error
    : new L2Error('E_L2_ERROR', operation, messageOf(error), { cause: error });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
