// Small tensors of every kind the server's thread-boundary code handles differently (a float and
// an 8-bit type, int64 for 8-byte alignment, strings that are not in a numeric buffer), for the
// property tests of tensor-pack and result-frames.

import fc from 'fast-check';
import type { Tensor } from '@tandem/shared';

/** A 1-D tensor of up to 9 elements (5 for int64, 3 strings of up to `maxStringChars`). */
export function smallTensorArb(maxStringChars = 10): fc.Arbitrary<Tensor> {
  return fc.oneof(
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
      .array(fc.string({ maxLength: maxStringChars }), { maxLength: 3 })
      .map((values): Tensor => ({ dtype: 'string', dims: [values.length], data: values })),
  );
}
