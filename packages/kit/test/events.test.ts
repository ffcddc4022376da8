import { expect, test, vi } from 'vitest';
import { TypedEvents } from '../src/index.ts';

interface Events {
  ping: { n: number };
  other: string;
}

test('on() returns an idempotent unsubscribe; listeners run in the order they were added', () => {
  const events = new TypedEvents<Events>();
  const log: string[] = [];
  const offA = events.on('ping', ({ n }) => log.push(`a${n}`));
  events.on('ping', ({ n }) => log.push(`b${n}`));
  events.emit('ping', { n: 1 });
  offA();
  offA();
  events.emit('ping', { n: 2 });
  events.emit('other', 'nobody listens');
  expect(log).toEqual(['a1', 'b1', 'b2']);
  expect(events.has('ping')).toBe(true);
  expect(events.has('other')).toBe(false);
  events.clear();
  expect(events.has('ping')).toBe(false);
});

test('a listener that throws reaches the error handler and never the emitter or later listeners', () => {
  const onListenerError = vi.fn();
  const events = new TypedEvents<Events>(onListenerError);
  const later = vi.fn();
  events.on('ping', () => {
    throw new Error('boom');
  });
  events.on('ping', later);
  expect(() => events.emit('ping', { n: 1 })).not.toThrow();
  expect(later).toHaveBeenCalledWith({ n: 1 });
  expect(onListenerError).toHaveBeenCalledWith(expect.objectContaining({ message: 'boom' }), 'ping');
});

test('by default a throwing listener becomes a process warning', () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  const events = new TypedEvents<Events>();
  events.on('other', () => {
    throw new Error('bad');
  });
  events.emit('other', 'x');
  expect(warn).toHaveBeenCalledWith(expect.stringContaining("'other' event threw: bad"), {
    code: 'SLUICE_LISTENER_THREW',
  });
  warn.mockRestore();
});
