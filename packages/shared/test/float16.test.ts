import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromFloat16Bits, toFloat16Bits } from '../src/index.js';

describe('float16 conversion', () => {
  it('round-trips every half value exactly (bits → number → bits)', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = fromFloat16Bits(bits);
      if (Number.isNaN(value)) {
        expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(value)))).toBe(true);
        continue;
      }
      expect(toFloat16Bits(value)).toBe(bits);
    }
  });

  it('knows landmark values', () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(fromFloat16Bits(0x3555)).toBeCloseTo(0.333, 3);
  });

  it('rounds any number to a nearest half value', () => {
    const halves = [...new Set(Array.from({ length: 0x10000 }, (_, bits) => fromFloat16Bits(bits)))]
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    const nearestDistance = (value: number): number => {
      let lo = 0;
      let hi = halves.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (halves[mid]! < value) lo = mid + 1;
        else hi = mid;
      }
      const above = Math.abs(halves[lo]! - value);
      const below = lo > 0 ? Math.abs(halves[lo - 1]! - value) : Infinity;
      return Math.min(above, below);
    };
    fc.assert(
      fc.property(fc.double({ min: -65504, max: 65504, noNaN: true }), (value) => {
        const rounded = fromFloat16Bits(toFloat16Bits(value));
        expect(Math.abs(rounded - value)).toBe(nearestDistance(value));
      }),
      { numRuns: 2000 },
    );
  });
});
