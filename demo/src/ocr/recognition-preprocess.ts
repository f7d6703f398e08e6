// Recognition input, after PaddleOCR's get_rotate_crop_image + resize_norm_img: each box is cut
// out of the original image upright, scaled to height 48 keeping its aspect ratio, normalised to
// -1..1, and boxes are batched right-padded with zeros to a common width (at least 320, the width
// the v4 recogniser was trained at).

import type { Tensor } from '@tandem/shared';
import type { Quad } from './geometry.js';
import { resampleRegion, type RgbaImage } from './rgba-image.js';

/** Input height of PaddleOCR's v3/v4 recognisers. */
export const RECOGNITION_HEIGHT = 48;

/** Narrowest batch width: PaddleOCR pads to at least its rec_image_shape width. */
export const RECOGNITION_MIN_WIDTH = 320;

/** @default for {@link RecognitionPreprocessOptions.maxWidth}. */
export const DEFAULT_RECOGNITION_MAX_WIDTH = 1600;

/** Options for {@link cropForRecognition}. */
export interface RecognitionPreprocessOptions {
  /**
   * Widest crop in pixels at height 48; longer lines are squeezed to this. PaddleOCR has no cap;
   * this one bounds the tensor (1600 fits a line of about 60 Latin characters unsqueezed).
   * @default 1600
   */
  readonly maxWidth?: number;
}

/** One box cut out for the recogniser: normalised B, G, R planes of 48 × `width`. */
export interface RecognitionCrop {
  /** Width in pixels; the height is {@link RECOGNITION_HEIGHT}. */
  readonly width: number;
  /** `3 × 48 × width` values, plane by plane, row by row. */
  readonly data: Float32Array;
}

/**
 * Cuts `box` out of the image as a 48-pixel-high crop.
 *
 * The crop's width and height are the box's longer opposite sides, as in PaddleOCR. A box at least
 * 1.5 times taller than wide is read turned 90° counter-clockwise (PaddleOCR's np.rot90), which
 * suits vertical lines of text; a lone tall glyph is read turned too, as PaddleOCR does.
 * Channels are B, G, R to match PaddleOCR's OpenCV images; values are (x / 255 - 0.5) / 0.5.
 */
export function cropForRecognition(
  image: RgbaImage,
  box: Quad,
  options: RecognitionPreprocessOptions = {},
): RecognitionCrop {
  const maxWidth = options.maxWidth ?? DEFAULT_RECOGNITION_MAX_WIDTH;
  const [p0, p1, p2, p3] = box;
  const side = (a: Quad[number], b: Quad[number]): number => Math.hypot(b.x - a.x, b.y - a.y);
  const boxWidth = Math.max(side(p0, p1), side(p3, p2));
  const boxHeight = Math.max(side(p0, p3), side(p1, p2));
  const upright: Quad = boxHeight >= 1.5 * boxWidth ? [p1, p2, p3, p0] : box;
  const [w, h] = boxHeight >= 1.5 * boxWidth ? [boxHeight, boxWidth] : [boxWidth, boxHeight];
  const width = Math.max(
    1,
    Math.min(maxWidth, Math.ceil((RECOGNITION_HEIGHT * w) / Math.max(h, 1))),
  );
  const rgb = resampleRegion(image, upright, width, RECOGNITION_HEIGHT);
  const plane = width * RECOGNITION_HEIGHT;
  const data = new Float32Array(3 * plane);
  for (let channel = 0; channel < 3; channel++) {
    const source = (2 - channel) * plane;
    const target = channel * plane;
    for (let i = 0; i < plane; i++) data[target + i] = (rgb[source + i] as number) / 127.5 - 1;
  }
  return { width, data };
}

/**
 * Stacks crops into one float32 [N, 3, 48, W] tensor, W the widest crop (at least
 * {@link RECOGNITION_MIN_WIDTH}); narrower crops are left-aligned and padded with 0, the
 * normalised value of mid grey, as PaddleOCR pads.
 */
export function batchForRecognition(crops: readonly RecognitionCrop[]): Tensor<'float32'> {
  const width = Math.max(RECOGNITION_MIN_WIDTH, ...crops.map((crop) => crop.width));
  const rowsPerCrop = 3 * RECOGNITION_HEIGHT;
  const data = new Float32Array(crops.length * rowsPerCrop * width);
  crops.forEach((crop, n) => {
    for (let row = 0; row < rowsPerCrop; row++) {
      const from = row * crop.width;
      data.set(crop.data.subarray(from, from + crop.width), (n * rowsPerCrop + row) * width);
    }
  });
  return { dtype: 'float32', dims: [crops.length, 3, RECOGNITION_HEIGHT, width], data };
}
