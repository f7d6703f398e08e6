// Packs the numeric tensors of several tensor maps into one ArrayBuffer, each tensor becoming a
// view into it: a group of small jobs then crosses to a worker thread (and back) as one
// transferred buffer instead of a buffer (and an allocation, and a transfer) per tensor.

import { viewTensorData, type Tensor, type TensorMap } from '@tandem/shared';

/** Tensors start on multiples of this in the pack, so any typed array can view them. */
const PACK_ALIGN_BYTES = 8;

/**
 * Copies every numeric tensor of `maps` into one new ArrayBuffer and returns the maps with views
 * into it (string tensors are kept as they are). The inputs are only read.
 */
export function packTensorMaps(maps: readonly TensorMap[]): {
  readonly maps: TensorMap[];
  readonly buffer: ArrayBuffer;
} {
  let bytes = 0;
  for (const map of maps) {
    for (const tensor of Object.values(map)) {
      if (tensor.dtype !== 'string') bytes = alignUp(bytes) + tensor.data.byteLength;
    }
  }
  const buffer = new ArrayBuffer(alignUp(bytes));
  const target = new Uint8Array(buffer);
  let offset = 0;
  const packed = maps.map((map) => {
    const out: TensorMap = {};
    for (const [name, tensor] of Object.entries(map)) {
      if (tensor.dtype === 'string') {
        out[name] = tensor;
        continue;
      }
      offset = alignUp(offset);
      const { data } = tensor;
      target.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
      out[name] = {
        dtype: tensor.dtype,
        dims: tensor.dims,
        data: viewTensorData(tensor.dtype, buffer, offset, data.byteLength),
      } as Tensor;
      offset += data.byteLength;
    }
    return out;
  });
  return { maps: packed, buffer };
}

function alignUp(value: number): number {
  return Math.ceil(value / PACK_ALIGN_BYTES) * PACK_ALIGN_BYTES;
}
