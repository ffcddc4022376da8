import type { IncomingMessage, ServerResponse } from 'node:http';
import { TypedEvents } from '@sluice/kit';
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitCall,
  type CircuitState,
} from './circuit-breaker.js';
import {
  type AdmissionError,
  type AdmissionErrorCode,
  isAdmissionError,
  isAdmissionRejected,
} from './errors.js';
import type { GateOptions } from './gate-core.js';
import type { LimitSource } from './limit-source.js';
import { Semaphore } from './semaphore.js';
import type { AdmissionGate, Permit, Priority, ReleaseOutcome } from './types.js';
import { checkFunction, checkObject, show } from './validate.js';

/** The request shape `admission()` reads (Express's `Request` fits). */
export type AdmissionRequest = IncomingMessage & { ip?: string | undefined };

/** Options of {@link admission}. */
export interface AdmissionOptions extends Partial<Omit<GateOptions, 'limit'>> {
  /** A gate to use (a {@link Semaphore} or a {@link RedisSemaphore}); else one is built from the options below. */
  gate?: AdmissionGate;
  /** The limit of the gate built when no `gate` is given (required then). */
  limit?: number | LimitSource;
  /** A circuit breaker, or options to build one; `false` for none. @default false */
  breaker?: CircuitBreaker | CircuitBreakerOptions | false;
  /** Priority class of a request. @default every request is 'interactive' */
  classify?: (req: AdmissionRequest) => Priority;
  /** The client a request belongs to (fairness and `perKeyLimit`). @default req.ip, else the socket's address */
  key?: (req: AdmissionRequest) => string | undefined;
  /** Which response statuses count as upstream failures for the breaker. @default status >= 500 */
  isFailure?: (statusCode: number) => boolean;
  /** Name of a response header carrying the queue wait in ms (e.g. 'X-Queue-Wait-Ms'); `false` for none. @default false */
  queueWaitHeader?: string | false;
  /**
   * Which requests feed latency samples to an adaptive limit: long downloads (bulk) say little
   * about the database, so by default only interactive ones do.
   * @default 'interactive'
   */
  latencySamples?: 'all' | 'interactive' | 'none';
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
  };
  /** An admitted request ended and released its slot. */
  complete: {
    key: string;
    priority: Priority;
    statusCode: number;
    failure: boolean;
    aborted: boolean;
    waitedMs: number;
  };
}

/** The handler `admission()` returns, with the gauges and events the gateway turns into metrics. */
export interface AdmissionMiddleware {
  (req: AdmissionRequest, res: ServerResponse, next: (error?: unknown) => void): void;
  /** The gate in use. */
  readonly gate: AdmissionGate;
  /** The breaker in use, if any. */
  readonly breaker: CircuitBreaker | undefined;
  /** Requests holding a slot now. */
  readonly inFlight: number;
  /** Requests waiting for a slot now. */
  readonly queued: number;
  /** Free slots now. */
  readonly available: number;
  /** The gate's limit now. */
  readonly limit: number;
  /** The breaker's state, or `undefined` without a breaker. */
  readonly breakerState: CircuitState | undefined;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof AdmissionEvents>(event: E, listener: (payload: AdmissionEvents[E]) => void): () => void;
  /**
   * Releases the slot of an admitted response now, before the response ends: for a proxy that has
   * the upstream's whole answer and now only waits for the client to read it. Later calls and
   * the response's end do nothing more.
   */
  release(res: ServerResponse): void;
  /** Closes the gate and the breaker if `admission()` built them (yours stay open). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What an admitted request holds until its response ends. */
interface Slot {
  readonly permit: Permit;
  readonly call: CircuitCall | undefined;
  readonly key: string;
  readonly priority: Priority;
  done: boolean;
}

const defaultKey = (req: AdmissionRequest): string => req.ip ?? req.socket?.remoteAddress ?? '';
const defaultIsFailure = (status: number): boolean => status >= 500;

function sendRejection(res: ServerResponse, error: AdmissionError): void {
  if (res.headersSent || res.destroyed || res.closed) return;
  const body = JSON.stringify(error.toJSON());
  res.statusCode = error.status;
  res.setHeader('Retry-After', String(error.retryAfterSeconds));
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

/**
 * Express middleware: admits at most `limit` requests at a time (sized to the database), makes
 * the rest wait in a bounded fair queue or answers `503` JSON `{ code, message, retryAfterSeconds }`
 * with `Retry-After`, reports each admitted request's outcome to the circuit breaker
 * (status >= 500 = failure) and releases the slot exactly once when the response finishes or
 * the connection closes, whatever happens. A request's wait is aborted when its client goes away.
 *
 * @throws {TypeError|RangeError} on invalid options, naming the option.
 * @example
 * ```ts
 * const gate = admission({
 *   limit: databaseBudget({ monitor, reserve: 5 }),
 *   maxQueue: 500,
 *   queueTimeoutMs: 10_000,
 *   perKeyLimit: 8,
 *   classify: (req) => (/\/(dataset|export|requests)\b/.test(req.url ?? '') ? 'bulk' : 'interactive'),
 *   key: (req) => req.sluice?.identity?.userId?.toString() ?? req.ip ?? '',
 *   breaker: { resetTimeoutMs: 5000 },
 *   queueWaitHeader: 'X-Queue-Wait-Ms',
 * });
 * app.use(gate);
 * ```
 */
export function admission(options: AdmissionOptions): AdmissionMiddleware {
  checkObject('options', options);
  const o = options;
  let gate: AdmissionGate;
  let ownsGate = false;
  if (o.gate !== undefined) {
    if (typeof o.gate !== 'object' || o.gate === null || typeof o.gate.acquire !== 'function') {
      throw new TypeError(`gate should be a Semaphore or a RedisSemaphore, got ${show(o.gate)}`);
    }
    gate = o.gate;
  } else {
    if (o.limit === undefined) throw new TypeError('limit is required when no gate is given, got undefined');
    const {
      gate: _g,
      breaker: _b,
      classify: _c,
      key: _k,
      isFailure: _f,
      queueWaitHeader: _q,
      latencySamples: _l,
      ...rest
    } = o;
    gate = new Semaphore({ ...rest, limit: o.limit });
    ownsGate = true;
  }
  let breaker: CircuitBreaker | undefined;
  let ownsBreaker = false;
  if (o.breaker instanceof CircuitBreaker) breaker = o.breaker;
  else if (o.breaker !== undefined && o.breaker !== false) {
    breaker = new CircuitBreaker(o.breaker);
    ownsBreaker = true;
  }
  const classify = checkFunction('classify', o.classify);
  const keyOf = checkFunction('key', o.key) ?? defaultKey;
  const isFailure = checkFunction('isFailure', o.isFailure) ?? defaultIsFailure;
  const waitHeader = o.queueWaitHeader ?? false;
  if (
    waitHeader !== false &&
    (typeof waitHeader !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(waitHeader))
  ) {
    throw new TypeError(`queueWaitHeader should be a header name or false, got ${show(waitHeader)}`);
  }
  const samples = o.latencySamples ?? 'interactive';
  if (samples !== 'all' && samples !== 'interactive' && samples !== 'none') {
    throw new TypeError(`latencySamples should be 'all', 'interactive' or 'none', got ${show(samples)}`);
  }
  const events = new TypedEvents<AdmissionEvents>();
  // Per instance: the same middleware mounted twice admits once; two different ones both apply.
  const kAdmitted = Symbol('sluice.admission.admitted');
  const kSlot = Symbol('sluice.admission.slot');
  type Marked = AdmissionRequest & { [kAdmitted]?: true };
  type Tracked = ServerResponse & { [kSlot]?: Slot };

  const reject = (res: ServerResponse, error: AdmissionError, key: string, priority: Priority): void => {
    if (events.has('reject')) {
      events.emit('reject', {
        code: error.code,
        status: error.status,
        key,
        priority,
        retryAfterSeconds: error.retryAfterSeconds,
      });
    }
    if (error.code !== 'E_ABORTED') sendRejection(res, error);
  };

  // The `finish` and `close` listener of admitted responses (`this` is the response): one
  // function for every request, no closure per request; it settles once.
  const onResponseEnd = function onResponseEnd(this: ServerResponse): void {
    const slot = (this as Tracked)[kSlot];
    if (!slot || slot.done) return;
    slot.done = true;
    settle(this, slot);
  };

  const settle = (res: ServerResponse, slot: Slot): void => {
    const answered = res.writableFinished || res.headersSent;
    const failure = answered && isFailure(res.statusCode);
    let outcome: ReleaseOutcome = 'ignore';
    if (!answered) slot.call?.neutral();
    else if (failure) {
      slot.call?.failure(new Error(`upstream answered ${res.statusCode}`));
      outcome = 'dropped';
    } else {
      slot.call?.success();
      if (samples === 'all' || (samples === 'interactive' && slot.priority === 'interactive')) outcome = 'ok';
    }
    slot.permit.release(outcome);
    if (events.has('complete')) {
      events.emit('complete', {
        key: slot.key,
        priority: slot.priority,
        statusCode: res.statusCode,
        failure,
        aborted: !res.writableFinished,
        waitedMs: slot.permit.waitedMs,
      });
    }
  };

  const admitted = (
    res: ServerResponse,
    next: (error?: unknown) => void,
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
        if (isAdmissionError(error)) reject(res, error, key, priority);
        else next(error);
        return;
      }
    }
    if (waitHeader !== false) res.setHeader(waitHeader, String(Math.round(permit.waitedMs)));
    (res as Tracked)[kSlot] = { permit, call, key, priority, done: false };
    // One shared listener (no closure per request); it finds the slot on the response.
    res.on('finish', onResponseEnd);
    res.on('close', onResponseEnd);
    next();
  };

  const handler = function admission(
    req: AdmissionRequest,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
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
      try {
        breaker.begin();
      } catch (error) {
        if (isAdmissionError(error)) reject(res, error, key, priority);
        else next(error);
        return;
      }
    }
    if (res.closed || res.destroyed) return; // the client is gone already: nothing to admit
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
        res.off('close', onClose);
        if (controller.signal.aborted || res.closed || res.destroyed) {
          granted.release('ignore');
          return;
        }
        admitted(res, next, granted, key, priority);
      },
      (error: unknown) => {
        res.off('close', onClose);
        if (isAdmissionRejected(error) || isAdmissionError(error, 'E_ABORTED'))
          reject(res, error, key, priority);
        else next(error);
      },
    );
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= Promise.all([
      ownsGate ? gate.close() : undefined,
      ownsBreaker ? breaker?.close() : undefined,
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
    on: {
      value: <E extends keyof AdmissionEvents>(event: E, listener: (payload: AdmissionEvents[E]) => void) =>
        events.on(event, listener),
    },
    release: { value: (res: ServerResponse) => onResponseEnd.call(res) },
    close: { value: close },
    [Symbol.asyncDispose]: { value: close },
  }) as AdmissionMiddleware;
}
