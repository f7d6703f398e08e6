// The `result` frames of a group of small jobs, written by the session worker that ran them. Under
// load the main thread is the server's bottleneck (sockets, decoding, scheduling for every client),
// and encoding a result frame was a tenth of its work per job; the worker has the outputs in hand
// and time to spare while the main thread serves sockets. The main thread then only sends frames.

import {
  encodeMessage,
  type Backend,
  type ResultMessage,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';

/** Numbers per item in {@link ResultFrameSpec.numbers}. */
export const RESULT_FIELDS = 5;

/** What a worker needs to write the `result` frames of a group's items (built by the host). */
export interface ResultFrameSpec {
  readonly model: string;
  readonly version: string;
  readonly backend: Backend;
  /** Each item's job id. */
  readonly ids: readonly string[];
  /**
   * {@link RESULT_FIELDS} numbers per item: cold start (1 or 0); queue, load and warm-up ms (to
   * the microsecond); and when the job arrived, as the main thread's `performance.timeOrigin +
   * performance.now()` in ms (the worker's clock has another origin). A typed array: it crosses
   * the thread boundary as one transferred buffer instead of an object per item.
   */
  readonly numbers: Float64Array;
}

/** Result frames one after the other in one buffer (one transfer back for the whole group). */
export interface PackedFrames {
  readonly buffer: ArrayBuffer;
  /**
   * Where each item's frame ends; it starts at the previous end rounded up to a multiple of 8
   * (tensors in it stay aligned). An item that failed has an empty frame.
   */
  readonly ends: Uint32Array;
}

/** Rounds milliseconds to the microsecond: the clock says no more, and shorter numbers cost
 * less to write into a header (and to parse on the other side). */
export function toMicros(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Builds the spec's numbers for one item, in order (see {@link ResultFrameSpec.numbers}). */
export function writeResultFields(
  numbers: Float64Array,
  index: number,
  item: {
    readonly coldStart: boolean;
    readonly queueMs: number;
    readonly loadMs: number;
    readonly warmupMs: number;
    readonly receivedAtEpochMs: number;
  },
): void {
  const at = index * RESULT_FIELDS;
  numbers[at] = item.coldStart ? 1 : 0;
  numbers[at + 1] = item.queueMs;
  numbers[at + 2] = item.loadMs;
  numbers[at + 3] = item.warmupMs;
  numbers[at + 4] = item.receivedAtEpochMs;
}

/**
 * Writes each item's `result` frame (in the worker). `outputs[i]` undefined: item i failed and
 * gets an empty frame. `runMs[i]` is its run time and `finishedAtEpochMs[i]` when it finished, as
 * `performance.timeOrigin + performance.now()` in ms, so its total time is measured on one clock.
 * Items ran one after the other in index order: an item's wait behind the items before it (the
 * sum of their run times) is queueing for the instance, and counts in its `queueMs`.
 */
export function writeResultFrames(
  spec: ResultFrameSpec,
  outputs: readonly (TensorMap | undefined)[],
  runMs: Float64Array,
  finishedAtEpochMs: Float64Array,
): PackedFrames {
  const ends = new Uint32Array(outputs.length);
  // Frames are written once, into a pooled frame, and copied once, into the pack; the pack grows
  // if the guess (outputs plus a generous header each) falls short.
  let bytes = new Uint8Array(packGuessBytes(outputs));
  let offset = 0;
  let aheadMs = 0;
  outputs.forEach((itemOutputs, index) => {
    if (itemOutputs !== undefined) {
      offset = alignUp(offset);
      const frame = encodeMessage(
        resultMessage(spec, index, itemOutputs, runMs, finishedAtEpochMs, aheadMs),
        { pooled: true },
      );
      if (offset + frame.byteLength > bytes.byteLength) {
        const grown = new Uint8Array(Math.max(2 * bytes.byteLength, offset + frame.byteLength));
        grown.set(bytes.subarray(0, offset));
        bytes = grown;
      }
      bytes.set(frame, offset);
      offset += frame.byteLength;
    }
    ends[index] = offset;
    aheadMs += runMs[index] as number;
  });
  return { buffer: bytes.buffer, ends };
}

/** Header room per frame in the first guess at a pack's size, in bytes. */
const HEADER_GUESS_BYTES = 1024;

/** Frames start on multiples of this in a pack, so a frame decoded there views its tensors. */
const FRAME_ALIGN_BYTES = 8;

function alignUp(offset: number): number {
  return Math.ceil(offset / FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES;
}

function packGuessBytes(outputs: readonly (TensorMap | undefined)[]): number {
  let bytes = 0;
  for (const itemOutputs of outputs) {
    if (itemOutputs === undefined) continue;
    bytes += HEADER_GUESS_BYTES + FRAME_ALIGN_BYTES;
    for (const name in itemOutputs) {
      const tensor = itemOutputs[name] as Tensor;
      if (tensor.dtype !== 'string') bytes += tensor.data.byteLength;
    }
  }
  return bytes;
}

function resultMessage(
  spec: ResultFrameSpec,
  index: number,
  outputs: TensorMap,
  runMs: Float64Array,
  finishedAtEpochMs: Float64Array,
  aheadMs: number,
): ResultMessage {
  const at = index * RESULT_FIELDS;
  const { numbers } = spec;
  return {
    type: 'result',
    id: spec.ids[index] as string,
    model: spec.model,
    version: spec.version,
    outputs,
    backend: spec.backend,
    coldStart: numbers[at] === 1,
    timings: {
      queueMs: toMicros((numbers[at + 1] as number) + aheadMs),
      loadMs: numbers[at + 2] as number,
      warmupMs: numbers[at + 3] as number,
      runMs: toMicros(runMs[index] as number),
      totalMs: toMicros(
        Math.max(0, (finishedAtEpochMs[index] as number) - (numbers[at + 4] as number)),
      ),
    },
  };
}

/** Each item's frame, as a view into the pack (empty for an item that failed). */
export function readResultFrames(packed: PackedFrames): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let previousEnd = 0;
  for (const end of packed.ends) {
    const start = end === previousEnd ? end : alignUp(previousEnd);
    frames.push(new Uint8Array(packed.buffer, start, end - start));
    previousEnd = end;
  }
  return frames;
}
