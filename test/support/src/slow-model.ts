// A compute-bound synthetic model whose run time grows with the batch while its file and inputs
// stay small: one long job holds a server instance while short ones queue behind it.

import type { TensorMap } from '@tandem/shared';
import { buildModel } from './onnx-builder.js';
import { writeModelFile } from './model-repository.js';

/** Width of {@link buildMatMulChainModel}'s square weight. */
export const SLOW_WIDTH = 256;

/**
 * A compute-bound model whose run time grows with the batch while its file and inputs stay small:
 * `y = x · I · I · … · I` (`layers` MatMuls with one identity weight), input `x` float32
 * `['batch', 256]`, so `y` equals `x` exactly. A batch of 512 takes tens to hundreds of ms on a CPU;
 * a batch of 1 well under one. (buildHeavyModel is memory-bound: its runs stay near 10 ms even at
 * 16 MB and a batch of 64, too short to hold a queue still.)
 */
export function buildMatMulChainModel(layers = 128): Uint8Array {
  const width = SLOW_WIDTH;
  const identity = new Float32Array(width * width);
  for (let i = 0; i < width; i++) identity[i * width + i] = 1;
  const nodes = Array.from({ length: layers }, (_, layer) => ({
    opType: 'MatMul',
    inputs: [layer === 0 ? 'x' : `h${layer}`, 'w'],
    outputs: [layer === layers - 1 ? 'y' : `h${layer + 1}`],
  }));
  return buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', width] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: ['batch', width] }],
    initializers: [{ name: 'w', dtype: 'float32', dims: [width, width], data: identity }],
    nodes,
  });
}

/** An input of {@link buildMatMulChainModel}: `rows` rows of small integers, distinct per `seed`. */
export function slowInput(rows: number, seed = 1): TensorMap {
  const data = new Float32Array(rows * SLOW_WIDTH);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7 + seed * 13) % 17) - 8;
  return { x: { dtype: 'float32', dims: [rows, SLOW_WIDTH], data } };
}

/** Writes the slow model as `<dir>/<name>/1/model.onnx`. */
export async function writeSlowModel(dir: string, name = 'slow', layers = 128): Promise<void> {
  await writeModelFile(dir, name, 1, buildMatMulChainModel(layers));
}
