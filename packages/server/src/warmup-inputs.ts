// Inputs for the warm-up run that follows a load: zeros shaped from the model's signature, with
// symbolic dims from model.json's `warmupDims` or 1. The run pays first-run costs (allocations,
// kernel selection) so the first real job does not.

import {
  TandemError,
  elementCount,
  toFloat16Bits,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';
import type { ModelSignature } from './input-check.js';

/**
 * Builds warm-up inputs; `dims` overrides the shape of named inputs and `values` the value every
 * element of a named input takes (a sample rate, say, where zero is not a valid input).
 */
export function warmupInputs(
  signature: ModelSignature,
  dims: Readonly<Record<string, readonly number[]>> = {},
  values: Readonly<Record<string, number>> = {},
): TensorMap {
  const inputs: TensorMap = {};
  for (const spec of signature.inputs) {
    const shape =
      dims[spec.name] ?? (spec.dims ?? []).map((dim) => (typeof dim === 'number' ? dim : 1));
    const tensor = zeros(spec.dtype, shape);
    const value = values[spec.name];
    if (value !== undefined) fill(tensor, value);
    inputs[spec.name] = tensor;
  }
  return inputs;
}

function fill(tensor: Tensor, value: number): void {
  switch (tensor.dtype) {
    case 'string':
      tensor.data.fill(String(value));
      return;
    case 'int64':
      tensor.data.fill(BigInt(Math.trunc(value)));
      return;
    case 'uint64':
      tensor.data.fill(BigInt(Math.max(0, Math.trunc(value))));
      return;
    case 'float16':
      tensor.data.fill(toFloat16Bits(value));
      return;
    default:
      tensor.data.fill(value);
  }
}

function zeros(dtype: Tensor['dtype'], dims: readonly number[]): Tensor {
  const n = elementCount(dims);
  switch (dtype) {
    case 'float32':
      return { dtype, dims, data: new Float32Array(n) };
    case 'float16':
      return { dtype, dims, data: new Uint16Array(n) };
    case 'float64':
      return { dtype, dims, data: new Float64Array(n) };
    case 'int8':
      return { dtype, dims, data: new Int8Array(n) };
    case 'int16':
      return { dtype, dims, data: new Int16Array(n) };
    case 'int32':
      return { dtype, dims, data: new Int32Array(n) };
    case 'int64':
      return { dtype, dims, data: new BigInt64Array(n) };
    case 'uint8':
      return { dtype, dims, data: new Uint8Array(n) };
    case 'uint16':
      return { dtype, dims, data: new Uint16Array(n) };
    case 'uint32':
      return { dtype, dims, data: new Uint32Array(n) };
    case 'uint64':
      return { dtype, dims, data: new BigUint64Array(n) };
    case 'bool':
      return { dtype, dims, data: new Uint8Array(n) };
    case 'string':
      return { dtype, dims, data: new Array<string>(n).fill('') };
    default:
      throw new TandemError('E_INTERNAL', `no zeros for dtype ${String(dtype)}`);
  }
}
