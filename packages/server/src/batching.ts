// Dynamic batching along the leading (batch) dimension: jobs whose inputs agree on everything but
// that dimension are concatenated into one run, and each output is split back per job as views.

import { TandemError, elementCount, type Tensor, type TensorMap } from '@tandem/shared';
import type { ModelSignature } from './input-check.js';

/**
 * True when every input and output has a symbolic leading dimension, so rows of different jobs can
 * share one run. Names may differ (exporters such as paddle2onnx name each dynamic dim apart);
 * batching is opt-in per model (maxBatch), and outputs are checked row by row when split.
 */
export function hasBatchDimension(signature: ModelSignature): boolean {
  const specs = [...signature.inputs, ...signature.outputs];
  return specs.length > 0 && specs.every((spec) => typeof spec.dims?.[0] === 'string');
}

/** Jobs may share a run only when this key is equal: same inputs, dtypes, trailing dims, outputs. */
export function batchKey(inputs: TensorMap, outputs: readonly string[] | undefined): string {
  const parts = Object.keys(inputs)
    .sort()
    .map((name) => {
      const t = inputs[name] as Tensor;
      return `${name}:${t.dtype}:${t.dims.slice(1).join('x')}:${t.dims.length}`;
    });
  return `${parts.join('|')}>${outputs === undefined ? '*' : [...outputs].sort().join(',')}`;
}

/** Rows (leading dimension) of a job's inputs. */
export function batchRows(inputs: TensorMap): number {
  const first = Object.values(inputs)[0];
  return first?.dims[0] ?? 0;
}

/**
 * Whether every input of a job has the same number of rows, so the job can join a batch. Inputs
 * whose leading dims have different names may differ in size in a valid job; concatenated with
 * others, its rows would misalign every output of the batch (and fail every job in it).
 */
export function rowsAgree(inputs: TensorMap): boolean {
  let rows: number | undefined;
  for (const name in inputs) {
    const leading = (inputs[name] as Tensor).dims[0];
    if (leading === undefined) return false;
    if (rows === undefined) rows = leading;
    else if (leading !== rows) return false;
  }
  return true;
}

/** Concatenates the inputs of several jobs along axis 0. Inputs must share a batch key. */
export function concatInputs(batch: readonly TensorMap[]): TensorMap {
  const first = batch[0];
  if (first === undefined) return {};
  if (batch.length === 1) return first;
  const out: TensorMap = {};
  for (const name of Object.keys(first)) {
    const parts = batch.map((inputs) => inputs[name] as Tensor);
    const head = parts[0] as Tensor;
    const rows = parts.reduce((sum, t) => sum + (t.dims[0] ?? 0), 0);
    const dims = [rows, ...head.dims.slice(1)];
    if (head.dtype === 'string') {
      out[name] = { dtype: 'string', dims, data: parts.flatMap((t) => t.data as string[]) };
      continue;
    }
    const Ctor = (head.data as Float32Array).constructor as new (n: number) => Float32Array;
    const data = new Ctor(elementCount(dims));
    let offset = 0;
    for (const part of parts) {
      data.set(part.data as Float32Array, offset);
      offset += part.data.length;
    }
    out[name] = { dtype: head.dtype, dims, data } as Tensor;
  }
  return out;
}

/** Splits batched outputs back into per-job outputs (views, no copies). */
export function splitOutputs(outputs: TensorMap, rows: readonly number[]): TensorMap[] {
  if (rows.length === 1) return [outputs];
  const total = rows.reduce((a, b) => a + b, 0);
  const result: TensorMap[] = rows.map(() => ({}));
  for (const [name, tensor] of Object.entries(outputs)) {
    if (tensor.dims[0] !== total) {
      throw new TandemError(
        'E_RUNTIME',
        `batched output "${name}" has ${tensor.dims[0]} rows; expected ${total}`,
      );
    }
    const rowSize = elementCount(tensor.dims.slice(1));
    let start = 0;
    rows.forEach((count, index) => {
      const dims = [count, ...tensor.dims.slice(1)];
      const end = start + count * rowSize;
      const data =
        tensor.dtype === 'string'
          ? tensor.data.slice(start, end)
          : (tensor.data as Float32Array).subarray(start, end);
      (result[index] as TensorMap)[name] = { dtype: tensor.dtype, dims, data } as Tensor;
      start = end;
    });
  }
  return result;
}
