import type { AdmissionErrorCode } from './errors.js';

/**
 * Priority class of a request. `interactive` traffic (a person waiting on a page) may use the
 * whole limit; `bulk` traffic (exports, downloads, status polling) can never take the share
 * reserved for `interactive`.
 */
export type Priority = 'interactive' | 'bulk';

/** What to wait for in {@link AdmissionGate.acquire}. */
export interface AcquireOptions {
  /** Aborts the wait (checked when queued and again when dequeued). */
  signal?: AbortSignal | undefined;
  /** The client the work belongs to (a user, a token, an address): the unit of fairness. @default '' */
  key?: string | undefined;
  /** @default 'interactive' */
  priority?: Priority | undefined;
}

/**
 * How a permit's work ended, for adaptive limits: `ok` (a latency sample), `dropped` (the work
 * failed or timed out), `ignore` (say nothing: the client went away, or the latency does not
 * reflect the upstream, as for a long download).
 */
export type ReleaseOutcome = 'ok' | 'dropped' | 'ignore';

/** One slot of a gate. `release()` is idempotent; `using permit = await gate.acquire()` releases it too. */
export interface Permit {
  /** The client key it was acquired for. */
  readonly key: string;
  /** The priority class it was acquired for. */
  readonly priority: Priority;
  /** Milliseconds it waited in the queue (0 when it went straight through). */
  readonly waitedMs: number;
  /** True once released. */
  readonly released: boolean;
  /** Gives the slot back. Calling it again does nothing. @default outcome 'ok' */
  release(outcome?: ReleaseOutcome): void;
  /** Same as `release()`. */
  [Symbol.dispose](): void;
}

/** Events every gate emits. Subscribe with `gate.on(name, listener)`, which returns the unsubscribe. */
export interface GateEvents {
  /** A permit was granted. */
  acquire: { key: string; priority: Priority; waitedMs: number; inFlight: number };
  /** A permit was released. */
  release: { key: string; priority: Priority; heldMs: number; outcome: ReleaseOutcome };
  /** An acquire failed (queue full, queue timeout, aborted, closed). */
  reject: { code: AdmissionErrorCode; key: string; priority: Priority; retryAfterSeconds: number };
  /** The limit changed (setLimit, a limit source, or a fallback). */
  limit: { limit: number; previous: number };
}

/**
 * A concurrency gate: the local {@link Semaphore} and the distributed {@link RedisSemaphore}
 * both implement it, so `admission()` takes either.
 */
export interface AdmissionGate {
  /**
   * Waits for a slot: at once when one is free, else in the queue until a slot returns,
   * `queueTimeoutMs` passes, or `signal` aborts.
   *
   * @throws {AdmissionError} `E_QUEUE_FULL` (queue at `maxQueue`), `E_QUEUE_TIMEOUT`, `E_ABORTED`, `E_CLOSED`.
   */
  acquire(options?: AcquireOptions): Promise<Permit>;
  /**
   * A slot now if one is free and no waiter that could use it is queued, else `undefined`. Never
   * queues and never throws for capacity (returns `undefined` once closed).
   */
  tryAcquire(options?: Omit<AcquireOptions, 'signal'>): Permit | undefined;
  /** Permits held now (by this process). */
  readonly inFlight: number;
  /** Waiters queued now (in this process). */
  readonly queued: number;
  /** Slots free now (`limit - inFlight`, never below 0; for a distributed gate, the last global view). */
  readonly available: number;
  /** The current limit. */
  readonly limit: number;
  /**
   * Changes the limit at runtime. Growing admits waiters at once; shrinking takes effect as
   * permits return (nobody is interrupted).
   *
   * @throws {RangeError} when `limit` is not an integer >= 0.
   */
  setLimit(limit: number): void;
  /**
   * Subscribes to an event; returns the unsubscribe function.
   *
   * @example
   * ```ts
   * const off = gate.on('reject', (e) => metrics.rejections.inc({ code: e.code }));
   * ```
   */
  on<E extends keyof GateEvents>(event: E, listener: (payload: GateEvents[E]) => void): () => void;
  /**
   * Refuses new work (`E_CLOSED`), rejects every queued waiter with `E_CLOSED`, then waits (up to
   * the gate's `drainTimeoutMs`) for held permits to be released. Idempotent.
   */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
