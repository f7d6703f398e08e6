// Packs the tensors of several tensor maps into one ArrayBuffer plus a layout string: a group of
// small jobs then crosses to a worker thread (and back) as one transferred buffer and one string.
//
// Why not the maps themselves: posting a message clones every object in it. In a micro-benchmark
// on this project's 2-core VM, 16 jobs' maps as objects with typed-array views cost about 160 µs
// more CPU per group round trip than one buffer and a JSON layout. (End to end, in the throughput
// bench, the gain was within that machine's noise of about 10%.)

import {
  viewTensorData,
  type NumericTensorDtype,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';

/** Tensors start on multiples of this in the pack, so any typed array can view them. */
const PACK_ALIGN_BYTES = 8;

/** Tensor maps as one buffer (numeric data) and a layout (everything else). */
export interface PackedTensorMaps {
  readonly buffer: ArrayBuffer;
  /** JSON of {@link LayoutEntry} lists, one list per map, in order. */
  readonly layout: string;
}

/** A numeric tensor's name, dtype, dims, byte offset and byte length, or a string tensor whole. */
type LayoutEntry =
  | readonly [string, NumericTensorDtype, readonly number[], number, number]
  | readonly [string, 'string', readonly number[], string[]];

/** Copies `maps` into one new buffer and a layout. The maps are only read. */
export function packTensorMaps(maps: readonly TensorMap[]): PackedTensorMaps {
  let bytes = 0;
  for (const map of maps) {
    for (const name in map) {
      const tensor = map[name] as Tensor;
      if (tensor.dtype !== 'string') bytes = alignUp(bytes) + tensor.data.byteLength;
    }
  }
  const buffer = new ArrayBuffer(alignUp(bytes));
  const target = new Uint8Array(buffer);
  let offset = 0;
  const layout = maps.map((map) => {
    const entries: LayoutEntry[] = [];
    for (const name in map) {
      const tensor = map[name] as Tensor;
      if (tensor.dtype === 'string') {
        entries.push([name, 'string', tensor.dims, tensor.data]);
        continue;
      }
      offset = alignUp(offset);
      const { data } = tensor;
      target.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
      entries.push([name, tensor.dtype, tensor.dims, offset, data.byteLength]);
      offset += data.byteLength;
    }
    return entries;
  });
  return { buffer, layout: JSON.stringify(layout) };
}

/**
 * The maps of a pack, numeric tensors as views into its buffer (nothing is copied). The pack
 * comes from this package's own packTensorMaps across a thread boundary, so it is trusted.
 */
export function unpackTensorMaps(packed: PackedTensorMaps): TensorMap[] {
  const layout = JSON.parse(packed.layout) as LayoutEntry[][];
  return layout.map((entries) => {
    const map: TensorMap = {};
    for (const entry of entries) {
      map[entry[0]] =
        entry[1] === 'string'
          ? { dtype: 'string', dims: entry[2], data: entry[3] }
          : ({
              dtype: entry[1],
              dims: entry[2],
              data: viewTensorData(entry[1], packed.buffer, entry[3], entry[4]),
            } as Tensor);
    }
    return map;
  });
}

function alignUp(value: number): number {
  return Math.ceil(value / PACK_ALIGN_BYTES) * PACK_ALIGN_BYTES;
}
