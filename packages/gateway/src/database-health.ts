import { TypedEvents } from '@sluice/kit';

/** `up` (the last probe or sample answered) or `down` (the database did not answer). */
export type DatabaseHealthState = 'up' | 'down';

/** Options of {@link createDatabaseHealth}. */
export interface DatabaseHealthOptions {
  /** One bounded round trip to the database (e.g. `SELECT 1`); rejects when it is unreachable. */
  probe: (signal: AbortSignal) => Promise<unknown>;
  /** Time between probes while the database is down, ms (also the least time between two suspicions' probes). */
  probeIntervalMs: number;
  /** A probe that takes longer fails, ms. */
  probeTimeoutMs: number;
  /** Clock, epoch ms. @default Date.now */
  now?: () => number;
}

/** Events of a {@link DatabaseHealth}. */
export interface DatabaseHealthEvents {
  /** The database became unreachable. */
  down: { readonly error: unknown };
  /** The database answered again after `downForMs`. */
  up: { readonly downForMs: number };
}

/** The database's reachability as the gateway last saw it. */
export interface DatabaseHealth {
  readonly state: DatabaseHealthState;
  /** When the current outage began (epoch ms), or undefined while up. */
  readonly downSince: number | undefined;
  /** Why the last probe failed, while down. */
  readonly lastError: unknown;
  /** Outages seen since start. */
  readonly outages: number;
  /** A sample or query just answered: the database is up. */
  reportSuccess(): void;
  /** Something failed in a way that may mean the database is gone: probe now (at most once per interval). */
  suspect(error: unknown): void;
  /**
   * Like {@link DatabaseHealth.suspect}, but waits for the verdict and ignores the probe interval
   * while up: probes now (or joins the probe already running) and resolves with the state it left,
   * within `probeTimeoutMs`. While down it joins a running probe or resolves `down` at once; after
   * `close()` it resolves with the last state. For a failure that must be answered correctly now
   * (an upstream 5xx the client is waiting for); at most one probe runs at a time.
   */
  check(error: unknown): Promise<DatabaseHealthState>;
  on<E extends keyof DatabaseHealthEvents>(
    event: E,
    listener: (payload: DatabaseHealthEvents[E]) => void,
  ): () => void;
  /** Stops probing. Idempotent. */
  close(): Promise<void>;
}

function checkMs(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 3_600_000) {
    throw new RangeError(
      `createDatabaseHealth: ${name} must be an integer of ms in [${min}, 3600000], got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Tracks whether the database answers. A failure signal (a failed monitor sample, a broken pool
 * connection) triggers a probe; a failed probe marks the database `down`, and then it is probed
 * every `probeIntervalMs` (each bounded by `probeTimeoutMs`) until one answers, which marks it
 * `up` at once. A successful monitor sample also marks it `up`.
 *
 * @throws {TypeError | RangeError} on invalid options
 * @example
 * ```ts
 * const health = createDatabaseHealth({
 *   probe: (signal) => pool.query('SELECT 1', [], { signal }),
 *   probeIntervalMs: 500,
 *   probeTimeoutMs: 1000,
 * });
 * pool.on('error', ({ error }) => health.suspect(error));
 * ```
 */
export function createDatabaseHealth(options: DatabaseHealthOptions): DatabaseHealth {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('createDatabaseHealth: options must be an object');
  }
  if (typeof options.probe !== 'function') {
    throw new TypeError(`createDatabaseHealth: probe must be a function, got ${typeof options.probe}`);
  }
  const probeIntervalMs = checkMs('probeIntervalMs', options.probeIntervalMs, 10);
  const probeTimeoutMs = checkMs('probeTimeoutMs', options.probeTimeoutMs, 1);
  const now = options.now ?? Date.now;
  const events = new TypedEvents<DatabaseHealthEvents>();
  let state: DatabaseHealthState = 'up';
  let downSince: number | undefined;
  let lastError: unknown;
  let outages = 0;
  let closed = false;
  let probing: Promise<void> | undefined;
  let lastProbeAt = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | undefined;

  const markUp = (): void => {
    if (state === 'up') return;
    const downForMs = now() - (downSince ?? now());
    state = 'up';
    downSince = undefined;
    lastError = undefined;
    if (timer) clearTimeout(timer);
    timer = undefined;
    events.emit('up', { downForMs });
  };

  const markDown = (error: unknown): void => {
    lastError = error;
    if (state === 'down') return;
    state = 'down';
    downSince = now();
    outages += 1;
    events.emit('down', { error });
  };

  const schedule = (): void => {
    if (closed || state === 'up' || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void probe();
    }, probeIntervalMs);
    timer.unref();
  };

  function probe(): Promise<void> {
    if (closed) return Promise.resolve();
    probing ??= (async () => {
      lastProbeAt = performance.now();
      const controller = new AbortController();
      let deadline: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          options.probe(controller.signal),
          new Promise((_, reject) => {
            deadline = setTimeout(() => {
              const error = new Error(`the database did not answer within ${probeTimeoutMs} ms`);
              controller.abort(error);
              reject(error);
            }, probeTimeoutMs);
            deadline.unref();
          }),
        ]);
        markUp();
      } catch (error) {
        if (!closed) markDown(error);
      } finally {
        clearTimeout(deadline);
        probing = undefined;
        schedule();
      }
    })();
    return probing;
  }

  const suspect = (error: unknown): void => {
    if (closed || probing) return;
    if (state === 'down') {
      lastError = error;
      return;
    }
    if (performance.now() - lastProbeAt < probeIntervalMs) return;
    void probe();
  };

  return {
    get state() {
      return state;
    },
    get downSince() {
      return downSince;
    },
    get lastError() {
      return lastError;
    },
    get outages() {
      return outages;
    },
    reportSuccess: markUp,
    suspect,
    async check(error) {
      if (closed) return state;
      if (state === 'down') {
        lastError = error;
        if (probing) await probing;
        return state;
      }
      await probe();
      return state;
    },
    on: (event, listener) => events.on(event, listener),
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await probing;
    },
  };
}
