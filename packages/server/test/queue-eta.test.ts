import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { queuedEtaMs, type QueueCapacity } from '../src/queue-eta.js';

const MEASURED = { loadMs: 400, warmupMs: 50, runMs: 20 } as const;

describe('queuedEtaMs', () => {
  it('shares the runs ahead among the instances, then adds its own run', () => {
    const warm: QueueCapacity = { estimates: MEASURED, instances: 2, ready: 2 };
    expect([0, 1, 2, 3, 4].map((position) => queuedEtaMs(position, warm))).toEqual([
      20, 20, 40, 40, 60,
    ]);
  });

  it('adds a whole cold start with no instance ready, and only what remains of one starting', () => {
    const cold = { estimates: MEASURED, instances: 0, ready: 0 } as const;
    expect(queuedEtaMs(0, cold)).toBe(470);
    expect(queuedEtaMs(0, { ...cold, starting: { stage: 'loading', elapsedMs: 100 } })).toBe(370);
    expect(queuedEtaMs(0, { ...cold, starting: { stage: 'warming', elapsedMs: 10 } })).toBe(60);
    // A start that overruns its average waits no less than nothing.
    expect(queuedEtaMs(0, { ...cold, starting: { stage: 'warming', elapsedMs: 999 } })).toBe(20);
  });

  it('is unknown until every part it needs is measured, never a made-up constant', () => {
    expect(queuedEtaMs(0, { estimates: {}, instances: 1, ready: 1 })).toBeUndefined();
    expect(queuedEtaMs(3, { estimates: { runMs: 20 }, instances: 1, ready: 1 })).toBe(80);
    expect(queuedEtaMs(0, { estimates: { runMs: 20 }, instances: 0, ready: 0 })).toBeUndefined();
    expect(
      queuedEtaMs(0, { estimates: { runMs: 20, loadMs: 400 }, instances: 0, ready: 0 }),
    ).toBeUndefined();
  });

  it('never shrinks as a job is further back, and never falls below one run', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 1000 }),
        fc.nat({ max: 1000 }),
        fc.nat({ max: 8 }),
        fc.boolean(),
        (position, extra, instances, ready) => {
          const capacity = { estimates: MEASURED, instances, ready: ready ? instances : 0 };
          const here = queuedEtaMs(position, capacity);
          const further = queuedEtaMs(position + extra, capacity);
          expect(here).toBeGreaterThanOrEqual(MEASURED.runMs);
          expect(further).toBeGreaterThanOrEqual(here ?? Infinity);
        },
      ),
    );
  });
});
