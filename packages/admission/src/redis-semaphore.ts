import { createHash, randomBytes } from 'node:crypto';
import { checkInteger, checkNumber, Health, optional, show, withTimeout } from '@sluice/kit';
import { Redis } from 'ioredis';
import { admissionChannels } from './channels.js';
import { GateCore, type GateOptions, type GatePermit } from './gate-core.js';
import type { GateDemand } from './limit-source.js';
import { acquireScript, type RedisLike, releaseScript, renewScript } from './redis-scripts.js';
import type { AcquireOptions, AdmissionGate, GateEvents, Permit, Priority } from './types.js';
import type { Waiter } from './wait-queue.js';

/** Options of {@link RedisSemaphore}: those of every gate plus where and how to keep leases. */
export interface RedisSemaphoreOptions extends GateOptions {
  /**
   * An ioredis client (`Redis` or `Cluster`, yours: `close()` leaves it open) or a Redis URL
   * (the semaphore makes and closes its own client).
   */
  redis: RedisLike | string;
  /** Prefix of every Redis key. Must not contain `{` or `}`. @default 'sluice:admission:' */
  prefix?: string | undefined;
  /** How long a lease lives without renewal: a dead process's permits come back after this. @default 30000 */
  leaseMs?: number | undefined;
  /** How often held leases are renewed. @default leaseMs / 3 */
  renewIntervalMs?: number | undefined;
  /** Longest wait between retries while waiters are queued and no release is heard. @default 250 */
  pollIntervalMs?: number | undefined;
  /** A Redis call slower than this counts as Redis being unreachable. @default 1000 */
  commandTimeoutMs?: number | undefined;
  /**
   * At start, how long Redis may take to answer a first time. Meanwhile (`mode` `'connecting'`)
   * acquires wait in the queue, bounded by their queue timeout; after it, the gate falls back. @default 10000
   */
  connectTimeoutMs?: number | undefined;
  /** Share of the limit this process may use alone while Redis is unreachable, in (0, 1]. @default 0.25 */
  fallbackShare?: number | undefined;
  /** How often Redis is probed while unreachable. @default 1000 */
  recoveryIntervalMs?: number | undefined;
}

/** Events of {@link RedisSemaphore}: those of every gate plus Redis loss and recovery. */
export interface RedisSemaphoreEvents extends GateEvents {
  /** Redis is unreachable (or never answered at start): this process admits up to `fallbackLimit` on its own. */
  fallback: { error: unknown; fallbackLimit: number };
  /** Redis answers again: leases held meanwhile are registered and the global limit applies again. */
  recovered: { downMs: number };
}

/** A lease in Redis: its id, and the key-lease set it is also in (the leases set when none). */
interface Lease {
  readonly id: string;
  readonly keySet: string;
}

/** What the acquire script answered (see `acquireScript`). */
interface AcquireResult {
  readonly status: 0 | 1 | 2 | 3;
  readonly retryInMs: number;
}

const MAX_PENDING_RELEASES = 10_000;
/** Most acquire attempts one pump round sends to Redis at once. */
const PUMP_BATCH = 16;
const noop = (): void => {};

/**
 * A concurrency gate shared by every process that uses the same Redis, prefix and name: one
 * global limit, enforced atomically in Lua over sorted sets of leases scored by expiry. Leases
 * are renewed while held and expire when a process dies. Waiters are woken by a pub/sub message
 * on every release, with a bounded poll as a safety net. Works on a single Redis and on Redis
 * Cluster (all keys share one hash tag). Until Redis first answers, acquires wait in the queue
 * (`connecting`, at most `connectTimeoutMs`). When Redis is unreachable the gate falls back to
 * `fallbackShare` of the limit in this process, emits `fallback`, and returns to Redis by itself
 * (`recovered`): its health is the kit's `Health` state machine.
 *
 * Fairness across keys, priority classes and the queue bound apply to the waiters of this
 * process; the limit, the bulk share and `perKeyLimit` are enforced globally.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const gate = new RedisSemaphore({ redis: 'redis://127.0.0.1:6379', name: 'cvat', limit: 40 });
 * const permit = await gate.acquire({ key: userId, signal });
 * try { await work(); } finally { permit.release(); }
 * ```
 */
export class RedisSemaphore extends GateCore<RedisSemaphoreEvents> implements AdmissionGate {
  readonly #client: RedisLike;
  readonly #ownsClient: boolean;
  #subscriber: RedisLike | undefined;
  readonly #leasesKey: string;
  readonly #bulkKey: string;
  readonly #keyPrefix: string;
  readonly #channel: string;
  readonly #leaseMs: number;
  readonly #pollIntervalMs: number;
  readonly #commandTimeoutMs: number;
  readonly #fallbackShare: number;
  readonly #health: Health;
  readonly #processId = randomBytes(6).toString('hex');
  #seq = 0;
  readonly #held = new Map<string, { readonly keySet: string; readonly bulk: boolean }>();
  #pendingReleases: Lease[] = [];
  #globalInUse = 0;
  #globalBulk = 0;
  #pumping = false;
  #pumpAgain = false;
  #wakeTimer: ReturnType<typeof setTimeout> | undefined;
  #wakeAt = Number.POSITIVE_INFINITY;
  readonly #renewTimer: ReturnType<typeof setInterval>;
  #shutdown = false;

  constructor(options: RedisSemaphoreOptions) {
    super(options);
    const o = options;
    const prefix = o.prefix ?? 'sluice:admission:';
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
      throw new TypeError(`prefix should be a string without '{' or '}', got ${show(prefix)}`);
    }
    const ms = (name: keyof RedisSemaphoreOptions, fallback: number, min: number, max = 60_000): number =>
      optional(o[name], fallback, (v) => checkInteger(name, v, min, max));
    const leaseMs = ms('leaseMs', 30_000, 100, 2 ** 31 - 1);
    this.#leaseMs = leaseMs;
    const renewIntervalMs = ms('renewIntervalMs', Math.max(50, Math.floor(leaseMs / 3)), 10, leaseMs - 1);
    this.#pollIntervalMs = ms('pollIntervalMs', 250, 10);
    this.#commandTimeoutMs = ms('commandTimeoutMs', 1000, 10);
    const connectTimeoutMs = ms('connectTimeoutMs', 10_000, 10, 2 ** 31 - 1);
    this.#fallbackShare = optional(o.fallbackShare, 0.25, (v) => checkNumber('fallbackShare', v, 0, 1, true));
    const recoveryIntervalMs = ms('recoveryIntervalMs', 1000, 10);

    if (typeof o.redis === 'string') {
      const client = new Redis(o.redis, { maxRetriesPerRequest: 1, enableAutoPipelining: true });
      client.on('error', noop);
      this.#client = client;
      this.#ownsClient = true;
    } else if (typeof o.redis === 'object' && o.redis !== null && typeof o.redis.evalsha === 'function') {
      this.#client = o.redis;
      this.#ownsClient = false;
    } else {
      throw new TypeError(`redis should be an ioredis client or a redis:// URL, got ${show(o.redis)}`);
    }

    const base = `${prefix}{${this.gateName}}`;
    this.#leasesKey = `${base}:leases`;
    this.#bulkKey = `${base}:bulk`;
    this.#keyPrefix = `${base}:key:`;
    this.#channel = `${base}:released`;

    this.#health = new Health({
      name: 'Redis',
      probe: () => this.#recover(),
      probeIntervalMs: recoveryIntervalMs,
      probeTimeoutMs: this.#commandTimeoutMs * 3,
      initial: 'connecting',
      connectTimeoutMs,
    });
    this.#health.on('down', ({ error }) => {
      this.#emitRedis('fallback', { error, fallbackLimit: this.fallbackLimit });
      this.#dispatchLocal();
    });
    this.#health.on('up', ({ downForMs }) => {
      if (downForMs !== undefined) this.#emitRedis('recovered', { downMs: downForMs });
      if (this.queue.size > 0) void this.#pump();
    });
    // The first answer ends `connecting` (a lazy client connects on its first command); no
    // command timeout here: a slow start is what connectTimeoutMs bounds.
    this.#client.ping().then(
      () => {
        if (this.#health.state === 'connecting') this.#health.success();
      },
      (error: unknown) => this.#health.failure(error),
    );

    this.#subscribe();
    this.#renewTimer = setInterval(() => this.#renew(), renewIntervalMs);
    this.#renewTimer.unref();
    this.followSource();
  }

  /**
   * `'connecting'` until Redis first answers (acquires wait), `'redis'` while it answers,
   * `'fallback'` while this process admits on its own.
   */
  get mode(): 'connecting' | 'redis' | 'fallback' {
    const state = this.#health.state;
    return state === 'up' ? 'redis' : state === 'down' ? 'fallback' : 'connecting';
  }

  /** The limit this process applies alone while Redis is unreachable: `floor(limit * fallbackShare)`, at least 1. */
  get fallbackLimit(): number {
    return Math.max(1, Math.floor(this.limit * this.#fallbackShare));
  }

  /** Slots free: from the last global count Redis reported, or from local accounting in fallback. */
  override get available(): number {
    if (this.mode === 'fallback') return Math.max(0, this.fallbackLimit - this.inFlight);
    return Math.max(0, this.limit - this.#globalInUse);
  }

  /** In flight: every process's permits, as Redis last counted them (the limit is global). */
  protected override demand(): GateDemand {
    return { queued: this.queued, inFlight: Math.max(this.inFlight, this.#globalInUse) };
  }

  /** Leases this process holds in Redis (or will register on recovery). */
  get leases(): number {
    return this.#held.size;
  }

  /** A permit without waiting; only possible in fallback (Redis needs a round trip), else `undefined`. */
  tryAcquire(options?: Omit<AcquireOptions, 'signal'>): Permit | undefined {
    return this.closed ? undefined : this.#tryLocal(options?.key ?? '', options?.priority ?? 'interactive');
  }

  /**
   * Waits for a global permit.
   *
   * @throws {AdmissionError} `E_QUEUE_FULL`, `E_QUEUE_TIMEOUT`, `E_ABORTED`, `E_CLOSED`.
   */
  async acquire(options?: AcquireOptions): Promise<Permit> {
    const { key, priority } = this.precheck(options);
    const signal = options?.signal;
    // While connecting, waiters are served once Redis answers.
    if (this.mode !== 'redis') return this.#tryLocal(key, priority) ?? this.enqueue(key, priority, signal);
    if (this.queue.size === 0 && this.keyHasRoom(key)) {
      const id = this.#nextLeaseId();
      const keySet = this.#keySet(key);
      let result: AcquireResult;
      try {
        result = await this.#remoteAcquire(id, keySet, priority);
      } catch (error) {
        this.#health.failure(error);
        return this.acquire(options);
      }
      if (result.status === 1) {
        if (this.closed || signal?.aborted) {
          this.#remoteRelease([{ id, keySet }]);
          throw this.rejection(this.closed ? 'E_CLOSED' : 'E_ABORTED', key, priority, signal?.reason);
        }
        return this.#attach(this.grant(key, priority, 0), id, keySet);
      }
      this.#scheduleWake(result.retryInMs + 1);
    }
    const waiting = this.enqueue(key, priority, signal);
    void this.#pump();
    return waiting;
  }

  protected override onReleased(permit: GatePermit): void {
    const id = permit.leaseId;
    const lease = id === undefined ? undefined : this.#held.get(id);
    if (id !== undefined && lease) {
      this.#held.delete(id);
      const released = [{ id, keySet: lease.keySet }];
      if (this.#shutdown) {
        if (!this.#ownsClient) void this.#releaseRun(released).catch(noop);
      } else if (this.mode === 'redis') {
        this.#globalInUse = Math.max(0, this.#globalInUse - 1);
        if (lease.bulk) this.#globalBulk = Math.max(0, this.#globalBulk - 1);
        this.#remoteRelease(released);
      } else this.#pushPending(released);
    }
    this.#admitMore();
  }

  protected override onCapacity(): void {
    this.#admitMore();
  }

  protected override async onClosed(): Promise<void> {
    this.#shutdown = true;
    clearInterval(this.#renewTimer);
    await this.#health.close();
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = undefined;
    // Leases still held after the drain stay until they expire: their work may still be running.
    if (this.mode === 'redis' && this.#pendingReleases.length > 0) {
      const pending = this.#pendingReleases;
      this.#pendingReleases = [];
      await this.#call(this.#releaseRun(pending)).catch(noop);
    }
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    subscriber?.disconnect();
    if (this.#ownsClient) {
      await this.#call(this.#client.quit()).catch(() => this.#client.disconnect());
    }
  }

  #admitMore(): void {
    if (this.closed) return;
    if (this.mode === 'fallback') this.#dispatchLocal();
    else if (this.queue.size > 0) void this.#pump();
  }

  #nextLeaseId(): string {
    this.#seq += 1;
    return `${this.#processId}:${this.#seq}`;
  }

  #keySet(key: string): string {
    if (this.perKeyLimit === Number.POSITIVE_INFINITY) return this.#leasesKey;
    return this.#keyPrefix + createHash('sha1').update(key).digest('hex').slice(0, 20);
  }

  #releaseKeys(keySets: readonly string[]): string[] {
    return [this.#leasesKey, this.#bulkKey, ...keySets];
  }

  /** Runs the release script for `leases`, which publishes on the channel when any was held. */
  #releaseRun(leases: readonly Lease[]): Promise<unknown> {
    const keys = this.#releaseKeys(leases.map((l) => l.keySet));
    return releaseScript.run(this.#client, keys, [this.#channel, ...leases.map((l) => l.id)]);
  }

  /** A permit now from local accounting, in fallback only. */
  #tryLocal(key: string, priority: Priority): GatePermit | undefined {
    if (this.mode !== 'fallback' || !this.canGrantLocal(key, priority, this.fallbackLimit)) return undefined;
    return this.#attach(this.grant(key, priority, 0));
  }

  /** Ties `permit` to its lease (a new one by default, registered in Redis by the next renewal). */
  #attach(permit: GatePermit, id = this.#nextLeaseId(), keySet = this.#keySet(permit.key)): GatePermit {
    permit.leaseId = id;
    this.#held.set(id, { keySet, bulk: permit.priority === 'bulk' });
    return permit;
  }

  /** A Redis call bounded by `commandTimeoutMs` (the call itself runs on: see `#remoteAcquire`). */
  #call<T>(promise: Promise<T>): Promise<T> {
    return withTimeout(() => promise, this.#commandTimeoutMs, {
      message: `Redis did not answer within ${this.#commandTimeoutMs} ms`,
    });
  }

  async #remoteAcquire(id: string, keySet: string, priority: Priority): Promise<AcquireResult> {
    const limit = this.limit;
    const run = acquireScript.run(
      this.#client,
      [this.#leasesKey, this.#bulkKey, keySet],
      [
        id,
        this.#leaseMs,
        limit,
        priority === 'bulk' ? this.bulkCap(limit) : -1,
        this.perKeyLimit === Number.POSITIVE_INFINITY ? 0 : this.perKeyLimit,
      ],
    );
    const raw = await this.#call(run).catch((error: unknown) => {
      // Granted after we gave up on it: give it back at once.
      run.then((late) => {
        if (Array.isArray(late) && late[0] === 1) void this.#releaseRun([{ id, keySet }]).catch(noop);
      }, noop);
      throw error;
    });
    if (!Array.isArray(raw) || raw.length < 4)
      throw new Error(`unexpected reply from the acquire script: ${show(raw)}`);
    const [status, count, retryInMs, bulk] = raw as [number, number, number, number];
    this.#globalInUse = count;
    this.#globalBulk = bulk;
    return { status: status as AcquireResult['status'], retryInMs };
  }

  #remoteRelease(leases: Lease[]): void {
    this.#call(this.#releaseRun(leases)).catch((error: unknown) => {
      this.#pushPending(leases);
      this.#health.failure(error);
    });
  }

  #pushPending(leases: Lease[]): void {
    this.#pendingReleases.push(...leases);
    const excess = this.#pendingReleases.length - MAX_PENDING_RELEASES;
    // Forgotten releases only delay others until those leases expire.
    if (excess > 0) this.#pendingReleases.splice(0, excess);
  }

  /**
   * Serves local waiters from Redis until it says the gate is full: a batch of candidates in
   * fair order per round trip (Redis runs them in that order), one batch at a time.
   */
  async #pump(): Promise<void> {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        const blockedKeys = new Set<string>();
        let bulkBlocked = false;
        while (!this.closed && this.mode === 'redis' && this.queue.size > 0) {
          const batch = this.#candidates(blockedKeys, bulkBlocked);
          if (batch.length === 0) break;
          const attempts = batch.map((waiter) => {
            const id = this.#nextLeaseId();
            const keySet = this.#keySet(waiter.key);
            return { waiter, id, keySet, result: this.#remoteAcquire(id, keySet, waiter.priority) };
          });
          const results = await Promise.allSettled(attempts.map((a) => a.result));
          let full = false;
          let failed: PromiseRejectedResult | undefined;
          for (const [i, settled] of results.entries()) {
            const { waiter, id, keySet } = attempts[i] as (typeof attempts)[number];
            if (settled.status === 'rejected') {
              failed = settled;
              continue;
            }
            const r = settled.value;
            if (r.status === 1) {
              const permit = this.grantWaiter(waiter);
              if (permit) this.#attach(permit, id, keySet);
              else this.#remoteRelease([{ id, keySet }]);
              continue;
            }
            this.#scheduleWake(r.retryInMs + 1);
            if (r.status === 0) full = true;
            else if (r.status === 2) bulkBlocked = true;
            else blockedKeys.add(waiter.key);
          }
          if (failed) this.#health.failure(failed.reason);
          if (failed || full) break;
        }
      } while (this.#pumpAgain && !this.closed && this.mode === 'redis');
    } finally {
      this.#pumping = false;
    }
    if (this.closed) return;
    if (this.mode === 'fallback') this.#dispatchLocal();
    else if (this.queue.size > 0) this.#scheduleWake(this.#pollIntervalMs);
  }

  /** The next waiters to try, interactive first (bulk first under its share), at most the batch size and each key's room. */
  #candidates(blockedKeys: ReadonlySet<string>, bulkBlocked: boolean): Waiter[] {
    const max = Math.min(PUMP_BATCH, Math.max(1, this.limit));
    const picked = new Map<string, number>();
    const room = (key: string): number => {
      if (blockedKeys.has(key)) return 0;
      const left =
        this.perKeyLimit === Number.POSITIVE_INFINITY ? max : this.perKeyLimit - this.inFlightFor(key);
      return left - (picked.get(key) ?? 0);
    };
    // Bulk goes first for what is left of its share of the gate (Redis's count, every process's
    // bulk leases); past that, interactive first. Redis grants a batch in this order.
    const bulkFirst = Math.min(max, this.bulkFirstRoom(this.limit, this.#globalBulk));
    const bulk = bulkBlocked ? undefined : this.queue.bulk;
    const [first, firstMax, then] =
      bulkFirst > 0 ? [bulk, bulkFirst, this.queue.interactive] : [this.queue.interactive, max, bulk];
    const out = first?.collect(firstMax, room) ?? [];
    if (then && out.length < max) {
      for (const w of out) picked.set(w.key, (picked.get(w.key) ?? 0) + 1);
      then.collect(max - out.length, room, out);
    }
    return out;
  }

  #scheduleWake(ms: number): void {
    const delay = Math.max(1, Math.min(ms, this.#pollIntervalMs));
    const at = this.now() + delay;
    if (this.#wakeTimer && this.#wakeAt <= at) return;
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeAt = at;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wakeAt = Number.POSITIVE_INFINITY;
      if (this.queue.size > 0) void this.#pump();
    }, delay);
    this.#wakeTimer.unref();
  }

  /** Fallback: grant local waiters against `fallbackLimit`, in the same order as `Semaphore`. */
  #dispatchLocal(): void {
    this.dispatch(
      () => (this.mode === 'fallback' ? this.fallbackLimit : 0),
      (p) => this.#attach(p),
    );
  }

  #emitRedis<E extends 'fallback' | 'recovered'>(event: E, payload: RedisSemaphoreEvents[E]): void {
    this.events.emit(event, payload);
    if (admissionChannels.redis.hasSubscribers)
      admissionChannels.redis.publish({ gate: this.gateName, event, ...payload });
  }

  /** The probe while Redis is down: it answers, owed releases are sent, held leases registered. */
  async #recover(): Promise<void> {
    await this.#call(this.#client.ping());
    if (this.#pendingReleases.length > 0) {
      const pending = this.#pendingReleases;
      await this.#call(this.#releaseRun(pending));
      this.#pendingReleases = this.#pendingReleases.slice(pending.length);
    }
    await this.#renewAll();
  }

  #renew(): void {
    if (this.mode === 'redis' && this.#held.size > 0 && !this.#shutdown)
      this.#renewAll().catch((error: unknown) => this.#health.failure(error));
  }

  async #renewAll(): Promise<void> {
    if (this.#held.size === 0) return;
    const keySets: string[] = [];
    const args: (string | number)[] = [this.#leaseMs];
    for (const [id, lease] of this.#held) {
      keySets.push(lease.keySet);
      args.push(id, lease.bulk ? '1' : '0');
    }
    await this.#call(renewScript.run(this.#client, this.#releaseKeys(keySets), args));
  }

  #subscribe(): void {
    let subscriber: RedisLike;
    try {
      subscriber = this.#client.duplicate();
    } catch {
      return; // no pub/sub: the bounded poll still wakes waiters
    }
    this.#subscriber = subscriber;
    subscriber.on('error', noop);
    subscriber.on('message', (channel: string) => {
      if (channel === this.#channel && this.mode === 'redis' && this.queue.size > 0 && !this.closed) {
        void this.#pump();
      }
    });
    const listen = (): void => {
      subscriber.subscribe(this.#channel).catch(noop);
    };
    subscriber.on('ready', listen);
    if (subscriber.status === 'ready') listen();
    else if (subscriber.status === 'wait') subscriber.connect().catch(noop);
  }
}
