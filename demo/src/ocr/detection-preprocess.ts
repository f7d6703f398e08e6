// Detection input, as PaddleOCR's DetResizeForTest + NormalizeImage + ToCHWImage build it: the
// image scaled so its longer side is at most a limit and each side is a multiple of 32 (the
// detector downsamples by 32), normalised with ImageNet mean/std, as a float32 NCHW tensor.

import { TandemError, type Tensor } from '@tandem/shared';
import { assertRgbaImage, resampleRegion, type RgbaImage } from './rgba-image.js';

/** Options for {@link preprocessForDetection}. */
export interface DetectionPreprocessOptions {
  /** Longest side of the detector's input in pixels; larger images are scaled down. @default 960 */
  readonly maxSideLength?: number;
}

/** The detector's input and the size it was scaled to. */
export interface DetectionInput {
  /** float32 [1, 3, height, width], channels in B, G, R order. */
  readonly tensor: Tensor<'float32'>;
  /** The input's width in pixels, a multiple of 32. */
  readonly width: number;
  /** The input's height in pixels, a multiple of 32. */
  readonly height: number;
}

/** PaddleOCR's det mean and std, per input channel; channel 0 is blue (see the module notes). */
export const DETECTION_MEAN = [0.485, 0.456, 0.406] as const;
/** See {@link DETECTION_MEAN}. */
export const DETECTION_STD = [0.229, 0.224, 0.225] as const;

/** @default for {@link DetectionPreprocessOptions.maxSideLength}, PaddleOCR's det_limit_side_len. */
export const DEFAULT_MAX_SIDE_LENGTH = 960;

/**
 * The detector input size for an image: scaled (never up) so the longer side is at most
 * `maxSideLength`, then each side rounded to the nearest multiple of 32, at least 32. The aspect
 * ratio is kept up to that rounding. Throws `E_INVALID_ARGUMENT` for a limit below 32.
 */
export function detectionSize(
  width: number,
  height: number,
  maxSideLength = DEFAULT_MAX_SIDE_LENGTH,
): { width: number; height: number } {
  if (!(maxSideLength >= 32)) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `maxSideLength must be at least 32, got ${maxSideLength}`,
    );
  }
  const ratio =
    Math.max(width, height) > maxSideLength ? maxSideLength / Math.max(width, height) : 1;
  const round32 = (side: number): number =>
    Math.max(Math.round(Math.trunc(side * ratio) / 32) * 32, 32);
  return { width: round32(width), height: round32(height) };
}

/**
 * Builds the detector's input tensor from an image.
 *
 * Channels go in B, G, R order: PaddleOCR trains and infers on OpenCV images, which are BGR, and
 * applies its mean/std lists per channel in that order, so channel 0 (blue) gets mean 0.485.
 * Copying that keeps the input identical to what the model saw in training.
 */
export function preprocessForDetection(
  image: RgbaImage,
  options: DetectionPreprocessOptions = {},
): DetectionInput {
  assertRgbaImage(image);
  const { width, height } = detectionSize(image.width, image.height, options.maxSideLength);
  const whole = [
    { x: 0, y: 0 },
    { x: image.width, y: 0 },
    { x: image.width, y: image.height },
    { x: 0, y: image.height },
  ] as const;
  const rgb = resampleRegion(image, whole, width, height);
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let channel = 0; channel < 3; channel++) {
    const source = (2 - channel) * plane; // B, G, R from the R, G, B planes
    const mean = DETECTION_MEAN[channel as 0 | 1 | 2];
    const std = DETECTION_STD[channel as 0 | 1 | 2];
    const target = channel * plane;
    for (let i = 0; i < plane; i++) {
      data[target + i] = ((rgb[source + i] as number) / 255 - mean) / std;
    }
  }
  return { tensor: { dtype: 'float32', dims: [1, 3, height, width], data }, width, height };
}
