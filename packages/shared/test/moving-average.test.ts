import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MovingAverage } from '../src/index.js';

describe('MovingAverage', () => {
  it('is undefined until the first sample, which it takes as is', () => {
    const average = new MovingAverage();
    expect(average.value).toBeUndefined();
    expect(average.samples).toBe(0);
    average.add(40);
    expect(average.value).toBe(40);
    expect(average.samples).toBe(1);
  });

  it('averages the first 1/alpha samples plainly, then weighs the newest by alpha', () => {
    const average = new MovingAverage(0.25);
    for (const sample of [10, 20, 30, 40]) average.add(sample);
    expect(average.value).toBeCloseTo(25, 10); // plain mean of four
    average.add(125);
    expect(average.value).toBeCloseTo(25 + 0.25 * (125 - 25), 10);
    expect(average.samples).toBe(5);
  });

  it('ignores samples that are not finite non-negative durations', () => {
    const average = new MovingAverage();
    for (const bad of [Number.NaN, -1, Infinity, -Infinity]) average.add(bad);
    expect(average.value).toBeUndefined();
    expect(average.samples).toBe(0);
    average.add(3);
    average.add(Number.NaN);
    expect(average.value).toBe(3);
    expect(average.samples).toBe(1);
  });

  it('stays between the smallest and largest sample, and converges to a constant', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 100 }),
        (alpha, samples) => {
          const average = new MovingAverage(alpha);
          for (const sample of samples) average.add(sample);
          const value = average.value!;
          const tolerance = 1e-9 * Math.max(1, ...samples);
          expect(value).toBeGreaterThanOrEqual(Math.min(...samples) - tolerance);
          expect(value).toBeLessThanOrEqual(Math.max(...samples) + tolerance);
          for (let i = 0; i < 2000; i++) average.add(7);
          expect(average.value).toBeCloseTo(7, 3);
        },
      ),
    );
  });
});
