import { describe, expect, it } from 'vitest';
import {
  TENSOR_DTYPES,
  bytesPerElement,
  createTensor,
  elementCount,
  isTensorDtype,
} from '../src/index.js';
import { errorCode as codeOf } from '@tandem/test-support';

describe('tensor helpers', () => {
  it('knows every ONNX dtype and nothing else', () => {
    expect(TENSOR_DTYPES).toHaveLength(13);
    for (const dtype of TENSOR_DTYPES) expect(isTensorDtype(dtype)).toBe(true);
    for (const other of ['complex64', 'bfloat16', 'Float32', '', 1]) {
      expect(isTensorDtype(other)).toBe(false);
    }
  });

  it('gives element sizes and counts', () => {
    expect(bytesPerElement('float16')).toBe(2);
    expect(bytesPerElement('int64')).toBe(8);
    expect(bytesPerElement('bool')).toBe(1);
    expect(elementCount([])).toBe(1);
    expect(elementCount([2, 0, 5])).toBe(0);
    expect(elementCount([1, 3, 224, 224])).toBe(150_528);
  });

  it('creates tensors whose data matches dtype and dims', () => {
    const tensor = createTensor('int64', new BigInt64Array([1n, 2n]), [2]);
    expect(tensor.dtype).toBe('int64');
    expect(createTensor('string', ['a'], [1, 1]).data).toEqual(['a']);
  });

  it('rejects bool data other than 0 and 1 with E_INVALID_ARGUMENT', () => {
    expect(createTensor('bool', Uint8Array.from([0, 1]), [2]).data).toEqual(
      Uint8Array.from([0, 1]),
    );
    expect(codeOf(() => createTensor('bool', Uint8Array.from([1, 2]), [2]))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });

  it('rejects mismatched data with E_INVALID_ARGUMENT', () => {
    expect(codeOf(() => createTensor('float32', new Float32Array(3), [2, 2]))).toBe(
      'E_INVALID_ARGUMENT',
    );
    expect(
      codeOf(() => createTensor('float32', new Float64Array(4) as unknown as Float32Array, [4])),
    ).toBe('E_INVALID_ARGUMENT');
    expect(codeOf(() => createTensor('string', [1] as unknown as string[], [1]))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});
