import { describe, expect, it } from 'vitest';
import type { Tensor, TensorMap } from '@tandem/shared';
import { checkInputs, type ModelSignature } from '../src/input-check.js';
import { errorCode } from '@tandem/test-support';

const f32 = (dims: number[], count = dims.reduce((a, b) => a * b, 1)): Tensor => ({
  dtype: 'float32',
  dims,
  data: new Float32Array(count),
});
const i64 = (dims: number[]): Tensor => ({
  dtype: 'int64',
  dims,
  data: new BigInt64Array(dims.reduce((a, b) => a * b, 1)),
});

/** Two inputs sharing the symbol `batch`, a fixed dim, a scalar, and one unknown-shape input. */
const signature: ModelSignature = {
  inputs: [
    { name: 'x', dtype: 'float32', dims: ['batch', 3] },
    { name: 'mask', dtype: 'float32', dims: ['batch', 'seq'] },
    { name: 'sr', dtype: 'int64', dims: [] },
    { name: 'free', dtype: 'float32' },
  ],
  outputs: [
    { name: 'y', dtype: 'float32', dims: ['batch'] },
    { name: 'z', dtype: 'float32' },
  ],
};

const good = (): TensorMap => ({
  x: f32([2, 3]),
  mask: f32([2, 7]),
  sr: i64([]),
  free: f32([1, 2, 3, 4]),
});

function codeOf(inputs: TensorMap, outputs?: readonly string[], sig = signature): string {
  return errorCode(() => checkInputs(sig, inputs, outputs));
}

describe('checkInputs', () => {
  it('accepts inputs that fit, with any requested subset of outputs', () => {
    expect(codeOf(good())).toBe('ok');
    expect(codeOf(good(), ['z'])).toBe('ok');
    expect(codeOf(good(), [])).toBe('ok');
  });

  it('answers a missing input and an unknown input with E_INPUT_MISSING', () => {
    const missing = good();
    delete missing.sr;
    expect(codeOf(missing)).toBe('E_INPUT_MISSING');
    expect(codeOf({ ...good(), extra: f32([1]) })).toBe('E_INPUT_MISSING');
  });

  it('answers a wrong dtype with E_INPUT_DTYPE', () => {
    expect(codeOf({ ...good(), sr: f32([]) })).toBe('E_INPUT_DTYPE');
    expect(
      codeOf({ ...good(), x: { dtype: 'float64', dims: [2, 3], data: new Float64Array(6) } }),
    ).toBe('E_INPUT_DTYPE');
  });

  it('answers a wrong rank, a wrong fixed dim and a wrong element count with E_INPUT_SHAPE', () => {
    expect(codeOf({ ...good(), x: f32([6]) })).toBe('E_INPUT_SHAPE');
    expect(codeOf({ ...good(), x: f32([2, 4]) })).toBe('E_INPUT_SHAPE');
    expect(codeOf({ ...good(), sr: i64([1]) })).toBe('E_INPUT_SHAPE');
    expect(codeOf({ ...good(), x: f32([2, 3], 5) })).toBe('E_INPUT_SHAPE');
    expect(codeOf({ ...good(), free: f32([2, 2], 3) })).toBe('E_INPUT_SHAPE');
  });

  it('requires a symbol to have one size across inputs, while other symbols vary freely', () => {
    expect(codeOf({ ...good(), mask: f32([3, 7]) })).toBe('E_INPUT_SHAPE');
    expect(codeOf({ ...good(), x: f32([5, 3]), mask: f32([5, 1]) })).toBe('ok');
    expect(codeOf({ ...good(), x: f32([0, 3]), mask: f32([0, 9]) })).toBe('ok');
  });

  it('never ties anonymous dims ("?" or "") to each other', () => {
    const anonymous: ModelSignature = {
      inputs: [
        { name: 'a', dtype: 'float32', dims: ['?', ''] },
        { name: 'b', dtype: 'float32', dims: ['?', ''] },
      ],
      outputs: [],
    };
    expect(codeOf({ a: f32([1, 2]), b: f32([3, 4]) }, undefined, anonymous)).toBe('ok');
  });

  it('accepts any rank for an input whose shape the model leaves unknown', () => {
    for (const dims of [[], [4], [1, 2, 3, 4, 5]]) {
      expect(codeOf({ ...good(), free: f32(dims) }), JSON.stringify(dims)).toBe('ok');
    }
  });

  it('answers an unknown requested output with E_OUTPUT_NOT_FOUND', () => {
    expect(codeOf(good(), ['y', 'nope'])).toBe('E_OUTPUT_NOT_FOUND');
  });

  it('checks string tensors by element count too', () => {
    const strings: ModelSignature = {
      inputs: [{ name: 's', dtype: 'string', dims: ['n'] }],
      outputs: [],
    };
    expect(
      codeOf({ s: { dtype: 'string', dims: [2], data: ['a', 'b'] } }, undefined, strings),
    ).toBe('ok');
    expect(
      codeOf({ s: { dtype: 'string', dims: [3], data: ['a', 'b'] } }, undefined, strings),
    ).toBe('E_INPUT_SHAPE');
  });
});
