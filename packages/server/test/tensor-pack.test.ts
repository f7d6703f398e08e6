import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Tensor, TensorMap } from '@tandem/shared';
import { packTensorMaps, unpackTensorMaps } from '../src/tensor-pack.js';

const tensorArb: fc.Arbitrary<Tensor> = fc.oneof(
  fc.array(fc.float({ noNaN: true }), { maxLength: 9 }).map((values): Tensor => ({
    dtype: 'float32',
    dims: [values.length],
    data: Float32Array.from(values),
  })),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 9 }).map((values): Tensor => ({
    dtype: 'uint8',
    dims: [values.length],
    data: Uint8Array.from(values),
  })),
  fc
    .array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 5 })
    .map((values): Tensor => ({
      dtype: 'int64',
      dims: [values.length],
      data: BigInt64Array.from(values),
    })),
  fc
    .array(fc.string(), { maxLength: 3 })
    .map((values): Tensor => ({ dtype: 'string', dims: [values.length], data: values })),
);
const mapArb: fc.Arbitrary<TensorMap> = fc.dictionary(fc.constantFrom('a', 'b', 'c'), tensorArb);

describe('packTensorMaps and unpackTensorMaps', () => {
  it('keep every value across a thread boundary, view one aligned buffer, and leave the inputs alone', () => {
    fc.assert(
      fc.property(fc.array(mapArb, { maxLength: 6 }), (maps) => {
        const before = maps.map((map) =>
          Object.values(map).map((t) => Array.from(t.data as ArrayLike<unknown>)),
        );
        const packed = packTensorMaps(maps);
        // What postMessage does to it on the way to the worker.
        const crossed = structuredClone(packed, { transfer: [packed.buffer] });
        const unpacked = unpackTensorMaps(crossed);
        expect(unpacked).toHaveLength(maps.length);
        unpacked.forEach((map, index) => {
          const source = maps[index]!;
          expect(Object.keys(map)).toEqual(Object.keys(source));
          for (const [name, tensor] of Object.entries(map)) {
            const original = source[name]!;
            expect(tensor.dtype).toBe(original.dtype);
            expect(tensor.dims).toEqual(original.dims);
            expect(Array.from(tensor.data as ArrayLike<unknown>)).toEqual(
              Array.from(original.data as ArrayLike<unknown>),
            );
            if (tensor.dtype !== 'string') {
              expect(tensor.data.buffer).toBe(crossed.buffer);
              expect(tensor.data.byteOffset % 8).toBe(0);
            }
          }
        });
        expect(
          maps.map((map) =>
            Object.values(map).map((t) => Array.from(t.data as ArrayLike<unknown>)),
          ),
        ).toEqual(before);
      }),
    );
  });
});
