// A small seeded pseudo-random generator (mulberry32) so synthetic model weights and test inputs
// are the same on every run and every machine. Not for anything that needs real randomness.

/** A deterministic stream of pseudo-random numbers. */
export interface Prng {
  /** The next 32 random bits as an unsigned integer in `[0, 2^32)`. */
  nextUint32(): number;
  /** The next number in `[0, 1)`, with 32 bits of randomness. */
  nextFloat(): number;
  /** The next number in `[min, max)`. */
  uniform(min: number, max: number): number;
  /** The next integer in `[min, max]` (both inclusive). */
  integer(min: number, max: number): number;
}

/**
 * Creates a mulberry32 generator: one 32-bit state word, a few integer multiplies per draw, so
 * filling tens of millions of weights stays fast. The same `seed` always gives the same stream.
 */
export function createPrng(seed: number): Prng {
  let state = seed >>> 0;
  const nextUint32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const nextFloat = (): number => nextUint32() / 0x1_0000_0000;
  return {
    nextUint32,
    nextFloat,
    uniform: (min, max) => min + (max - min) * nextFloat(),
    integer: (min, max) => min + Math.floor((max - min + 1) * nextFloat()),
  };
}

/** Fills `target` with numbers drawn uniformly from `[min, max)` and returns it. */
export function fillUniform(
  target: Float32Array,
  prng: Prng,
  min: number,
  max: number,
): Float32Array {
  for (let i = 0; i < target.length; i++) target[i] = prng.uniform(min, max);
  return target;
}
