import { describe, expect, it } from 'vitest';
import { TENSOR_DTYPES } from '@tandem/shared';
import { warmupInputs } from '../src/warmup-inputs.js';

describe('warmupInputs', () => {
  it('builds zeros shaped from the signature, symbolic dims as 1 and scalars as []', () => {
    const inputs = warmupInputs({
      inputs: [
        { name: 'x', dtype: 'float32', dims: ['batch', 3, 'h', 4] },
        { name: 'sr', dtype: 'int64', dims: [] },
      ],
      outputs: [],
    });
    expect(inputs).toEqual({
      x: { dtype: 'float32', dims: [1, 3, 1, 4], data: new Float32Array(12) },
      sr: { dtype: 'int64', dims: [], data: new BigInt64Array(1) },
    });
  });

  it('takes the shapes model.json gives (warmupDims) over the defaults', () => {
    const inputs = warmupInputs(
      { inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 3, 'h', 'w'] }], outputs: [] },
      { x: [2, 3, 48, 320] },
    );
    expect(inputs.x!.dims).toEqual([2, 3, 48, 320]);
    expect(inputs.x!.data).toHaveLength(2 * 3 * 48 * 320);
  });

  it('has zeros of the right container for every dtype', () => {
    const inputs = warmupInputs({
      inputs: TENSOR_DTYPES.map((dtype) => ({ name: dtype, dtype, dims: [2] })),
      outputs: [],
    });
    for (const dtype of TENSOR_DTYPES) {
      const tensor = inputs[dtype]!;
      expect(tensor.dtype).toBe(dtype);
      expect(tensor.data).toHaveLength(2);
      if (dtype === 'string') expect(tensor.data).toEqual(['', '']);
      else expect(Array.from(tensor.data as ArrayLike<number | bigint>, Number)).toEqual([0, 0]);
    }
    expect(inputs.int64!.data).toBeInstanceOf(BigInt64Array);
    expect(inputs.uint64!.data).toBeInstanceOf(BigUint64Array);
    expect(inputs.float16!.data).toBeInstanceOf(Uint16Array);
    expect(inputs.bool!.data).toBeInstanceOf(Uint8Array);
  });
});
