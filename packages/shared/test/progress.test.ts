import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  LOCAL_STAGES,
  MAX_UNFINISHED_FRACTION,
  REMOTE_STAGES,
  createProgressTracker,
  type ProgressEvent,
  type StageUpdate,
} from '../src/index.js';

/** A fake clock the test advances by hand: pure logic, no timers. */
function fakeClock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const updateArb = (stages: readonly StageUpdate['stage'][]) =>
  fc.record(
    {
      stage: fc.constantFrom(...stages),
      loaded: fc.integer({ min: 0, max: 1000 }),
      total: fc.integer({ min: 0, max: 1000 }),
      queuePosition: fc.integer({ min: 0, max: 50 }),
      etaMs: fc.integer({ min: 0, max: 60_000 }),
      stageExpectedMs: fc.integer({ min: 0, max: 10_000 }),
    },
    { requiredKeys: ['stage'] },
  );

const stepArb = (stages: readonly StageUpdate['stage'][]) =>
  fc.oneof(
    updateArb(stages).map((update) => ({ kind: 'update' as const, update })),
    fc.integer({ min: 0, max: 5_000 }).map((ms) => ({ kind: 'tick' as const, ms })),
  );

describe('createProgressTracker', () => {
  for (const [where, stages] of [
    ['local', LOCAL_STAGES],
    ['remote', REMOTE_STAGES],
  ] as const) {
    it(`never decreases and ends at 1 only at done (${where}, any update order)`, () => {
      fc.assert(
        fc.property(
          fc.array(stepArb(stages), { maxLength: 40 }),
          fc.constantFrom('done' as const, 'error' as const, 'cancelled' as const),
          (steps, end) => {
            const clock = fakeClock();
            const tracker = createProgressTracker({
              jobId: 'j',
              model: 'm',
              where,
              now: clock.now,
            });
            const events: ProgressEvent[] = [];
            for (const step of steps) {
              if (step.kind === 'update') events.push(tracker.update(step.update));
              else {
                clock.advance(step.ms);
                events.push(tracker.tick());
              }
            }
            const last = tracker.finish(end);
            events.push(last);
            for (let i = 1; i < events.length; i++) {
              expect(events[i]!.fraction).toBeGreaterThanOrEqual(events[i - 1]!.fraction);
            }
            for (const event of events.slice(0, -1)) {
              expect(event.fraction).toBeLessThanOrEqual(MAX_UNFINISHED_FRACTION);
              expect(event.fraction).toBeGreaterThanOrEqual(0);
            }
            expect(last.stage).toBe(end);
            if (end === 'done') expect(last.fraction).toBe(1);
            else expect(last.fraction).toBeLessThan(1);
            // Updates after the end change nothing.
            expect(tracker.update({ stage: stages[0] })).toBe(last);
          },
        ),
      );
    });
  }

  it('follows bytes exactly within a download', () => {
    const tracker = createProgressTracker({
      jobId: 'j',
      model: 'm',
      where: 'local',
      plan: [
        { stage: 'download', weight: 50 },
        { stage: 'compile', weight: 50 },
      ],
    });
    expect(tracker.update({ stage: 'download', loaded: 0, total: 100 }).fraction).toBe(0);
    expect(tracker.update({ stage: 'download', loaded: 50, total: 100 }).fraction).toBeCloseTo(
      0.25,
    );
    const event = tracker.update({ stage: 'download', loaded: 100, total: 100 });
    expect(event.fraction).toBeCloseTo(0.5);
    expect(event.loaded).toBe(100);
    expect(event.total).toBe(100);
  });

  it('moves through a stage of known length by time, and stops short of its end', () => {
    const clock = fakeClock();
    const tracker = createProgressTracker({
      jobId: 'j',
      model: 'm',
      where: 'remote',
      now: clock.now,
      plan: [
        { stage: 'loading', weight: 1 },
        { stage: 'running', weight: 1 },
      ],
    });
    tracker.update({ stage: 'loading', stageExpectedMs: 1000 });
    clock.advance(500);
    expect(tracker.tick().fraction).toBeCloseTo(0.25);
    clock.advance(10_000);
    expect(tracker.tick().fraction).toBeLessThan(0.5);
  });

  it('eases out on a stage of unknown length: moves early, slows, never completes the stage', () => {
    const clock = fakeClock();
    const tracker = createProgressTracker({
      jobId: 'j',
      model: 'm',
      where: 'remote',
      now: clock.now,
      plan: [{ stage: 'loading', weight: 1 }],
    });
    tracker.update({ stage: 'loading' });
    const fractions = [1000, 1000, 1000, 1000, 60_000].map((ms) => {
      clock.advance(ms);
      return tracker.tick().fraction;
    });
    const steps = fractions.slice(1, 4).map((f, i) => f - fractions[i]!);
    expect(steps[0]).toBeGreaterThan(steps[1]!);
    expect(steps[1]).toBeGreaterThan(steps[2]!);
    expect(fractions.at(-1)).toBeLessThan(MAX_UNFINISHED_FRACTION);
  });

  it('reports queue position and counts the ETA down between updates', () => {
    const clock = fakeClock();
    const tracker = createProgressTracker({
      jobId: 'j',
      model: 'm',
      where: 'remote',
      now: clock.now,
    });
    const event = tracker.update({ stage: 'queued', queuePosition: 3, etaMs: 4000 });
    expect(event.queuePosition).toBe(3);
    expect(event.etaMs).toBe(4000);
    clock.advance(1500);
    expect(tracker.tick().etaMs).toBe(2500);
    expect(tracker.tick().elapsedMs).toBe(1500);
  });

  it('skips a planned stage (cached model: no download) without going backwards', () => {
    const tracker = createProgressTracker({ jobId: 'j', model: 'm', where: 'local' });
    const a = tracker.update({ stage: 'resolve' });
    const b = tracker.update({ stage: 'compile' });
    const c = tracker.update({ stage: 'download', loaded: 0, total: 10 });
    expect(b.fraction).toBeGreaterThan(a.fraction);
    expect(c.fraction).toBe(b.fraction);
    expect(c.stage).toBe('download');
  });
});
