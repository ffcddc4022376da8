import { afterEach, describe, expect, it, vi } from 'vitest';
import { isAdmissionError, isAdmissionRejected, type Permit, Semaphore } from '../src/index.ts';
import { deferred, flush, settle } from './helpers.ts';

afterEach(() => {
  vi.useRealTimers();
});

function gauges(g: Semaphore) {
  return { inFlight: g.inFlight, queued: g.queued, available: g.available, limit: g.limit };
}

describe('Semaphore: concurrency', () => {
  it('admits up to the limit and queues the rest, with an ordered enter/exit log', async () => {
    const gate = new Semaphore({ limit: 2, maxQueue: 10, queueTimeoutMs: 10_000 });
    const log: string[] = [];
    const holds = { a: deferred(), b: deferred(), c: deferred(), d: deferred() };
    const run = async (name: keyof typeof holds) => {
      const permit = await gate.acquire({ key: name });
      log.push(`enter ${name}`);
      await holds[name].promise;
      log.push(`exit ${name}`);
      permit.release();
    };
    const all = [run('a'), run('b'), run('c'), run('d')];
    await flush();
    expect(log).toEqual(['enter a', 'enter b']);
    expect(gauges(gate)).toEqual({ inFlight: 2, queued: 2, available: 0, limit: 2 });

    holds.b.resolve();
    await flush();
    expect(log).toEqual(['enter a', 'enter b', 'exit b', 'enter c']);
    expect(gauges(gate)).toEqual({ inFlight: 2, queued: 1, available: 0, limit: 2 });

    holds.a.resolve();
    await flush();
    expect(log).toEqual(['enter a', 'enter b', 'exit b', 'enter c', 'exit a', 'enter d']);
    expect(gauges(gate)).toEqual({ inFlight: 2, queued: 0, available: 0, limit: 2 });

    holds.d.resolve();
    await flush();
    expect(gauges(gate)).toEqual({ inFlight: 1, queued: 0, available: 1, limit: 2 });
    holds.c.resolve();
    await Promise.all(all);
    expect(log.slice(-2)).toEqual(['exit d', 'exit c']);
    expect(gauges(gate)).toEqual({ inFlight: 0, queued: 0, available: 2, limit: 2 });
    await gate.close();
  });

  it('release() is idempotent and works through `using`', async () => {
    const gate = new Semaphore({ limit: 1 });
    const p = await gate.acquire();
    p.release();
    p.release();
    expect(p.released).toBe(true);
    expect(gate.inFlight).toBe(0);
    {
      using q = await gate.acquire();
      expect(q.released).toBe(false);
      expect(gate.inFlight).toBe(1);
    }
    expect(gate.inFlight).toBe(0);
    const r = await gate.acquire();
    expect(gate.available).toBe(0);
    r.release();
    r.release();
    expect(gate.available).toBe(1);
    await gate.close();
  });

  it('tryAcquire never queues and never jumps a waiter that could use the slot', async () => {
    const gate = new Semaphore({ limit: 1 });
    const first = gate.tryAcquire({ key: 'a' });
    expect(first).toBeDefined();
    expect(gate.tryAcquire({ key: 'b' })).toBeUndefined();
    const waiting = settle(gate.acquire({ key: 'b' }));
    first?.release();
    // the queued waiter got the slot synchronously; a newcomer finds none
    expect(gate.tryAcquire({ key: 'c' })).toBeUndefined();
    await flush();
    expect(waiting.state).toBe('resolved');
    (waiting.value as Permit).release();
    await gate.close();
  });

  it('rejects with E_QUEUE_FULL beyond maxQueue, with status 503 and Retry-After', async () => {
    const gate = new Semaphore({ limit: 1, maxQueue: 2 });
    const held = await gate.acquire();
    const w1 = settle(gate.acquire());
    const w2 = settle(gate.acquire());
    const rejects: string[] = [];
    gate.on('reject', (e) => rejects.push(e.code));
    const error = await gate.acquire().catch((e: unknown) => e);
    expect(isAdmissionError(error, 'E_QUEUE_FULL')).toBe(true);
    expect(isAdmissionRejected(error)).toBe(true);
    if (!isAdmissionError(error)) throw error;
    expect(error.status).toBe(503);
    expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(rejects).toEqual(['E_QUEUE_FULL']);
    expect(gate.queued).toBe(2);
    held.release();
    await flush();
    expect(w1.state).toBe('resolved');
    expect(w2.state).toBe('pending');
    (w1.value as Permit).release();
    await flush();
    (w2.value as Permit).release();
    await gate.close();
  });

  it('maxQueue 0 never queues', async () => {
    const gate = new Semaphore({ limit: 1, maxQueue: 0 });
    const held = await gate.acquire();
    await expect(gate.acquire()).rejects.toMatchObject({ code: 'E_QUEUE_FULL' });
    held.release();
    await gate.close();
  });
});

describe('Semaphore: timeouts and aborts remove exactly the waiter', () => {
  it('a waiter that times out removes itself and clears its timer; the others keep their places', async () => {
    vi.useFakeTimers();
    const gate = new Semaphore({ limit: 1, maxQueue: 10, queueTimeoutMs: 1000 });
    const held = await gate.acquire();
    const timersBefore = vi.getTimerCount();
    const w1 = settle(gate.acquire({ key: 'w1' }));
    await vi.advanceTimersByTimeAsync(500);
    const w2 = settle(gate.acquire({ key: 'w2' }));
    await vi.advanceTimersByTimeAsync(100);
    const w3 = settle(gate.acquire({ key: 'w3' }));
    expect(vi.getTimerCount()).toBe(timersBefore + 3);
    await vi.advanceTimersByTimeAsync(399);
    expect(w1.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    expect(w1.state).toBe('rejected');
    expect(isAdmissionError(w1.error, 'E_QUEUE_TIMEOUT')).toBe(true);
    expect(gate.queued).toBe(2);
    expect(vi.getTimerCount()).toBe(timersBefore + 2);
    held.release();
    await vi.advanceTimersByTimeAsync(0);
    expect(w2.state).toBe('resolved');
    expect(w3.state).toBe('pending');
    expect(vi.getTimerCount()).toBe(timersBefore + 1);
    expect((w2.value as Permit).waitedMs).toBeGreaterThanOrEqual(500);
    (w2.value as Permit).release();
    await vi.advanceTimersByTimeAsync(0);
    expect(w3.state).toBe('resolved');
    expect(vi.getTimerCount()).toBe(timersBefore);
    (w3.value as Permit).release();
    await gate.close();
  });

  it('an aborted waiter leaves at once with E_ABORTED (499), clearing its timer and listener', async () => {
    vi.useFakeTimers();
    const gate = new Semaphore({ limit: 1, queueTimeoutMs: 60_000 });
    const held = await gate.acquire();
    const c1 = new AbortController();
    const c2 = new AbortController();
    const w1 = settle(gate.acquire({ signal: c1.signal }));
    const w2 = settle(gate.acquire({ signal: c2.signal }));
    const timers = vi.getTimerCount();
    c1.abort(new Error('client left'));
    await vi.advanceTimersByTimeAsync(0);
    expect(w1.state).toBe('rejected');
    expect(isAdmissionError(w1.error, 'E_ABORTED')).toBe(true);
    expect((w1.error as { status: number }).status).toBe(499);
    expect(isAdmissionRejected(w1.error)).toBe(false);
    expect(vi.getTimerCount()).toBe(timers - 1);
    expect(gate.queued).toBe(1);
    held.release();
    await vi.advanceTimersByTimeAsync(0);
    expect(w2.state).toBe('resolved');
    // aborting after the grant does nothing to the permit
    c2.abort();
    expect(gate.inFlight).toBe(1);
    (w2.value as Permit).release();
    await gate.close();
  });

  it('an already-aborted signal fails fast without queueing', async () => {
    const gate = new Semaphore({ limit: 1 });
    const held = await gate.acquire();
    await expect(gate.acquire({ signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(gate.queued).toBe(0);
    held.release();
    await gate.close();
  });

  it('checks the signal again when a waiter is dequeued', async () => {
    const gate = new Semaphore({ limit: 1 });
    const held = await gate.acquire();
    // A signal that turns aborted without dispatching its event: a real AbortSignal always
    // dispatches, so this stand-in is the only way to reach the dequeue-time check.
    const silent = {
      aborted: false,
      reason: undefined as unknown,
      addEventListener() {},
      removeEventListener() {},
    } as unknown as AbortSignal & { aborted: boolean };
    const w1 = settle(gate.acquire({ key: 'x', signal: silent }));
    const w2 = settle(gate.acquire({ key: 'y' }));
    (silent as { aborted: boolean }).aborted = true;
    held.release();
    await flush();
    expect(isAdmissionError(w1.error, 'E_ABORTED')).toBe(true);
    expect(w2.state).toBe('resolved');
    expect(gate.inFlight).toBe(1);
    (w2.value as Permit).release();
    await gate.close();
  });

  it('abort storm: 1000 acquires aborted while queued or in flight leave nothing behind', async () => {
    const gate = new Semaphore({ limit: 10, maxQueue: 2000, queueTimeoutMs: 30_000 });
    const controllers = Array.from({ length: 1000 }, () => new AbortController());
    const outcomes = controllers.map(async (c, i) => {
      const permit = await gate.acquire({
        signal: c.signal,
        key: `k${i % 7}`,
        priority: i % 3 ? 'interactive' : 'bulk',
      });
      // in flight: hold until the client goes away
      await new Promise((r) => c.signal.addEventListener('abort', r, { once: true }));
      permit.release('ignore');
      return 'held';
    });
    await flush();
    expect(gate.inFlight).toBe(10);
    expect(gate.queued).toBe(990);
    for (const c of controllers) c.abort();
    const results = await Promise.allSettled(outcomes);
    const held = results.filter((r) => r.status === 'fulfilled').length;
    const aborted = results.filter(
      (r) => r.status === 'rejected' && isAdmissionError(r.reason, 'E_ABORTED'),
    ).length;
    expect(held + aborted).toBe(1000);
    expect(held).toBeGreaterThanOrEqual(10);
    expect(gate.inFlight).toBe(0);
    expect(gate.queued).toBe(0);
    const next = gate.tryAcquire({ key: 'after' });
    expect(next).toBeDefined();
    expect(next?.waitedMs).toBe(0);
    next?.release();
    await gate.close();
  });
});

describe('Semaphore: bulk work waits (per-class queue bounds and timeouts)', () => {
  it('interactive traffic filling the limit cannot starve bulk: bulk gets its share first', async () => {
    const gate = new Semaphore({ limit: 8 }); // bulkShare 0.25: 2 slots bulk gets before interactive
    const held = Array.from({ length: 8 }, () => gate.tryAcquire({ key: 'poller' }) as Permit);
    const polls = Array.from({ length: 20 }, () => settle(gate.acquire({ key: 'poller' })));
    const exports = Array.from({ length: 3 }, () =>
      settle(gate.acquire({ key: 'script', priority: 'bulk' })),
    );
    for (const p of held.slice(0, 3)) p.release();
    await flush();
    // two slots to bulk (its share), then interactive first again
    expect(exports.map((e) => e.state)).toEqual(['resolved', 'resolved', 'pending']);
    expect(polls.filter((p) => p.state === 'resolved')).toHaveLength(1);
    expect(gate.bulkInFlight).toBe(2);
    const strict = new Semaphore({ limit: 8, bulkShare: 0 });
    const strictHeld = Array.from({ length: 8 }, () => strict.tryAcquire({ key: 'poller' }) as Permit);
    const strictPoll = settle(strict.acquire({ key: 'poller' }));
    const strictExport = settle(strict.acquire({ key: 'script', priority: 'bulk' }));
    strictHeld[0]?.release();
    await flush();
    expect([strictPoll.state, strictExport.state]).toEqual(['resolved', 'pending']);
    expect(() => new Semaphore({ limit: 1, interactiveReserve: 0.8, bulkShare: 0.5 })).toThrow(/bulkShare/);
    // the whole room left by the reserve, however 1 - reserve rounds in floating point
    expect(new Semaphore({ limit: 1, interactiveReserve: 0.9, bulkShare: 0.1 }).limit).toBe(1);
    for (const p of held.slice(3)) p.release();
    for (const p of strictHeld.slice(1)) p.release();
    await Promise.all([gate.close(), strict.close()]);
  });

  it('bulk waiters wait minutes while interactive ones time out in seconds, and never block them', async () => {
    vi.useFakeTimers();
    const gate = new Semaphore({ limit: 2, interactiveReserve: 0.5, maxQueue: { interactive: 2, bulk: 3 } });
    const bulkHeld = await gate.acquire({ key: 'script', priority: 'bulk' });
    const bulk = [1, 2, 3].map(() => settle(gate.acquire({ key: 'script', priority: 'bulk' })));
    // the bulk lane is full; the interactive lane is not: its places are its own
    const refused = await gate.acquire({ key: 'script', priority: 'bulk' }).catch((e: unknown) => e);
    expect(isAdmissionError(refused, 'E_QUEUE_FULL')).toBe(true);
    const user = await gate.acquire({ key: 'user' }); // the interactive share: at once
    const waiting = settle(gate.acquire({ key: 'user2' }));
    await vi.advanceTimersByTimeAsync(10_000); // default interactive timeout
    expect(isAdmissionError(waiting.error, 'E_QUEUE_TIMEOUT')).toBe(true);
    expect(bulk.map((b) => b.state)).toEqual(['pending', 'pending', 'pending']);
    expect((waiting.error as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    bulkHeld.release();
    await vi.advanceTimersByTimeAsync(0);
    expect(bulk.map((b) => b.state)).toEqual(['resolved', 'pending', 'pending']);
    await vi.advanceTimersByTimeAsync(300_000 - 10_000 - 1);
    expect(bulk[2]?.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    // the default bulk timeout is five minutes
    expect(isAdmissionError(bulk[1]?.error, 'E_QUEUE_TIMEOUT')).toBe(true);
    expect(isAdmissionError(bulk[2]?.error, 'E_QUEUE_TIMEOUT')).toBe(true);
    (bulk[0] as { value: Permit }).value.release();
    user.release();
    await gate.close();
  });

  it('takes one timeout for both classes, or one per class', async () => {
    vi.useFakeTimers();
    const gate = new Semaphore({ limit: 1, queueTimeoutMs: { bulk: 2000 }, interactiveReserve: 0 });
    const held = await gate.acquire();
    const bulk = settle(gate.acquire({ priority: 'bulk' }));
    const interactive = settle(gate.acquire());
    await vi.advanceTimersByTimeAsync(2000);
    expect([bulk.state, interactive.state]).toEqual(['rejected', 'pending']);
    await vi.advanceTimersByTimeAsync(8000);
    expect(interactive.state).toBe('rejected');
    held.release();
    await gate.close();
    expect(() => new Semaphore({ limit: 1, queueTimeoutMs: { bulk: 0 } })).toThrow(
      'queueTimeoutMs.bulk should be an integer between 1 and 2147483647, got 0',
    );
    expect(() => new Semaphore({ limit: 1, maxQueue: { interactive: -1 } })).toThrow(/maxQueue.interactive/);
  });
});

describe('Semaphore: fairness', () => {
  it("a key with 500 queued does not delay another key's request by more than one turn", async () => {
    const gate = new Semaphore({ limit: 1, maxQueue: 1000 });
    const order: string[] = [];
    const take = (key: string) =>
      gate.acquire({ key }).then((p) => {
        order.push(key);
        return p;
      });
    const first = await take('script');
    const script = Array.from({ length: 500 }, () => take('script'));
    await flush();
    const user = take('user');
    const other = take('other');
    await flush();
    expect(gate.queued).toBe(502);
    first.release();
    const u = await user;
    expect(order).toEqual(['script', 'user']);
    u.release();
    const o = await other;
    expect(order).toEqual(['script', 'user', 'other']);
    o.release();
    // then the script's requests, in order
    for (const p of script) (await p).release();
    expect(order.length).toBe(503);
    expect(gate.queued).toBe(0);
    await gate.close();
  });

  it('round-robins between two busy keys', async () => {
    const gate = new Semaphore({ limit: 1, maxQueue: 100 });
    const order: string[] = [];
    const held = await gate.acquire({ key: 'seed' });
    const ps = [
      ...Array.from({ length: 3 }, () => gate.acquire({ key: 'a' })),
      ...Array.from({ length: 3 }, () => gate.acquire({ key: 'b' })),
    ];
    held.release();
    for (let i = 0; i < 6; i += 1) {
      const p = await Promise.race(ps.map((x, j) => x.then((permit) => ({ permit, j }))));
      order.push(p.permit.key);
      ps[p.j] = new Promise(() => {});
      p.permit.release();
    }
    expect(order).toEqual(['a', 'b', 'a', 'b', 'a', 'b']);
    await gate.close();
  });

  it('perKeyLimit caps one key while others go through', async () => {
    const gate = new Semaphore({ limit: 5, perKeyLimit: 2 });
    const a1 = await gate.acquire({ key: 'a' });
    const a2 = await gate.acquire({ key: 'a' });
    const a3 = settle(gate.acquire({ key: 'a' }));
    const b1 = settle(gate.acquire({ key: 'b' }));
    await flush();
    expect(a3.state).toBe('pending');
    expect(b1.state).toBe('resolved');
    expect(gate.inFlight).toBe(3);
    expect(gate.inFlightFor('a')).toBe(2);
    a1.release();
    await flush();
    expect(a3.state).toBe('resolved');
    for (const p of [a2, a3.value as Permit, b1.value as Permit]) p.release();
    expect(gate.inFlight).toBe(0);
    await gate.close();
  });
});

describe('Semaphore: priority classes', () => {
  it('the interactive reserve holds under a bulk flood', async () => {
    const gate = new Semaphore({ limit: 10, interactiveReserve: 0.2, maxQueue: 1000, drainTimeoutMs: 0 });
    const bulk = Array.from({ length: 200 }, (_, i) =>
      settle(gate.acquire({ key: `bulk${i % 4}`, priority: 'bulk' })),
    );
    await flush();
    expect(gate.inFlight).toBe(8);
    expect(gate.bulkInFlight).toBe(8);
    expect(gate.queued).toBe(192);
    expect(gate.available).toBe(2);
    // interactive work goes straight through the reserve
    const i1 = await gate.acquire({ key: 'ui', priority: 'interactive' });
    const i2 = await gate.acquire({ key: 'ui2', priority: 'interactive' });
    expect(i1.waitedMs).toBe(0);
    expect(i2.waitedMs).toBe(0);
    expect(gate.inFlight).toBe(10);
    // a third interactive request waits, and gets the next slot before any bulk waiter
    const i3 = settle(gate.acquire({ key: 'ui3', priority: 'interactive' }));
    const firstBulk = bulk.find((b) => b.state === 'resolved')?.value as Permit;
    firstBulk.release();
    await flush();
    expect(i3.state).toBe('resolved');
    expect(gate.bulkInFlight).toBe(7);
    // when interactive work returns a slot, bulk may use it up to its cap again
    i1.release();
    await flush();
    expect(gate.bulkInFlight).toBe(8);
    expect(gate.inFlight).toBe(10);
    // bulk never exceeds its cap: releasing interactive slots leaves them to interactive work
    i2.release();
    (i3.value as Permit).release();
    await flush();
    expect(gate.bulkInFlight).toBe(8);
    expect(gate.inFlight).toBe(8);
    await gate.close();
    expect(bulk.filter((b) => isAdmissionError(b.error, 'E_CLOSED')).length).toBe(200 - 9); // 8 at first, 1 more when i1 returned
  });
});

describe('Semaphore: setLimit, close, options', () => {
  it('setLimit grows at once and shrinks as permits return', async () => {
    const gate = new Semaphore({ limit: 2, interactiveReserve: 0 });
    const limits: number[] = [];
    gate.on('limit', (e) => limits.push(e.limit));
    const p1 = await gate.acquire();
    const p2 = await gate.acquire();
    const w = settle(gate.acquire());
    gate.setLimit(3);
    await flush();
    expect(w.state).toBe('resolved');
    expect(gate.inFlight).toBe(3);
    gate.setLimit(1);
    expect(gate.inFlight).toBe(3);
    expect(gate.available).toBe(0);
    const late = settle(gate.acquire());
    p1.release();
    p2.release();
    await flush();
    expect(late.state).toBe('pending');
    (w.value as Permit).release();
    await flush();
    expect(late.state).toBe('resolved');
    expect(gate.inFlight).toBe(1);
    expect(limits).toEqual([3, 1]);
    (late.value as Permit).release();
    expect(() => gate.setLimit(-1)).toThrow(RangeError);
    expect(() => gate.setLimit(1.5)).toThrow(/limit should be an integer/);
    await gate.close();
  });

  it('close() rejects waiters with E_CLOSED, refuses new work, waits for permits, and is idempotent', async () => {
    const gate = new Semaphore({ limit: 1, drainTimeoutMs: 5000 });
    const held = await gate.acquire();
    const w = settle(gate.acquire());
    const closing = gate.close();
    expect(gate.close()).toBe(closing);
    await flush();
    expect(isAdmissionError(w.error, 'E_CLOSED')).toBe(true);
    await expect(gate.acquire()).rejects.toMatchObject({ code: 'E_CLOSED', status: 503 });
    expect(gate.tryAcquire()).toBeUndefined();
    let closed = false;
    void closing.then(() => {
      closed = true;
    });
    await flush();
    expect(closed).toBe(false);
    held.release();
    await closing;
    expect(closed).toBe(true);
  });

  it('close() stops waiting for permits after drainTimeoutMs', async () => {
    vi.useFakeTimers();
    const gate = new Semaphore({ limit: 1, drainTimeoutMs: 2000 });
    await gate.acquire();
    const closing = settle(gate.close());
    await vi.advanceTimersByTimeAsync(1999);
    expect(closing.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    expect(closing.state).toBe('resolved');
  });

  it('validates options, naming the option and the value', () => {
    expect(() => new Semaphore({ limit: -1 })).toThrow('limit should be an integer >= 0, got -1');
    expect(() => new Semaphore({ limit: Number.POSITIVE_INFINITY })).toThrow(RangeError);
    expect(() => new Semaphore({ limit: '3' as unknown as number })).toThrow(TypeError);
    expect(() => new Semaphore({ limit: 1, maxQueue: 1.5 })).toThrow(/maxQueue/);
    expect(() => new Semaphore({ limit: 1, queueTimeoutMs: 0 })).toThrow(/queueTimeoutMs/);
    expect(() => new Semaphore({ limit: 1, perKeyLimit: 0 })).toThrow(/perKeyLimit/);
    expect(() => new Semaphore({ limit: 1, interactiveReserve: 1 })).toThrow(/interactiveReserve/);
    expect(() => new Semaphore({ limit: 1, now: 5 as unknown as () => number })).toThrow(
      /now should be a function/,
    );
    expect(() => new Semaphore(undefined as unknown as { limit: number })).toThrow(TypeError);
  });

  it('rejects an unknown priority', async () => {
    const gate = new Semaphore({ limit: 1 });
    await expect(gate.acquire({ priority: 'urgent' as 'bulk' })).rejects.toThrow(TypeError);
    await gate.close();
  });

  it('estimates Retry-After from the queue and the average hold time (injected clock)', async () => {
    let t = 0;
    const gate = new Semaphore({ limit: 2, maxQueue: 4, now: () => t, maxRetryAfterSeconds: 30 });
    const a = await gate.acquire();
    const b = await gate.acquire();
    t = 4000;
    a.release();
    b.release();
    const held = [await gate.acquire(), await gate.acquire()];
    const queued = Array.from({ length: 4 }, () => settle(gate.acquire()));
    const error = await gate.acquire().catch((e: unknown) => e);
    // (4 queued + 1) / limit 2 * 4 s average hold = 10 s
    expect(error).toMatchObject({ code: 'E_QUEUE_FULL', retryAfterSeconds: 10 });
    for (const p of held) p.release();
    await flush();
    for (const q of queued) (q.value as Permit | undefined)?.release();
    await flush();
    for (const q of queued) (q.value as Permit | undefined)?.release();
    await gate.close();
  });
});
