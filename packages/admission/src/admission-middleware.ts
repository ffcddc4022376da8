import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  checkChoice,
  checkFunction,
  checkInteger,
  checkObject,
  optional,
  show,
  TypedEvents,
} from '@sluice/kit';
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitCall,
  type CircuitState,
} from './circuit-breaker.js';
import { type AdmissionError, type AdmissionErrorCode, isAdmissionError } from './errors.js';
import { type GateOptions, perPriority } from './gate-core.js';
import type { LimitSource } from './limit-source.js';
import { Semaphore } from './semaphore.js';
import type { AdmissionGate, Permit, Priority } from './types.js';

/** The request shape `admission()` reads (Express's `Request` fits). */
export type AdmissionRequest = IncomingMessage & { ip?: string | undefined };

/** Options of {@link admission}. */
export interface AdmissionOptions extends Omit<GateOptions, 'limit'> {
  /** A gate to use (a {@link Semaphore} or a {@link RedisSemaphore}); else one is built from the options below. */
  gate?: AdmissionGate | undefined;
  /** The limit of the gate built when no `gate` is given (required then). */
  limit?: number | LimitSource | undefined;
  /** A circuit breaker, or options to build one; `false` for none. @default false */
  breaker?: CircuitBreaker | CircuitBreakerOptions | false | undefined;
  /** Priority class of a request. @default every request is 'interactive' */
  classify?: ((req: AdmissionRequest) => Priority) | undefined;
  /** The client a request belongs to (fairness and `perKeyLimit`). @default req.ip, else the socket's address */
  key?: ((req: AdmissionRequest) => string | undefined) | undefined;
  /** Which response statuses count as upstream failures for the breaker. @default status >= 500 */
  isFailure?: ((statusCode: number, res: ServerResponse) => boolean) | undefined;
  /** Name of a response header carrying the queue wait in ms (e.g. 'X-Queue-Wait-Ms'); `false` for none. @default false */
  queueWaitHeader?: string | false | undefined;
  /**
   * Which requests feed latency samples to a closed-loop limit: long downloads (bulk) say little
   * about the database, so by default only interactive ones do. @default 'interactive'
   */
  latencySamples?: 'all' | 'interactive' | 'none' | undefined;
  /**
   * Status of a request shed by the queue (`E_QUEUE_FULL`, `E_QUEUE_TIMEOUT`): 503, or 429,
   * which more clients retry (browsers' retry libraries honour `Retry-After` on 429). A circuit
   * open or a closed gate stay 503. @default 503
   */
  shedStatus?: 429 | 503 | undefined;
  /**
   * How long a request of each class may wait for an open circuit to close before it is refused
   * with `E_CIRCUIT_OPEN`, ms (0: refused at once). Bulk clients such as export scripts often do
   * not retry a refused POST: letting them wait out a short outage saves their run.
   * @default { interactive: 0, bulk: 0 }
   */
  openCircuitWaitMs?: { interactive?: number | undefined; bulk?: number | undefined } | undefined;
}

/** Events of the middleware. */
export interface AdmissionEvents {
  /** A request did not reach `next()`: shed with a 503 (queue full, timeout, closed, circuit open) or aborted by its client. */
  reject: {
    code: AdmissionErrorCode;
    status: number;
    key: string;
    priority: Priority;
    retryAfterSeconds: number;
    /** The response the rejection is answered on (`res.req` is the request). */
    res: ServerResponse;
  };
  /** An admitted request released its slot (at the response's end or close, or by `release(res)`). */
  complete: {
    key: string;
    priority: Priority;
    /** The response head's status (`res.statusCode` when no head was sent). */
    statusCode: number;
    /** The head's status counts as an upstream failure. */
    failure: boolean;
    /** The connection closed before the response finished (and before `release(res)`). */
    aborted: boolean;
    waitedMs: number;
  };
}

/**
 * The handler `admission()` returns, with the gauges and events the gateway turns into metrics
 * (`inFlight`, `queued`, `available` and `limit` are the gate's).
 */
export interface AdmissionMiddleware
  extends Pick<AdmissionGate, 'inFlight' | 'queued' | 'available' | 'limit'> {
  (req: AdmissionRequest, res: ServerResponse, next: (error?: unknown) => void): void;
  /** The gate in use. */
  readonly gate: AdmissionGate;
  /** The breaker in use, if any. */
  readonly breaker: CircuitBreaker | undefined;
  /** The breaker's state, or `undefined` without a breaker. */
  readonly breakerState: CircuitState | undefined;
  /**
   * Reports the response head of `res` (its status) to the breaker now, for a caller that knows
   * it before `res.writeHead` runs (a gateway relaying a buffered answer). `res.writeHead` reports
   * by itself; the first report wins. Does nothing for a response this middleware did not admit.
   */
  reportHead(res: ServerResponse, statusCode: number): void;
  /**
   * Releases the slot of `res` now: the upstream has finished its work, the rest is the client's
   * transfer, which holds no slot. Without it the slot is released when the response finishes or
   * its connection closes. Idempotent; does nothing for a response this middleware did not admit.
   */
  release(res: ServerResponse): void;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof AdmissionEvents>(event: E, listener: (payload: AdmissionEvents[E]) => void): () => void;
  /** Closes the gate and the breaker if `admission()` built them (yours stay open). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What an admitted request holds: its slot until released, its breaker call until its head. */
interface Slot {
  readonly permit: Permit;
  readonly call: CircuitCall | undefined;
  readonly key: string;
  readonly priority: Priority;
  /** The response's own `writeHead`, called by the hook. */
  readonly writeHead: (...args: unknown[]) => ServerResponse;
  /** The head's status, once reported. */
  status: number | undefined;
  /** Whether that status counts as the upstream failing. */
  failure: boolean;
  released: boolean;
}

type Next = (error?: unknown) => void;

/** Whether the client has left: the response closed, or its connection ended or was destroyed. */
function clientGone(res: ServerResponse): boolean {
  return res.closed || res.destroyed || res.socket?.destroyed === true || res.socket?.readableEnded === true;
}

const defaultKey = (req: AdmissionRequest): string => req.ip ?? req.socket?.remoteAddress ?? '';
const defaultIsFailure = (status: number): boolean => status >= 500;
const noWait = { interactive: 0, bulk: 0 } as const;

function sendRejection(res: ServerResponse, error: AdmissionError, shedStatus: number): void {
  if (res.headersSent || res.destroyed || res.closed) return;
  const body = JSON.stringify(error.toJSON());
  const shed = error.code === 'E_QUEUE_FULL' || error.code === 'E_QUEUE_TIMEOUT';
  res.statusCode = shed ? shedStatus : error.status;
  res.setHeader('Retry-After', String(error.retryAfterSeconds));
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

/**
 * Express middleware: admits at most `limit` requests at a time (sized to the database), makes
 * the rest wait in a bounded fair queue or answers `503` JSON `{ code, message, retryAfterSeconds }`
 * with `Retry-After`, and releases the slot exactly once when the response finishes or the
 * connection closes (or at `release(res)`), whatever happens. A request's wait is aborted when its
 * client goes away. Each admitted request's breaker verdict is taken at its response head
 * (`res.writeHead` is hooked, explicit or implicit): status >= 500 fails, anything else succeeds,
 * a client gone before the head abandons the call, no head within the breaker's `timeoutMs` fails.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const gate = admission({
 *   limit: databaseBudget({ monitor, reserve: 5 }),
 *   maxQueue: 500,
 *   queueTimeoutMs: { interactive: 10_000, bulk: 300_000 },
 *   perKeyLimit: 8,
 *   classify: (req) => (/\/(dataset|export|requests)\b/.test(req.url ?? '') ? 'bulk' : 'interactive'),
 *   key: (req) => req.sluice?.identity?.userId?.toString() ?? req.ip ?? '',
 *   breaker: { resetTimeoutMs: 5000, timeoutMs: 30_000 },
 *   queueWaitHeader: 'X-Queue-Wait-Ms',
 * });
 * app.use(gate);
 * ```
 */
export function admission(options: AdmissionOptions): AdmissionMiddleware {
  checkObject('options', options);
  const { gate: givenGate, limit, breaker: breakerOption } = options;
  let gate: AdmissionGate;
  if (givenGate !== undefined) {
    if (typeof givenGate !== 'object' || givenGate === null || typeof givenGate.acquire !== 'function') {
      throw new TypeError(`gate should be a Semaphore or a RedisSemaphore, got ${show(givenGate)}`);
    }
    gate = givenGate;
  } else {
    if (limit === undefined) throw new TypeError('limit is required when no gate is given, got undefined');
    gate = new Semaphore({ ...options, limit }); // it reads its own options only
  }
  const breaker =
    breakerOption instanceof CircuitBreaker || !breakerOption
      ? breakerOption || undefined
      : new CircuitBreaker(breakerOption);
  const classify = optional(options.classify, undefined, (v) =>
    checkFunction<(req: AdmissionRequest) => Priority>('classify', v),
  );
  const keyOf = optional(options.key, defaultKey, (v) =>
    checkFunction<(req: AdmissionRequest) => string | undefined>('key', v),
  );
  const isFailure = optional(options.isFailure, defaultIsFailure, (v) =>
    checkFunction<(status: number, res: ServerResponse) => boolean>('isFailure', v),
  );
  const waitHeader = options.queueWaitHeader ?? false;
  if (
    waitHeader !== false &&
    (typeof waitHeader !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(waitHeader))
  ) {
    throw new TypeError(`queueWaitHeader should be a header name or false, got ${show(waitHeader)}`);
  }
  const openWait = options.openCircuitWaitMs ?? {};
  checkObject('openCircuitWaitMs', openWait); // an object only: no one number for both classes
  const openWaitMs = perPriority('openCircuitWaitMs', openWait, noWait, (n, v) =>
    checkInteger(n, v, 0, 2 ** 31 - 1),
  );
  const shedStatus = optional(options.shedStatus, 503, (v) => {
    if (v !== 429 && v !== 503) throw new TypeError(`shedStatus should be 429 or 503, got ${show(v)}`);
    return v;
  });
  const samples = optional(options.latencySamples, 'interactive', (v) =>
    checkChoice('latencySamples', v, ['all', 'interactive', 'none'] as const),
  );
  const events = new TypedEvents<AdmissionEvents>();
  // Per instance: the same middleware mounted twice admits once; two different ones both apply.
  const kAdmitted = Symbol('sluice.admission.admitted');
  const kSlot = Symbol('sluice.admission.slot');
  type Marked = AdmissionRequest & { [kAdmitted]?: true };
  type Tracked = ServerResponse & { [kSlot]?: Slot };

  /** Answers an admission refusal (and reports it); any other error goes to `next`. */
  const reject = (res: ServerResponse, next: Next, error: unknown, key: string, priority: Priority): void => {
    if (!isAdmissionError(error)) {
      next(error);
      return;
    }
    const { code, status, retryAfterSeconds } = error;
    events.emit('reject', { code, status, key, priority, retryAfterSeconds, res }); // rare: no has() check
    if (error.code !== 'E_ABORTED') sendRejection(res, error, shedStatus);
  };

  // Both take the slot of a response this middleware may not have admitted (then they do nothing).
  const head = (res: ServerResponse, slot: Slot | undefined, status: number): void => {
    if (!slot || slot.status !== undefined) return;
    slot.status = status;
    slot.failure = isFailure(status, res);
    if (!slot.call) return;
    if (slot.failure) slot.call.failure(new Error(`upstream answered ${status}`));
    else slot.call.success();
  };

  const releaseSlot = (res: ServerResponse, slot: Slot | undefined, aborted: boolean): void => {
    if (!slot || slot.released) return;
    slot.released = true;
    const failure = slot.failure;
    const sampled = samples === 'all' || (samples === 'interactive' && slot.priority === 'interactive');
    slot.permit.release(failure ? 'dropped' : slot.status !== undefined && sampled ? 'ok' : 'ignore');
    if (events.has('complete')) {
      events.emit('complete', {
        key: slot.key,
        priority: slot.priority,
        statusCode: slot.status ?? res.statusCode,
        failure,
        aborted,
        waitedMs: slot.permit.waitedMs,
      });
    }
  };

  // Shared by every admitted response (`this` is the response): no closure per request.
  const hookedWriteHead = function writeHead(this: Tracked, ...args: unknown[]): ServerResponse {
    const slot = this[kSlot] as Slot;
    const result = slot.writeHead.apply(this, args);
    head(this, slot, this.statusCode);
    return result;
  };
  const onResponseEnd = function onResponseEnd(this: Tracked): void {
    const slot = this[kSlot];
    if (!slot) return;
    if (slot.status === undefined) slot.call?.abandon(); // the client went away before the head
    releaseSlot(this, slot, !this.writableFinished);
  };

  const admitted = (
    res: ServerResponse,
    next: Next,
    permit: Permit,
    key: string,
    priority: Priority,
  ): void => {
    let call: CircuitCall | undefined;
    if (breaker) {
      try {
        call = breaker.begin();
      } catch (error) {
        permit.release('ignore');
        reject(res, next, error, key, priority);
        return;
      }
    }
    if (waitHeader !== false) res.setHeader(waitHeader, String(Math.round(permit.waitedMs)));
    const writeHead = res.writeHead as Slot['writeHead'];
    (res as Tracked)[kSlot] = {
      permit,
      call,
      key,
      priority,
      writeHead,
      status: undefined,
      failure: false,
      released: false,
    };
    res.writeHead = hookedWriteHead as ServerResponse['writeHead'];
    res.on('finish', onResponseEnd);
    res.on('close', onResponseEnd);
    next();
  };

  const handler = function admission(req: AdmissionRequest, res: ServerResponse, next: Next): void {
    const marked = req as Marked;
    if (marked[kAdmitted]) {
      next();
      return;
    }
    marked[kAdmitted] = true;
    let key: string;
    let priority: Priority;
    try {
      key = keyOf(req) ?? '';
      priority = classify ? classify(req) : 'interactive';
    } catch (error) {
      next(error);
      return;
    }
    if (breaker && !breaker.allows) {
      const b = breaker;
      const refuse = (): void => {
        try {
          b.begin(); // throws the refusal
        } catch (error) {
          reject(res, next, error, key, priority);
        }
      };
      if (openWaitMs[priority] === 0) {
        refuse();
        return;
      }
      // Waits for the circuit to close (bounded; the client leaving ends the wait), then queues.
      const end = (closed: boolean): void => {
        off();
        clearTimeout(timer);
        res.off('close', gone);
        if (clientGone(res)) return;
        if (closed && b.allows) acquire(res, next, key, priority);
        else refuse();
      };
      const off = b.on('state', ({ to }) => {
        if (to === 'closed') end(true);
      });
      const timer = setTimeout(end, openWaitMs[priority], false);
      timer.unref();
      const gone = (): void => end(false);
      res.once('close', gone);
      return;
    }
    acquire(res, next, key, priority);
  };

  const acquire = (res: ServerResponse, next: Next, key: string, priority: Priority): void => {
    if (clientGone(res)) return; // nothing to admit
    const permit = gate.tryAcquire({ key, priority });
    if (permit) {
      admitted(res, next, permit, key, priority);
      return;
    }
    const controller = new AbortController();
    const onClose = (): void => controller.abort(new Error('the client closed the connection'));
    res.once('close', onClose);
    gate.acquire({ signal: controller.signal, key, priority }).then(
      (granted) => {
        // A slot freed by one abandoned request is granted while the closes of the other clients
        // that left with it may still wait in this turn of the event loop: admit after them, so a
        // storm of aborts is not forwarded one by one.
        setImmediate(() => {
          res.off('close', onClose);
          if (controller.signal.aborted || clientGone(res)) granted.release('ignore');
          else admitted(res, next, granted, key, priority);
        });
      },
      (error: unknown) => {
        res.off('close', onClose);
        reject(res, next, error, key, priority);
      },
    );
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= Promise.all([
      givenGate === undefined ? gate.close() : undefined,
      breaker !== breakerOption ? breaker?.close() : undefined,
    ]).then(() => undefined);
    return closing;
  };

  return Object.defineProperties(handler, {
    gate: { value: gate, enumerable: true },
    breaker: { value: breaker, enumerable: true },
    inFlight: { get: () => gate.inFlight, enumerable: true },
    queued: { get: () => gate.queued, enumerable: true },
    available: { get: () => gate.available, enumerable: true },
    limit: { get: () => gate.limit, enumerable: true },
    breakerState: { get: () => breaker?.state, enumerable: true },
    reportHead: { value: (res: Tracked, statusCode: number) => head(res, res[kSlot], statusCode) },
    release: { value: (res: Tracked) => releaseSlot(res, res[kSlot], false) },
    on: {
      value: <E extends keyof AdmissionEvents>(event: E, listener: (payload: AdmissionEvents[E]) => void) =>
        events.on(event, listener),
    },
    close: { value: close },
    [Symbol.asyncDispose]: { value: close },
  }) as AdmissionMiddleware;
}
