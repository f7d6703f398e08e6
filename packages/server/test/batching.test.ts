import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  TandemError,
  elementCount,
  type Tensor,
  type TensorDtype,
  type TensorMap,
} from '@tandem/shared';
import {
  batchKey,
  batchRows,
  concatInputs,
  hasBatchDimension,
  rowsAgree,
  splitOutputs,
} from '../src/batching.js';

const DTYPES = [
  'float32',
  'float16',
  'float64',
  'int8',
  'int32',
  'int64',
  'uint8',
  'uint64',
  'bool',
  'string',
] as const satisfies readonly TensorDtype[];

/** A tensor of `dtype` and `dims` whose values come from `seed` (distinct per element). */
function tensorOf(dtype: (typeof DTYPES)[number], dims: number[], seed: number): Tensor {
  const n = elementCount(dims);
  const values = Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) % 120);
  switch (dtype) {
    case 'float32':
      return { dtype, dims, data: Float32Array.from(values, (v) => v / 4) };
    case 'float16':
      return { dtype, dims, data: Uint16Array.from(values) };
    case 'float64':
      return { dtype, dims, data: Float64Array.from(values, (v) => v / 3) };
    case 'int8':
      return { dtype, dims, data: Int8Array.from(values, (v) => v - 60) };
    case 'int32':
      return { dtype, dims, data: Int32Array.from(values, (v) => v * 1000) };
    case 'int64':
      return { dtype, dims, data: BigInt64Array.from(values, (v) => BigInt(v) - 2n ** 40n) };
    case 'uint8':
      return { dtype, dims, data: Uint8Array.from(values) };
    case 'uint64':
      return { dtype, dims, data: BigUint64Array.from(values, (v) => BigInt(v) + 2n ** 60n) };
    case 'bool':
      return { dtype, dims, data: Uint8Array.from(values, (v) => v % 2) };
    case 'string':
      return { dtype, dims, data: values.map((v) => `s${v}`) };
  }
}

/** Jobs whose inputs share everything but the leading dimension, as batching requires. */
const batchArb = fc
  .record({
    specs: fc.array(
      fc.record({
        dtype: fc.constantFrom(...DTYPES),
        trailing: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    rows: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 6 }),
  })
  .map(({ specs, rows }) =>
    rows.map((count, job) => {
      const inputs: TensorMap = {};
      specs.forEach((spec, i) => {
        inputs[`in${i}`] = tensorOf(spec.dtype, [count, ...spec.trailing], job * 10 + i);
      });
      return inputs;
    }),
  );

describe('concatInputs / splitOutputs', () => {
  it('round-trips: splitting the concatenation by rows gives every job its own tensors back', () => {
    fc.assert(
      fc.property(batchArb, (jobs) => {
        const rows = jobs.map(batchRows);
        const batched = concatInputs(jobs);
        for (const [name, tensor] of Object.entries(batched)) {
          expect(tensor.dims[0], name).toBe(rows.reduce((a, b) => a + b, 0));
          expect(tensor.data.length).toBe(elementCount(tensor.dims));
        }
        expect(splitOutputs(batched, rows)).toEqual(jobs);
      }),
      { numRuns: 300 },
    );
  });

  it('keys jobs that can share a run alike, whatever their row counts', () => {
    fc.assert(
      fc.property(batchArb, (jobs) => {
        const keys = new Set(jobs.map((inputs) => batchKey(inputs, undefined)));
        expect(keys.size).toBe(1);
      }),
    );
  });

  it('splits into views of the batched output, not copies', () => {
    const output = tensorOf('float32', [5, 2], 1);
    const [first, second] = splitOutputs({ y: output }, [2, 3]);
    expect(first!.y!.dims).toEqual([2, 2]);
    expect(second!.y!.dims).toEqual([3, 2]);
    expect((second!.y!.data as Float32Array).buffer).toBe((output.data as Float32Array).buffer);
  });

  it('passes a single job through untouched', () => {
    const inputs = { x: tensorOf('int64', [3, 2], 4) };
    expect(concatInputs([inputs])).toBe(inputs);
    expect(splitOutputs(inputs, [3])[0]).toBe(inputs);
    expect(concatInputs([])).toEqual({});
  });

  it('fails with E_RUNTIME when an output does not have the batch rows', () => {
    try {
      splitOutputs({ y: tensorOf('float32', [4, 2], 1) }, [2, 3]);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TandemError);
      expect((error as TandemError).code).toBe('E_RUNTIME');
    }
  });
});

describe('batchKey', () => {
  const x = (dims: number[], dtype: 'float32' | 'int32' = 'float32') => tensorOf(dtype, dims, 0);

  it('differs when dtypes, trailing dims, rank, input names or requested outputs differ', () => {
    const base = batchKey({ x: x([2, 3]) }, ['y']);
    expect(batchKey({ x: x([5, 3]) }, ['y'])).toBe(base);
    expect(batchKey({ x: x([2, 3], 'int32') }, ['y'])).not.toBe(base);
    expect(batchKey({ x: x([2, 4]) }, ['y'])).not.toBe(base);
    expect(batchKey({ x: x([2, 3, 1]) }, ['y'])).not.toBe(base);
    expect(batchKey({ z: x([2, 3]) }, ['y'])).not.toBe(base);
    expect(batchKey({ x: x([2, 3]) }, undefined)).not.toBe(base);
    expect(batchKey({ x: x([2, 3]) }, ['y', 'z'])).not.toBe(base);
  });

  it('ignores the order of inputs and of requested outputs', () => {
    expect(batchKey({ a: x([1, 2]), b: x([1]) }, ['p', 'q'])).toBe(
      batchKey({ b: x([3]), a: x([3, 2]) }, ['q', 'p']),
    );
  });
});

describe('rowsAgree', () => {
  const rows = (n: number): Tensor => ({
    dtype: 'float32',
    dims: [n, 2],
    data: new Float32Array(n * 2),
  });

  it('holds when every input has the same leading dim, and not when one differs or has none', () => {
    expect(rowsAgree({ a: rows(3), b: rows(3) })).toBe(true);
    expect(rowsAgree({ a: rows(0) })).toBe(true);
    expect(rowsAgree({ a: rows(1), b: rows(2) })).toBe(false);
    const scalar: Tensor = { dtype: 'float32', dims: [], data: new Float32Array(1) };
    expect(rowsAgree({ a: rows(1), s: scalar })).toBe(false);
  });
});

describe('hasBatchDimension', () => {
  it('is true only when every input and output has a symbolic leading dim', () => {
    expect(
      hasBatchDimension({
        inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
        outputs: [
          { name: 'probs', dtype: 'float32', dims: ['N', 3] },
          { name: 'label', dtype: 'int64', dims: ['batch'] },
        ],
      }),
    ).toBe(true);
    const cases = [
      { inputs: [{ name: 'x', dtype: 'float32', dims: [1, 4] }], outputs: [] },
      {
        inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
        outputs: [{ name: 'y', dtype: 'float32', dims: [] }],
      },
      {
        inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
        outputs: [{ name: 'y', dtype: 'float32' }],
      },
      {
        inputs: [
          { name: 'x', dtype: 'float32', dims: ['batch', 4] },
          { name: 'sr', dtype: 'int64', dims: [] },
        ],
        outputs: [{ name: 'y', dtype: 'float32', dims: ['batch'] }],
      },
      { inputs: [], outputs: [] },
    ] as const;
    for (const signature of cases) expect(hasBatchDimension(signature)).toBe(false);
  });
});
