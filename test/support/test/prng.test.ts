import { describe, expect, it } from 'vitest';
import { createPrng, fillUniform } from '../src/prng.js';

describe('createPrng', () => {
  it('gives the same stream for the same seed and another for another seed', () => {
    const draw = (seed: number) => {
      const prng = createPrng(seed);
      return Array.from({ length: 8 }, () => prng.nextUint32());
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(0)).not.toEqual(draw(2 ** 32 - 1));
  });

  it('stays in range and spreads over it', () => {
    const prng = createPrng(1);
    const floats = Array.from({ length: 10_000 }, () => prng.nextFloat());
    expect(floats.every((f) => f >= 0 && f < 1)).toBe(true);
    const mean = floats.reduce((a, b) => a + b, 0) / floats.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    const words = Array.from({ length: 1000 }, () => prng.nextUint32());
    expect(words.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)).toBe(true);
    expect(words.some((w) => w >= 2 ** 31)).toBe(true);
  });

  it('draws integers with both bounds included', () => {
    const prng = createPrng(9);
    const seen = new Set(Array.from({ length: 2000 }, () => prng.integer(-4, 4)));
    expect([...seen].sort((a, b) => a - b)).toEqual([-4, -3, -2, -1, 0, 1, 2, 3, 4]);
  });
});

describe('fillUniform', () => {
  it('fills every element within [min, max)', () => {
    const values = fillUniform(new Float32Array(5000), createPrng(3), -0.25, 0.5);
    expect(values.every((v) => v >= -0.25 && v < 0.5)).toBe(true);
    expect(Math.min(...values)).toBeLessThan(-0.2);
    expect(Math.max(...values)).toBeGreaterThan(0.45);
  });
});
