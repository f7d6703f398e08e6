// A slab for small outgoing frames, like Node's Buffer pool: allocating an ArrayBuffer costs a few
// microseconds plus garbage-collector bookkeeping, more than encoding a small message, so frames
// up to POOLED_FRAME_MAX_BYTES are carved out of one shared slab instead. A pooled frame shares its
// ArrayBuffer with other frames: it may be sent or copied, never transferred, detached or kept by
// `.buffer`.

/** Frames up to this size come from the slab; larger ones get an ArrayBuffer of their own. */
export const POOLED_FRAME_MAX_BYTES = 16 * 1024;
/** Size of one slab, in bytes: a new one starts when the current one cannot fit a frame. */
const SLAB_BYTES = 256 * 1024;
/** Frames start on multiples of this within the slab, so their tensors stay aligned. */
const FRAME_ALIGN_BYTES = 8;

let slab = new ArrayBuffer(0);
let used = 0;

/**
 * `bytes` zeroed bytes for one frame: a view into the shared slab when small (never reused, so
 * zeroed like a new buffer), else a buffer of its own.
 */
export function allocatePooledFrame(bytes: number): Uint8Array {
  if (bytes > POOLED_FRAME_MAX_BYTES) return new Uint8Array(bytes);
  if (used + bytes > slab.byteLength) {
    // The old slab is freed once the last frame carved from it is gone.
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  const frame = new Uint8Array(slab, used, bytes);
  used = Math.ceil((used + bytes) / FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES;
  return frame;
}
