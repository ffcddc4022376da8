import { afterEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker, type CircuitState, isAdmissionError } from '../src/index.ts';

afterEach(() => {
  vi.useRealTimers();
});

function refusal(b: CircuitBreaker): unknown {
  try {
    b.begin().success();
    return undefined;
  } catch (e) {
    return e;
  }
}

describe('CircuitBreaker (fake timers)', () => {
  it('opens over the threshold, refuses with Retry-After, half-opens for one trial, closes on success', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({ volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeoutMs: 5000 });
    const states: CircuitState[] = [];
    b.on('state', (e) => states.push(e.to));
    const rejects: number[] = [];
    b.on('reject', (e) => rejects.push(e.retryAfterSeconds));

    b.begin().success();
    b.begin().success();
    b.begin().failure(new Error('502'));
    await vi.advanceTimersByTimeAsync(0);
    b.begin().failure(new Error('503'));
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('closed'); // 2 of 4 = 50%: not above the threshold
    b.begin().failure(new Error('504'));
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('open'); // 3 of 5 = 60%
    expect(b.allows).toBe(false);

    const refused = refusal(b);
    expect(isAdmissionError(refused, 'E_CIRCUIT_OPEN')).toBe(true);
    expect(refused).toMatchObject({ status: 503, retryAfterSeconds: 5 });
    await vi.advanceTimersByTimeAsync(2000);
    expect(refusal(b)).toMatchObject({ retryAfterSeconds: 3 });
    await vi.advanceTimersByTimeAsync(3000);
    expect(b.state).toBe('half-open');

    const trial = b.begin();
    expect(refusal(b)).toMatchObject({ code: 'E_CIRCUIT_OPEN', retryAfterSeconds: 1 }); // one trial at a time
    expect(b.stats().rejects).toBe(3);
    trial.failure(new Error('still down'));
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('open');
    await vi.advanceTimersByTimeAsync(5000);
    expect(b.state).toBe('half-open');
    const second = b.begin();
    second.success();
    second.failure(); // settled already: ignored
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('closed');
    expect(b.retryAfterSeconds).toBe(0);
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
    expect(rejects).toEqual([5, 3, 1]);
    await b.close();
  });

  it('4xx answers (success) never count as failures; abandoned calls count nothing', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({ volumeThreshold: 4, errorThresholdPercentage: 50 });
    for (let i = 0; i < 50; i += 1) {
      const call = b.begin();
      if (i % 2) call.abandon();
      else call.success();
    }
    expect(b.stats()).toMatchObject({ successes: 25, failures: 0 });
    const hung = b.begin();
    for (let i = 0; i < 25; i += 1) b.begin().failure();
    expect(b.state).toBe('closed'); // 25 of 50: not above 50 %
    b.begin().failure();
    // 26 of 51: abandoned calls did not dilute the rate (counted as calls, it would be 26 of 76)
    expect(b.state).toBe('open');
    hung.abandon();
    expect(b.stats()).toMatchObject({ successes: 25, failures: 26, timeouts: 0 });
    await b.close();
  });

  it('forgets failures that leave the rolling window', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({ volumeThreshold: 6, rollingWindowMs: 10_000, rollingBuckets: 10 });
    for (let i = 0; i < 5; i += 1) b.begin().failure();
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('closed'); // below the volume threshold
    expect(b.stats().failures).toBe(5);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(b.stats().failures).toBe(0);
    b.begin().failure();
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('closed'); // 1 failure in the window, not 6
    await b.close();
  });

  it('counts a call still unsettled after timeoutMs as a failure (a hang opens it)', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({ volumeThreshold: 1, timeoutMs: 2000 });
    const failures: boolean[] = [];
    b.on('failure', (e) => failures.push(e.timedOut));
    const call = b.begin();
    await vi.advanceTimersByTimeAsync(1999);
    expect(b.state).toBe('closed');
    await vi.advanceTimersByTimeAsync(1);
    expect(failures).toEqual([true]);
    expect(b.state).toBe('open');
    expect(b.stats().timeouts).toBe(1);
    call.success(); // too late: ignored
    await vi.advanceTimersByTimeAsync(0);
    expect(b.state).toBe('open');
    await b.close();
  });

  it('run() counts only the errors isFailure accepts, and passes results and errors through', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({
      volumeThreshold: 1,
      errorThresholdPercentage: 30,
      isFailure: (e) => (e as { status?: number }).status !== 404,
    });
    await expect(b.run(async () => 42)).resolves.toBe(42);
    const notFound = Object.assign(new Error('not found'), { status: 404 });
    await expect(b.run(() => Promise.reject(notFound))).rejects.toBe(notFound);
    expect(b.state).toBe('closed');
    const down = Object.assign(new Error('down'), { status: 503 });
    await expect(b.run(() => Promise.reject(down))).rejects.toBe(down);
    expect(b.state).toBe('open'); // 1 failure of 3 calls = 33% > 30%
    await expect(b.run(async () => 1)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    await b.close();
  });

  it('run() aborts its signal and fails with a TimeoutError after timeoutMs', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({ volumeThreshold: 1, timeoutMs: 1000 });
    let aborted = false;
    const running = b.run(
      (signal) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            setTimeout(resolve, 10_000);
          });
        }),
    );
    const outcome = running.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await outcome).toMatchObject({ name: 'TimeoutError' });
    expect(aborted).toBe(true);
    expect(b.state).toBe('open');
    await b.close();
  });

  it('close() stops its timers and refuses later calls; options are validated', async () => {
    vi.useFakeTimers();
    const before = vi.getTimerCount();
    const b = new CircuitBreaker({ volumeThreshold: 1 });
    expect(vi.getTimerCount()).toBe(before); // the rolling window needs no timer
    b.begin().failure();
    expect(vi.getTimerCount()).toBe(before + 1); // open: the timer to half-open
    await b.close();
    await b.close();
    expect(vi.getTimerCount()).toBe(before);
    expect(() => b.begin()).toThrow(expect.objectContaining({ code: 'E_CLOSED' }));
    expect(() => new CircuitBreaker({ errorThresholdPercentage: 0 })).toThrow(/errorThresholdPercentage/);
    expect(() => new CircuitBreaker({ resetTimeoutMs: 0 })).toThrow(/resetTimeoutMs/);
    expect(() => new CircuitBreaker({ rollingWindowMs: 1000, rollingBuckets: 1000 })).toThrow(
      /rollingBuckets/,
    );
    expect(() => new CircuitBreaker({ timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => new CircuitBreaker({ name: '' })).toThrow('name should be a non-empty string, got ""');
  });
});

describe('CircuitBreaker: half-open trials (fake timers)', () => {
  async function halfOpen(options = {}): Promise<CircuitBreaker> {
    const b = new CircuitBreaker({ volumeThreshold: 1, resetTimeoutMs: 5000, ...options });
    b.begin().failure();
    expect(b.state).toBe('open');
    await vi.advanceTimersByTimeAsync(5000);
    expect(b.state).toBe('half-open');
    return b;
  }

  it('an abandoned trial voids it: the circuit opens again for resetTimeoutMs, it never closes', async () => {
    vi.useFakeTimers();
    const b = await halfOpen();
    const states: CircuitState[] = [];
    b.on('state', (e) => states.push(e.to));
    const trial = b.begin();
    expect(b.allows).toBe(false);
    trial.abandon();
    expect(b.state).toBe('open');
    expect(b.retryAfterSeconds).toBe(5);
    await vi.advanceTimersByTimeAsync(5000);
    expect(b.state).toBe('half-open');
    b.begin().success();
    expect(states).toEqual(['open', 'half-open', 'closed']);
    expect(b.stats()).toMatchObject({ successes: 0, failures: 0 }); // a closed circuit starts afresh
    await b.close();
  });

  it('a hung trial fails at timeoutMs and opens the circuit; its late verdict is ignored', async () => {
    vi.useFakeTimers();
    const b = await halfOpen({ timeoutMs: 3000 });
    const trial = b.begin();
    await vi.advanceTimersByTimeAsync(2999);
    expect(b.state).toBe('half-open');
    await vi.advanceTimersByTimeAsync(1);
    expect(b.state).toBe('open');
    trial.success();
    expect(b.state).toBe('open');
    await b.close();
  });

  it('calls begun before the circuit opened do not decide the half-open circuit', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker({ volumeThreshold: 1, resetTimeoutMs: 1000 });
    const early = b.begin();
    b.begin().failure();
    await vi.advanceTimersByTimeAsync(1000);
    expect(b.state).toBe('half-open');
    early.success(); // began while closed: says nothing now
    expect(b.state).toBe('half-open');
    expect(b.allows).toBe(true);
    await b.close();
  });
});
