// DB (Differentiable Binarization) postprocessing, after PaddleOCR's DBPostProcess (thresh 0.3,
// box_thresh 0.6, score_mode "fast", quad boxes): the detector's probability map is thresholded,
// each 8-connected region becomes its minimum-area rotated rectangle, weak regions are dropped by
// their mean probability, survivors are grown ("unclipped": the model predicts shrunk text
// kernels) and scaled back to image coordinates.
//
// The unclip ratio defaults to 2.0, not the 1.5 of PaddleOCR's inference scripts: at 1.5 the
// boxes on the demo's samples ended at the last glyph, and the recogniser dropped word spaces in
// 5 of the 18 boxes and a line-ending period in another; at 2.0 every sample reads exactly
// (demo/test/ocr/ocr-samples.test.ts). 2.0 is also what OpenCV's DB text detector documents as
// the usual setting.
//
// PaddleOCR grows a box by offsetting its polygon with pyclipper; for a rectangle that gives a
// rounded rectangle whose minimum-area rectangle is the same rectangle grown by the offset
// distance on every side, which is what expandRect computes, so no clipping library is needed.

import { TandemError, type Tensor } from '@tandem/shared';
import {
  expandRect,
  mapQuad,
  minAreaRect,
  rectCorners,
  type Point,
  type Quad,
  type RotatedRect,
} from './geometry.js';
import { sortReadingOrder } from './reading-order.js';

/** Options for {@link dbPostprocess}; the defaults are PaddleOCR's but for `unclipRatio`. */
export interface DbPostprocessOptions {
  /** Probability above which a map pixel counts as text. @default 0.3 */
  readonly threshold?: number;
  /** Least mean probability inside a box for it to be kept. @default 0.6 */
  readonly boxThreshold?: number;
  /** How much a box grows: offset distance = area × ratio / perimeter. @default 2 */
  readonly unclipRatio?: number;
  /** Shortest side, in map pixels, of a box before growing (after growing: this + 2). @default 3 */
  readonly minSize?: number;
  /** Most regions examined, in scan order; the rest are ignored. @default 1000 */
  readonly maxCandidates?: number;
}

/** A detected text box. */
export interface DetectedBox {
  /** The box's corners in image coordinates. */
  readonly box: Quad;
  /** The detector's mean text probability inside the box (before growing), 0..1. */
  readonly score: number;
}

const DEFAULTS: Required<DbPostprocessOptions> = {
  threshold: 0.3,
  boxThreshold: 0.6,
  unclipRatio: 2,
  minSize: 3,
  maxCandidates: 1000,
};

/**
 * Turns a DB probability map (float32 [1, 1, H, W]) for an image of `imageWidth`×`imageHeight`
 * into text boxes in that image's coordinates, in reading order. Map pixel (x, y) stands for its
 * centre (x + 0.5, y + 0.5), which scales to ((x + 0.5) × imageWidth / W, (y + 0.5) × imageHeight
 * / H); corners are clamped to the image. Throws `E_INVALID_ARGUMENT` for a map of another shape.
 *
 * PaddleOCR takes OpenCV's integer contour points as they are, which moves every box half a map
 * pixel up and to the left of its region; on the paragraph sample that left the last column of a
 * line-ending period outside its box. Centres put the box where the region is.
 */
export function dbPostprocess(
  map: Tensor,
  imageWidth: number,
  imageHeight: number,
  options: DbPostprocessOptions = {},
): DetectedBox[] {
  const settings = { ...DEFAULTS, ...options };
  const [batch, channels, height, width] = map.dims;
  if (
    map.dtype !== 'float32' ||
    map.dims.length !== 4 ||
    batch !== 1 ||
    channels !== 1 ||
    height === undefined ||
    width === undefined ||
    map.data.length !== height * width
  ) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `The detection map must be float32 [1, 1, H, W], got ${map.dtype} [${map.dims.join(', ')}]`,
    );
  }
  const probs = map.data;
  const scaleX = imageWidth / width;
  const scaleY = imageHeight / height;
  const boxes: DetectedBox[] = [];
  for (const region of connectedRegions(
    probs,
    width,
    height,
    settings.threshold,
    settings.maxCandidates,
  )) {
    const rect = minAreaRect(region);
    if (Math.min(rect.width, rect.height) < settings.minSize) continue;
    const score = meanInside(probs, width, height, rect);
    if (score < settings.boxThreshold) continue;
    const perimeter = 2 * (rect.width + rect.height);
    const grown = expandRect(rect, (rect.width * rect.height * settings.unclipRatio) / perimeter);
    if (Math.min(grown.width, grown.height) < settings.minSize + 2) continue;
    const box = mapQuad(rectCorners(grown), (p) => ({
      x: clamp(p.x * scaleX, 0, imageWidth),
      y: clamp(p.y * scaleY, 0, imageHeight),
    }));
    boxes.push({ box, score });
  }
  return sortReadingOrder(boxes, (b) => b.box);
}

const clamp = (value: number, low: number, high: number): number =>
  Math.min(Math.max(value, low), high);

/**
 * The 8-connected regions of pixels above `threshold`, each given by the centres of its leftmost
 * and rightmost pixel on every row it covers: those points have the same convex hull as all of the
 * region's pixel centres, which is all minAreaRect needs.
 */
function connectedRegions(
  probs: Float32Array,
  width: number,
  height: number,
  threshold: number,
  maxRegions: number,
): Point[][] {
  const size = width * height;
  // 0 = background or already visited, 1 = unvisited text pixel.
  const pending = new Uint8Array(size);
  for (let i = 0; i < size; i++) pending[i] = (probs[i] as number) > threshold ? 1 : 0;
  const stack = new Int32Array(size);
  const regions: Point[][] = [];
  for (let start = 0; start < size && regions.length < maxRegions; start++) {
    if (pending[start] === 0) continue;
    pending[start] = 0;
    let top = 0;
    stack[top++] = start;
    // Row extremes of this region, keyed by row.
    const rowMin = new Map<number, number>();
    const rowMax = new Map<number, number>();
    while (top > 0) {
      const index = stack[--top] as number;
      const x = index % width;
      const y = (index - x) / width;
      if (x < (rowMin.get(y) ?? Infinity)) rowMin.set(y, x);
      if (x > (rowMax.get(y) ?? -Infinity)) rowMax.set(y, x);
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const neighbour = ny * width + nx;
          if (pending[neighbour] === 1) {
            pending[neighbour] = 0;
            stack[top++] = neighbour;
          }
        }
      }
    }
    const points: Point[] = [];
    for (const [y, minX] of rowMin) {
      points.push({ x: minX + 0.5, y: y + 0.5 });
      const maxX = rowMax.get(y) ?? minX;
      if (maxX !== minX) points.push({ x: maxX + 0.5, y: y + 0.5 });
    }
    regions.push(points);
  }
  return regions;
}

/**
 * Mean probability over the map pixels whose centres lie inside the rectangle (PaddleOCR's
 * box_score_fast fills the box polygon over its bounding box and averages under that mask).
 * 0 when no pixel centre is inside.
 */
function meanInside(probs: Float32Array, width: number, height: number, rect: RotatedRect): number {
  const corners = rectCorners(rect);
  const xs = corners.map((p) => p.x);
  const ys = corners.map((p) => p.y);
  const x0 = clamp(Math.floor(Math.min(...xs)), 0, width - 1);
  const x1 = clamp(Math.ceil(Math.max(...xs)), 0, width - 1);
  const y0 = clamp(Math.floor(Math.min(...ys)), 0, height - 1);
  const y1 = clamp(Math.ceil(Math.max(...ys)), 0, height - 1);
  const { center, axis } = rect;
  // A little slack so pixels exactly on the edge count, as a filled polygon includes its outline.
  const halfU = rect.width / 2 + 1e-6;
  const halfV = rect.height / 2 + 1e-6;
  let sum = 0;
  let count = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - center.x;
      const dy = y + 0.5 - center.y;
      if (Math.abs(dx * axis.x + dy * axis.y) > halfU) continue;
      if (Math.abs(-dx * axis.y + dy * axis.x) > halfV) continue;
      sum += probs[y * width + x] as number;
      count++;
    }
  }
  return count === 0 ? 0 : sum / count;
}
