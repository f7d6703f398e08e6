import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TensorMap } from '@tandem/shared';
import { packTensorMaps, unpackTensorMaps } from '../src/tensor-pack.js';
import { smallTensorArb } from './tensor-arbitraries.js';

const tensorArb = smallTensorArb();
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
