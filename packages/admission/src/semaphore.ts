import { GateCore, type GateOptions } from './gate-core.js';
import type { AcquireOptions, AdmissionGate, Permit } from './types.js';

/** Options of {@link Semaphore}. */
export type SemaphoreOptions = GateOptions;

/**
 * An in-process concurrency gate with a bounded, fair wait queue: at most `limit` permits out at
 * once, at most `perKeyLimit` per client key, round-robin across keys, `interactive` before
 * `bulk` (but for a share of the limit `bulk` always gets), and a share `bulk` can never take.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const gate = new Semaphore({ limit: 20, maxQueue: 500, queueTimeoutMs: 5000, perKeyLimit: 4 });
 * const permit = await gate.acquire({ key: userId, priority: 'bulk', signal });
 * try { await work(); } finally { permit.release(); }
 * ```
 */
export class Semaphore extends GateCore implements AdmissionGate {
  constructor(options: SemaphoreOptions) {
    super(options);
    this.followSource();
  }

  tryAcquire(options?: Omit<AcquireOptions, 'signal'>): Permit | undefined {
    if (this.closed) return undefined;
    const key = options?.key ?? '';
    const priority = options?.priority ?? 'interactive';
    // After every dispatch no queued waiter can be granted, so a newcomer that fits jumps no one.
    return this.canGrantLocal(key, priority, this.limit) ? this.grant(key, priority, 0) : undefined;
  }

  acquire(options?: AcquireOptions): Promise<Permit> {
    try {
      const { key, priority } = this.precheck(options);
      if (this.canGrantLocal(key, priority, this.limit)) return Promise.resolve(this.grant(key, priority, 0));
      return this.enqueue(key, priority, options?.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  protected override onReleased(): void {
    this.dispatch(() => this.limit);
  }

  protected override onCapacity(): void {
    this.dispatch(() => this.limit);
  }
}
