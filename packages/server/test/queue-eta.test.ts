import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MIN_RETRY_AFTER_MS,
  UNMEASURED_RETRY_AFTER_MS,
  busyRetryAfterMs,
  queuedEtaMs,
  type QueueCapacity,
} from '../src/queue-eta.js';

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

describe('busyRetryAfterMs', () => {
  it('hints at the time a quarter of a full queue takes, shared among the instances', () => {
    const warm: QueueCapacity = { estimates: MEASURED, instances: 2, ready: 2 };
    // 40 jobs of 20 ms on 2 instances drain in 400 ms; a quarter of that.
    expect(busyRetryAfterMs(40, warm)).toBe(100);
    expect(busyRetryAfterMs(2, warm)).toBe(MIN_RETRY_AFTER_MS);
  });

  it('adds what remains of the cold start while no instance is ready: nothing leaves the queue before', () => {
    const cold = { estimates: MEASURED, instances: 1, ready: 0 } as const;
    // 2 jobs × 20 ms / 4 = 10 ms, behind a whole 400 + 50 ms cold start, or the rest of one.
    expect(busyRetryAfterMs(2, cold)).toBe(460);
    expect(busyRetryAfterMs(2, { ...cold, starting: { stage: 'loading', elapsedMs: 300 } })).toBe(
      160,
    );
    expect(busyRetryAfterMs(2, { ...cold, starting: { stage: 'warming', elapsedMs: 0 } })).toBe(60);
  });

  it('takes the warm-up run for a run before any job ran, and a second for a load never measured', () => {
    const warmedOnly = { estimates: { loadMs: 400, warmupMs: 80 }, instances: 1, ready: 1 };
    expect(busyRetryAfterMs(10, warmedOnly)).toBe(200);
    const never = {
      estimates: {},
      instances: 1,
      ready: 0,
      starting: { stage: 'loading', elapsedMs: 5 },
    } as const;
    expect(busyRetryAfterMs(2, never)).toBe(UNMEASURED_RETRY_AFTER_MS);
  });

  it('is never below the floor, and never shorter for a longer queue', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 1000 }),
        fc.nat({ max: 1000 }),
        fc.nat({ max: 8 }),
        fc.boolean(),
        (queued, extra, instances, ready) => {
          const capacity = { estimates: MEASURED, instances, ready: ready ? instances : 0 };
          const here = busyRetryAfterMs(queued, capacity);
          expect(here).toBeGreaterThanOrEqual(MIN_RETRY_AFTER_MS);
          if (!ready) expect(here).toBeGreaterThanOrEqual(MEASURED.loadMs + MEASURED.warmupMs);
          expect(busyRetryAfterMs(queued + extra, capacity)).toBeGreaterThanOrEqual(here);
        },
      ),
    );
  });
});
