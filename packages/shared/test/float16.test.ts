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
    fc.assert(
      fc.property(fc.double({ min: -60000, max: 60000, noNaN: true }), (value) => {
        const rounded = fromFloat16Bits(toFloat16Bits(value));
        const next = fromFloat16Bits(
          toFloat16Bits(value) + (Math.abs(rounded) < Math.abs(value) ? 1 : -1),
        );
        expect(Math.abs(rounded - value)).toBeLessThanOrEqual(Math.abs(next - value) + 1e-12);
      }),
    );
  });
});
