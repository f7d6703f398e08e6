// Fixtures for the server's HTTP tests: temporary model repositories and the small synthetic
// models those tests need beyond test-support's (one Identity per dtype, a deliberately slow model).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel, type OnnxDtype } from '@tandem/test-support';

/** A fresh temporary directory and the function that removes it. */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tandem-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes `model.json` beside a model version. */
export function writeModelConfig(
  dir: string,
  name: string,
  version: number | string,
  config: unknown,
): void {
  writeFileSync(join(dir, name, String(version), 'model.json'), JSON.stringify(config));
}

/** The dtypes of {@link buildIdentityModel}, as input name → dtype; each output is `<name>_out`. */
export const IDENTITY_INPUTS = {
  s: 'string',
  b: 'bool',
  h: 'float16',
  i: 'int64',
  u: 'uint64',
  i8: 'int8',
  u8: 'uint8',
  d: 'float64',
} as const satisfies Record<string, OnnxDtype>;

/**
 * One Identity node per dtype in {@link IDENTITY_INPUTS}: input `<name>` `['n_<name>']` →
 * output `<name>_out`. Every value comes back exactly as sent, so JSON and binary conversions of
 * each OIP datatype can be checked end to end.
 */
export function buildIdentityModel(): Uint8Array {
  const names = Object.keys(IDENTITY_INPUTS) as (keyof typeof IDENTITY_INPUTS)[];
  return buildModel({
    inputs: names.map((name) => ({ name, dtype: IDENTITY_INPUTS[name], dims: [`n_${name}`] })),
    outputs: names.map((name) => ({
      name: `${name}_out`,
      dtype: IDENTITY_INPUTS[name],
      dims: [`n_${name}`],
    })),
    nodes: names.map((name) => ({ opType: 'Identity', inputs: [name], outputs: [`${name}_out`] })),
  });
}

/**
 * A model that is slow on purpose while its input is tiny: `x` float32 `[1]` is expanded to a
 * `[size, size]` matrix, multiplied by itself `steps` times, and summed to the scalar `y`. With
 * one intra-op thread (set in model.json) a run takes a predictable few hundred milliseconds, so
 * a job is reliably still in flight while a test does something else.
 */
export function buildSlowModel(size = 512, steps = 64): Uint8Array {
  const nodes = [
    { opType: 'Expand', inputs: ['x', 'shape'], outputs: ['m0'] },
    ...Array.from({ length: steps }, (_, i) => ({
      opType: 'MatMul',
      inputs: [`m${i}`, 'm0'],
      outputs: [`m${i + 1}`],
    })),
    {
      opType: 'ReduceSum',
      inputs: [`m${steps}`],
      outputs: ['y'],
      attributes: { keepdims: { type: 'int', value: 0 } as const },
    },
  ];
  return buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: [1] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: [] }],
    initializers: [
      {
        name: 'shape',
        dtype: 'int64',
        dims: [2],
        data: new BigInt64Array([BigInt(size), BigInt(size)]),
      },
    ],
    nodes,
  });
}
