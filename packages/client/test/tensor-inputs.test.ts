import { describe, expect, it } from 'vitest';
import type { TensorMap } from '@tandem/shared';
import { errorCode } from '@tandem/test-support';
import { checkInputs } from '../src/tensor-inputs.js';

const good: TensorMap = {
  x: { dtype: 'float32', dims: [2, 2], data: new Float32Array(4) },
  n: { dtype: 'int64', dims: [], data: new BigInt64Array(1) },
  s: { dtype: 'string', dims: [1], data: ['a'] },
  empty: { dtype: 'float32', dims: [0, 3], data: new Float32Array(0) },
};

describe('checkInputs', () => {
  it('accepts tensors whose data fits their dtype and dims, empty ones included', () => {
    expect(errorCode(() => checkInputs(good))).toBe('ok');
  });

  it('refuses a mismatch of data and dims or dtype, a bad bool, and non-objects, naming the input', () => {
    const bad: unknown[] = [
      { x: { dtype: 'float32', dims: [3], data: new Float32Array(2) } },
      { x: { dtype: 'float32', dims: [2], data: new Int32Array(2) } },
      { x: { dtype: 'bool', dims: [2], data: Uint8Array.from([0, 2]) } },
      { x: { dtype: 'string', dims: [1], data: [1] } },
      null,
      'x',
    ];
    for (const inputs of bad) {
      expect(
        errorCode(() => checkInputs(inputs as TensorMap)),
        JSON.stringify(inputs),
      ).toBe('E_INVALID_ARGUMENT');
    }
    expect(() =>
      checkInputs({ ...good, image: { dtype: 'float32', dims: [3], data: new Float32Array(2) } }),
    ).toThrow(/"image"/);
  });

  it('refuses an input whose buffer was transferred away (detached) with a reason that says so', () => {
    const data = new Float32Array(4);
    structuredClone(data.buffer, { transfer: [data.buffer] });
    expect(data.buffer.byteLength).toBe(0);
    const inputs: TensorMap = { x: { dtype: 'float32', dims: [2, 2], data } };
    expect(errorCode(() => checkInputs(inputs))).toBe('E_INVALID_ARGUMENT');
    expect(() => checkInputs(inputs)).toThrow(/detached/);
  });
});
