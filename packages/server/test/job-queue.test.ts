import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JobQueue, type Queued } from '../src/job-queue.js';

interface Item extends Queued {
  readonly id: number;
}

/** The order the queue promises: priority descending, then arrival ascending. */
function byPriorityThenArrival(a: Item, b: Item): number {
  return b.priority - a.priority || a.seq - b.seq;
}

type Op =
  | { readonly kind: 'push'; readonly priority: number }
  | { readonly kind: 'shift' }
  | { readonly kind: 'remove'; readonly pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .integer({ min: 0, max: 10 })
      .map((priority) => ({ kind: 'push', priority }) as const),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'shift' } as const) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: 'remove', pick }) as const) },
);

describe('JobQueue', () => {
  it('pops by priority (descending), then by arrival, whatever the interleaving', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
        const queue = new JobQueue<Item>();
        let model: Item[] = [];
        let seq = 0;
        for (const op of ops) {
          if (op.kind === 'push') {
            const item = { id: seq, seq: seq++, priority: op.priority };
            const position = queue.push(item);
            model = [...model, item].sort(byPriorityThenArrival);
            expect(position).toBe(model.indexOf(item));
            expect(queue.positionOf(item)).toBe(position);
          } else if (op.kind === 'shift') {
            expect(queue.shift()).toBe(model.shift());
          } else if (model.length > 0) {
            const victim = model[op.pick % model.length]!;
            expect(queue.remove(victim)).toBe(true);
            expect(queue.remove(victim)).toBe(false);
            expect(queue.positionOf(victim)).toBe(-1);
            model = model.filter((item) => item !== victim);
          }
          expect(queue.size).toBe(model.length);
          expect(queue.peek()).toBe(model[0]);
          expect(queue.toArray()).toEqual(model);
        }
        // Draining what is left still comes out in order.
        const drained: Item[] = [];
        for (let item = queue.shift(); item !== undefined; item = queue.shift()) drained.push(item);
        expect(drained).toEqual(model);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps first-come-first-served among equal priorities', () => {
    const queue = new JobQueue<Item>();
    for (let seq = 0; seq < 5; seq++) queue.push({ id: seq, seq, priority: 5 });
    queue.push({ id: 99, seq: 5, priority: 6 });
    expect(queue.toArray().map((item) => item.id)).toEqual([99, 0, 1, 2, 3, 4]);
  });

  it('removes every entry matching a predicate, returning them in queue order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 50 }),
        fc.func(fc.boolean()),
        (priorities, predicate) => {
          const queue = new JobQueue<Item>();
          priorities.forEach((priority, seq) => queue.push({ id: seq, seq, priority }));
          const before = queue.toArray();
          const removed = queue.removeWhere(predicate);
          expect(removed).toEqual(before.filter((item) => predicate(item)));
          expect(queue.toArray()).toEqual(before.filter((item) => !predicate(item)));
        },
      ),
    );
  });

  it('returns a copy from toArray', () => {
    const queue = new JobQueue<Item>();
    queue.push({ id: 1, seq: 1, priority: 1 });
    queue.toArray().pop();
    expect(queue.size).toBe(1);
    expect(new JobQueue<Item>().shift()).toBeUndefined();
  });

  it('reads entries by position without removing them', () => {
    const queue = new JobQueue<Item>();
    queue.push({ id: 1, seq: 1, priority: 0 });
    queue.push({ id: 2, seq: 2, priority: 5 });
    queue.push({ id: 3, seq: 3, priority: 0 });
    expect([0, 1, 2, 3].map((i) => queue.at(i)?.id)).toEqual([2, 1, 3, undefined]);
    expect(queue.size).toBe(3);
  });
});
