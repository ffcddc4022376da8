// A deterministic discrete-event simulation of an admission gate in front of a Django app whose
// database sits behind a PgBouncer-like pool: N server connections handed out per query
// (transaction pooling), clients waiting in FIFO order beyond that (`cl_waiting`), Django's CPU
// as a few cores served in FIFO order. A request alternates CPU bursts and queries, then spends
// some time holding no connection (rendering, file I/O), so it holds a server connection for a
// fraction of its time. Bulk clients are closed loops (each sends its next request when the last
// ends, like cvat_sdk scripts); an interactive user arrives at random (Poisson). The gate admits
// interactive first and keeps a share of the limit from bulk, like `Semaphore`. Times in ms,
// every random draw from one seeded generator: the same scenario gives the same numbers.
import type { GateDemand, LatencySample, LoadSample } from '../src/index.ts';

/** What one request does upstream. */
export interface Shape {
  /** Django CPU time, spread over bursts between the queries. */
  readonly cpuMs: number;
  readonly queries: number;
  /** Time each query holds a server connection. */
  readonly queryMs: number;
  /** Time holding no connection and no CPU. */
  readonly ioMs: number;
}

export interface Scenario {
  readonly name: string;
  readonly poolSize: number;
  readonly cores: number;
  /** The hard ceiling of the limit. */
  readonly ceiling: number;
  readonly bulkWorkers: number;
  /** Interactive requests per second. */
  readonly interactiveRate: number;
  readonly bulk: Shape;
  readonly interactive: Shape;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Load sample period. */
  readonly sampleEveryMs: number;
  readonly seed: number;
  /** From this time on, every query takes `slowdown` times as long (the database got slower). */
  readonly slowdownAt?: number;
  readonly slowdown?: number;
}

/** What the simulation drives: any limit source, optionally closed-loop. */
export interface SimController {
  readonly current: number;
  onChange(listener: (limit: number) => void): unknown;
  record?(sample: LatencySample): void;
  sample?(load: LoadSample): void;
  attach?(demand: () => GateDemand): void;
}

export interface SimResult {
  /** Bulk requests finished per second after the warm-up. */
  readonly bulkPerSecond: number;
  readonly interactiveP50: number;
  readonly interactiveP99: number;
  /** Mean limit after the warm-up, and its coefficient of variation (steadiness). */
  readonly limitMean: number;
  readonly limitCv: number;
  /** Mean `cl_waiting` after the warm-up. */
  readonly meanWaiting: number;
}

interface Request {
  readonly bulk: boolean;
  readonly arrivedAt: number;
  admittedAt: number;
  inflightAtAdmit: number;
  readonly steps: (['cpu' | 'query' | 'io', number] | undefined)[];
  step: number;
}

/** A binary min-heap of timed events, ties broken by insertion order. */
class Events {
  readonly #heap: { t: number; seq: number; fn: () => void }[] = [];
  #seq = 0;
  push(t: number, fn: () => void): void {
    const h = this.#heap;
    h.push({ t, seq: this.#seq++, fn });
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      [h[i], h[p]] = [h[p] as (typeof h)[number], h[i] as (typeof h)[number]];
      i = p;
    }
  }
  pop(): { t: number; fn: () => void } | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(l, m)) m = l;
        if (r < h.length && this.#less(r, m)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as (typeof h)[number], h[i] as (typeof h)[number]];
        i = m;
      }
    }
    return top;
  }
  #less(a: number, b: number): boolean {
    const x = this.#heap[a] as { t: number; seq: number };
    const y = this.#heap[b] as { t: number; seq: number };
    return x.t < y.t || (x.t === y.t && x.seq < y.seq);
  }
}

/** A FIFO with O(1) shift. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;
  get size(): number {
    return this.#items.length - this.#head;
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;

/** Runs `scenario` with the gate's limit from `makeController(clock)`. */
export function simulate(
  scenario: Scenario,
  makeController: (now: () => number) => SimController,
): SimResult {
  const s = scenario;
  const random = mulberry32(s.seed);
  const jitter = (ms: number): number => ms * (0.5 + random());
  const events = new Events();
  let now = 0;
  const at = (delay: number, fn: () => void): void => events.push(now + delay, fn);

  // Django's CPU: `cores` servers, FIFO.
  let cpuBusy = 0;
  const cpuQueue = new Fifo<[number, () => void]>();
  const cpu = (ms: number, done: () => void): void => {
    if (cpuBusy < s.cores) {
      cpuBusy += 1;
      at(ms, () => {
        cpuBusy -= 1;
        const next = cpuQueue.shift();
        if (next) cpu(...next);
        done();
      });
    } else cpuQueue.push([ms, done]);
  };

  // The pool: `poolSize` server connections, clients wait FIFO.
  let active = 0;
  const waiting = new Fifo<{ since: number; go: () => void }>();
  const query = (ms: number, done: () => void): void => {
    const run = (): void =>
      at(ms, () => {
        const next = waiting.shift();
        if (next) next.go();
        else active -= 1;
        done();
      });
    if (active < s.poolSize) {
      active += 1;
      run();
    } else waiting.push({ since: now, go: run });
  };

  // The gate.
  const controller = makeController(() => now);
  let limit = controller.current;
  let inFlight = 0;
  let bulkInFlight = 0;
  const queued = { interactive: new Fifo<Request>(), bulk: new Fifo<Request>() };
  const gauges: GateDemand = {
    get queued() {
      return queued.interactive.size + queued.bulk.size;
    },
    get inFlight() {
      return inFlight;
    },
  };
  controller.attach?.(() => gauges);
  const bulkCap = (): number => limit - Math.ceil(limit * 0.2);
  const dispatch = (): void => {
    while (inFlight < limit) {
      let next = queued.interactive.shift();
      if (!next && bulkInFlight < bulkCap()) next = queued.bulk.shift();
      if (!next) return;
      start(next);
    }
  };
  controller.onChange((n) => {
    limit = n;
    dispatch();
  });

  let bulkDone = 0;
  const latencies: number[] = [];
  const measuring = (): boolean => now >= s.warmupMs;

  const makeRequest = (bulk: boolean): Request => {
    const shape = bulk ? s.bulk : s.interactive;
    const steps: Request['steps'] = [];
    const burst = shape.cpuMs / (shape.queries + 1);
    const slower = now >= (s.slowdownAt ?? Number.POSITIVE_INFINITY) ? (s.slowdown ?? 1) : 1;
    for (let i = 0; i < shape.queries; i += 1)
      steps.push(['cpu', jitter(burst)], ['query', jitter(shape.queryMs * slower)]);
    steps.push(['cpu', jitter(burst)]);
    if (shape.ioMs > 0) steps.push(['io', jitter(shape.ioMs)]);
    return { bulk, arrivedAt: now, admittedAt: 0, inflightAtAdmit: 0, steps, step: 0 };
  };
  const arrive = (req: Request): void => {
    const canBulk = !req.bulk || bulkInFlight < bulkCap();
    if (inFlight < limit && canBulk && (req.bulk ? queued.interactive.size === 0 : true)) start(req);
    else (req.bulk ? queued.bulk : queued.interactive).push(req);
  };
  const start = (req: Request): void => {
    inFlight += 1;
    if (req.bulk) bulkInFlight += 1;
    req.admittedAt = now;
    req.inflightAtAdmit = inFlight;
    next(req);
  };
  const next = (req: Request): void => {
    const step = req.steps[req.step++];
    if (!step) {
      finish(req);
      return;
    }
    const [kind, ms] = step;
    const go = (): void => next(req);
    if (kind === 'cpu') cpu(ms, go);
    else if (kind === 'query') query(ms, go);
    else at(ms, go);
  };
  const finish = (req: Request): void => {
    inFlight -= 1;
    if (req.bulk) bulkInFlight -= 1;
    // The middleware's default: interactive requests feed latency samples.
    if (!req.bulk)
      controller.record?.({ rttMs: now - req.admittedAt, inflight: req.inflightAtAdmit, dropped: false });
    if (measuring()) {
      if (req.bulk) bulkDone += 1;
      else latencies.push(now - req.arrivedAt);
    }
    dispatch();
    if (req.bulk) arrive(makeRequest(true)); // a closed loop: the next request at once
  };

  for (let w = 0; w < s.bulkWorkers; w += 1) at(random() * 100, () => arrive(makeRequest(true)));
  const interactiveArrival = (): void => {
    arrive(makeRequest(false));
    at((-Math.log(1 - random()) * 1000) / s.interactiveRate, interactiveArrival);
  };
  at(0, interactiveArrival);
  const limits: number[] = [];
  let waitingSum = 0;
  const sample = (): void => {
    const oldest = waiting.peek();
    controller.sample?.({
      busy: active,
      capacity: s.poolSize,
      waiting: waiting.size,
      maxWaitMs: oldest ? now - oldest.since : 0,
    });
    if (measuring()) {
      limits.push(limit);
      waitingSum += waiting.size;
    }
    at(s.sampleEveryMs, sample);
  };
  at(s.sampleEveryMs, sample);

  for (let e = events.pop(); e && e.t <= s.durationMs; e = events.pop()) {
    now = e.t;
    e.fn();
  }
  latencies.sort((a, b) => a - b);
  const mean = limits.reduce((a, b) => a + b, 0) / limits.length;
  const variance = limits.reduce((a, b) => a + (b - mean) ** 2, 0) / limits.length;
  return {
    bulkPerSecond: (bulkDone * 1000) / (s.durationMs - s.warmupMs),
    interactiveP50: percentile(latencies, 0.5),
    interactiveP99: percentile(latencies, 0.99),
    limitMean: mean,
    limitCv: Math.sqrt(variance) / mean,
    meanWaiting: waitingSum / limits.length,
  };
}
