import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FairQueue, type FairQueueEntry } from '../src/fair-queue.ts';

interface Item extends FairQueueEntry {
  readonly id: number;
}

function item(key: string, id: number): Item {
  return { key, id, lane: undefined, node: undefined };
}

/** Takes the next eligible entry out, as a gate grants it (peek, then take). */
function shift(q: FairQueue<Item>, eligible?: (key: string) => boolean): Item | undefined {
  const entry = q.peek(eligible);
  if (entry) q.take(entry);
  return entry;
}

describe('FairQueue', () => {
  it('serves keys round-robin, FIFO within a key', () => {
    const q = new FairQueue<Item>();
    let id = 0;
    for (const key of ['a', 'a', 'a', 'b', 'b', 'c']) q.push(item(key, id++));
    const out: string[] = [];
    for (let e = shift(q); e; e = shift(q)) out.push(`${e.key}${e.id}`);
    expect(out).toEqual(['a0', 'b3', 'c5', 'a1', 'b4', 'a2']);
    expect(q.size).toBe(0);
    expect(q.keys).toBe(0);
  });

  it('puts a fresh key ahead of keys already served, behind other fresh keys', () => {
    const q = new FairQueue<Item>();
    for (let i = 0; i < 5; i += 1) q.push(item('bulk', i));
    expect(shift(q)?.key).toBe('bulk');
    q.push(item('u1', 10));
    q.push(item('u2', 11));
    expect([shift(q)?.key, shift(q)?.key, shift(q)?.key]).toEqual(['u1', 'u2', 'bulk']);
  });

  it('puts a key that is not fresh at the back', () => {
    const q = new FairQueue<Item>();
    q.push(item('a', 0));
    q.push(item('busy', 1), false);
    q.push(item('b', 2));
    expect([shift(q)?.key, shift(q)?.key, shift(q)?.key]).toEqual(['a', 'b', 'busy']);
  });

  it('skips ineligible keys without losing their turn', () => {
    const q = new FairQueue<Item>();
    q.push(item('a', 0));
    q.push(item('b', 1));
    q.push(item('a', 2));
    expect(shift(q, (k) => k !== 'a')?.id).toBe(1);
    expect(shift(q)?.id).toBe(0);
    expect(shift(q)?.id).toBe(2);
  });

  it("collect() lists entries in service order, interleaving keys, within each key's room", () => {
    const q = new FairQueue<Item>();
    let id = 0;
    for (const key of ['a', 'a', 'a', 'b', 'c', 'c']) q.push(item(key, id++));
    const names = (xs: Item[]) => xs.map((e) => `${e.key}${e.id}`);
    expect(names(q.collect(10, () => 10))).toEqual(['a0', 'b3', 'c4', 'a1', 'c5', 'a2']);
    expect(names(q.collect(4, () => 10))).toEqual(['a0', 'b3', 'c4', 'a1']);
    expect(names(q.collect(10, (k) => (k === 'a' ? 1 : k === 'b' ? 0 : 2)))).toEqual(['a0', 'c4', 'c5']);
    expect(q.size).toBe(6); // nothing taken out
  });

  it('remove() takes out exactly one entry', () => {
    const q = new FairQueue<Item>();
    const items = [item('a', 0), item('a', 1), item('a', 2), item('b', 3)];
    for (const i of items) q.push(i);
    expect(q.remove(items[1] as Item)).toBe(true);
    expect(q.remove(items[1] as Item)).toBe(false);
    expect(q.collect(10, () => 10).filter((e) => e.key === 'a')).toHaveLength(2);
    expect(q.drain().map((e) => e.id)).toEqual([0, 2, 3]);
    expect(q.size).toBe(0);
  });

  it('property: every entry leaves exactly once, FIFO per key, sizes consistent', () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('push' as const),
        key: fc.constantFrom('a', 'b', 'c', 'd'),
        fresh: fc.boolean(),
      }),
      fc.record({
        kind: fc.constant('shift' as const),
        skip: fc.option(fc.constantFrom('a', 'b', 'c', 'd')),
      }),
      fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const q = new FairQueue<Item>();
        const queued: Item[] = [];
        const out: Item[] = [];
        let id = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            const it = item(o.key, id++);
            q.push(it, o.fresh);
            queued.push(it);
          } else if (o.kind === 'shift') {
            const e = shift(q, o.skip === null ? undefined : (k) => k !== o.skip);
            if (e) {
              // the head of its key's FIFO
              const first = queued.find((x) => x.key === e.key);
              expect(first).toBe(e);
              queued.splice(queued.indexOf(e), 1);
              out.push(e);
            } else {
              expect(queued.every((x) => x.key === o.skip)).toBe(true);
            }
          } else if (queued.length > 0) {
            const victim = queued[o.pick % queued.length] as Item;
            expect(q.remove(victim)).toBe(true);
            queued.splice(queued.indexOf(victim), 1);
          }
          expect(q.size).toBe(queued.length);
          expect(q.keys).toBe(new Set(queued.map((x) => x.key)).size);
        }
        const rest = q.drain();
        expect(new Set([...rest, ...out]).size).toBe(rest.length + out.length);
        expect(rest.length).toBe(queued.length);
      }),
      { numRuns: 300 },
    );
  });
});
