import { afterEach, expect, test, vi } from 'vitest';
import {
  armWait,
  checkChoice,
  checkInteger,
  checkNumber,
  checkObject,
  Health,
  isTimeoutError,
  LinkedList,
  optional,
  pathMatcher,
  sqlName,
  TimeoutError,
  withTimeout,
} from '../src/index.ts';

afterEach(() => {
  vi.useRealTimers();
});

test('option checks name the option and the value, TypeError for the type, RangeError for the range', () => {
  expect(() => checkInteger('maxQueue', '3', 0)).toThrow(
    new TypeError('maxQueue should be an integer, got "3"'),
  );
  expect(() => checkInteger('maxQueue', -1, 0)).toThrow(
    new RangeError('maxQueue should be an integer >= 0, got -1'),
  );
  expect(() => checkInteger('limit', 1.5, 1, 10)).toThrow(
    /limit should be an integer between 1 and 10, got 1.5/,
  );
  expect(() => checkNumber('share', 0, 0, 1, true)).toThrow(/share should be a number in \(0, 1\], got 0/);
  expect(() => checkChoice('mode', 'x', ['a', 'b'])).toThrow(/mode should be one of 'a', 'b', got "x"/);
  expect(() => checkObject('options', null)).toThrow(/options should be an object, got null/);
  expect(optional(undefined, 7, (v) => checkInteger('n', v, 0))).toBe(7);
  expect(optional(3, 7, (v) => checkInteger('n', v, 0))).toBe(3);
});

test('withTimeout aborts the work and rejects with a TimeoutError; a caller abort wins with its reason', async () => {
  let seen: AbortSignal | undefined;
  const late = withTimeout((signal) => {
    seen = signal;
    return new Promise(() => {});
  }, 20);
  await expect(late).rejects.toBeInstanceOf(TimeoutError);
  expect(seen?.aborted).toBe(true);
  expect(isTimeoutError(seen?.reason)).toBe(true);

  const controller = new AbortController();
  const aborted = withTimeout(() => new Promise(() => {}), 10_000, { signal: controller.signal });
  controller.abort(new Error('caller gave up'));
  await expect(aborted).rejects.toThrow('caller gave up');
  await expect(withTimeout(async () => 42, 10)).resolves.toBe(42);
});

test('armWait fires once, for the first of timeout and abort, and never after disarm', () => {
  vi.useFakeTimers();
  const ends: string[] = [];
  armWait(100, undefined, (why) => ends.push(`a:${why}`));
  const controller = new AbortController();
  armWait(100, controller.signal, (why) => ends.push(`b:${why}`));
  const disarm = armWait(100, undefined, (why) => ends.push(`c:${why}`));
  disarm();
  controller.abort();
  vi.advanceTimersByTime(200);
  expect(ends).toEqual(['b:abort', 'a:timeout']);
});

test('LinkedList removes exactly the node given, once', () => {
  const list = new LinkedList<string>();
  const a = list.push('a');
  const b = list.push('b');
  list.push('c');
  expect(list.remove(b)).toBe(true);
  expect(list.remove(b)).toBe(false);
  list.moveToBack(a);
  expect([...list]).toEqual(['c', 'a']);
  expect(list.shift()).toBe('c');
  expect(list.clear()).toEqual(['a']);
  expect(list.size).toBe(0);
});

test('pathMatcher: segment-boundary prefixes, trailing slash for a tree, * for one segment, RegExps', () => {
  const m = pathMatcher([
    '/api/auth/login',
    '/static/',
    '/api/tasks/*/preview',
    /^\/api\/assets\/[0-9a-f-]+$/,
  ]);
  expect(m.matches('/api/auth/login')).toBe(true);
  expect(m.matches('/api/auth/login/')).toBe(true);
  expect(m.matches('/api/auth/loginx')).toBe(false);
  expect(m.matches('/static/app.js')).toBe(true);
  expect(m.matches('/api/tasks/12/preview')).toBe(true);
  expect(m.matches('/api/tasks/12/13/preview')).toBe(false);
  expect(m.matches('/api/assets/0f-aa')).toBe(true);
  expect(() => pathMatcher(['api/x'])).toThrow(/patterns\[0\] must start with "\/"/);
  expect(() => pathMatcher(['/a/../b'])).toThrow(/must not contain/);
});

test('Health: connecting -> down after its connect timeout, probed until up, with events', async () => {
  vi.useFakeTimers();
  let answer = false;
  let t = 1_000;
  const health = new Health({
    name: 'redis',
    initial: 'connecting',
    connectTimeoutMs: 500,
    probeIntervalMs: 100,
    probe: async () => {
      if (!answer) throw new Error('no');
    },
    now: () => t,
  });
  const log: string[] = [];
  health.on('down', ({ from }) => log.push(`down from ${from}`));
  health.on('up', ({ downForMs }) => log.push(`up after ${downForMs}`));
  expect(health.state).toBe('connecting');
  await vi.advanceTimersByTimeAsync(500);
  expect(health.state).toBe('down');
  await vi.advanceTimersByTimeAsync(300);
  expect(health.state).toBe('down');
  answer = true;
  t = 2_000;
  await vi.advanceTimersByTimeAsync(100);
  expect(health.state).toBe('up');
  expect(log).toEqual(['down from connecting', 'up after 1000']);
  expect(health.outages).toBe(1);
  await health.close();
});

test('Health: failures count to the threshold; suspect() probes; check() waits for the verdict', async () => {
  let answer = true;
  const health = new Health({
    name: 'database',
    probeIntervalMs: 10_000,
    failureThreshold: 3,
    probe: async () => {
      if (!answer) throw new Error('refused');
    },
  });
  health.failure(new Error('1'));
  health.failure(new Error('2'));
  expect(health.state).toBe('up');
  health.success();
  health.failure(new Error('3'));
  health.failure(new Error('4'));
  expect(health.state).toBe('up');
  answer = false;
  await expect(health.check(new Error('5xx'))).resolves.toBe('down');
  expect((health.lastError as Error).message).toBe('refused');
  health.success();
  expect(health.state).toBe('up');
  await health.close();
});

test('Health: a probe that hangs past probeTimeoutMs fails; check() probes within the interval; down answers from state', async () => {
  const hung = new Health({
    name: 'database',
    probe: (signal) =>
      new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    probeIntervalMs: 1_000,
    probeTimeoutMs: 20,
  });
  await expect(hung.check(new Error('stalled'))).resolves.toBe('down');
  expect(String(hung.lastError)).toMatch(/database did not answer within 20 ms/);
  await hung.close();

  let probes = 0;
  let reachable = true;
  const health = new Health({
    name: 'database',
    probe: async () => {
      probes += 1;
      if (!reachable) throw new Error('ECONNREFUSED');
    },
    probeIntervalMs: 60_000,
  });
  expect(await health.check(new Error('500'))).toBe('up');
  reachable = false;
  expect(await health.check(new Error('500'))).toBe('down');
  expect(await health.check(new Error('500'))).toBe('down');
  expect(probes).toBe(2);
  expect(() => new Health({ name: 'x', probeIntervalMs: 0 })).toThrow(
    /probeIntervalMs should be an integer between 1/,
  );
  await health.close();
});

test('sqlName quotes plain identifiers and refuses anything else', () => {
  expect(sqlName('table', 'django_session')).toBe('"django_session"');
  expect(sqlName('table', 'public.django_session', true)).toBe('"public"."django_session"');
  expect(() => sqlName('column', 'public.expire_date')).toThrow(/column should be a plain SQL identifier/);
  expect(() => sqlName('table', 'a.b.c', true)).toThrow(/table should be a table name or schema.table/);
  for (const bad of ['', 'x"y', 'x; DROP TABLE t', '1x', 'a'.repeat(64), 42]) {
    expect(() => sqlName('table', bad, true)).toThrow(TypeError);
  }
});
