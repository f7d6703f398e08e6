// The image the pipeline reads: RGBA bytes as a canvas's ImageData holds them (and as a PNG
// decoder gives them in Node), plus resampling of any box of it to a grid of a given size, which
// both models' preprocessing is built on.

import { TandemError } from '@tandem/shared';
import type { Quad } from './geometry.js';

/**
 * RGBA pixels, row by row, 4 bytes per pixel, unpremultiplied: the shape of the DOM's ImageData,
 * so `ctx.getImageData(...)` can be passed as it is.
 */
export interface RgbaImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** `width × height × 4` bytes: R, G, B, A for each pixel. */
  readonly data: Uint8ClampedArray | Uint8Array;
}

/** Throws `E_INVALID_ARGUMENT` unless the image has positive integer sides and 4 bytes a pixel. */
export function assertRgbaImage(image: RgbaImage): void {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `Image size must be positive integers, got ${width}×${height}`,
    );
  }
  if (data.length !== width * height * 4) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `A ${width}×${height} RGBA image has ${width * height * 4} bytes, got ${data.length}`,
    );
  }
}

// Most samples averaged per output pixel along each axis when shrinking; past this the cost grows
// faster than the picture improves.
const MAX_SUPERSAMPLES = 8;

/**
 * Samples the parallelogram spanned by `quad` (its corners 0, 1 and 3; corner 2 is implied) onto an
 * `outWidth`×`outHeight` grid: corner 0 lands on the grid's top-left, corner 1 on its top-right,
 * corner 3 on its bottom-left. Returns RGB planes (R, then G, then B, each row-major) with values
 * 0..255.
 *
 * Transparent pixels are composited over white first: a PNG's transparent background often holds
 * black RGB, which would otherwise turn dark text on it into dark on dark. Each output pixel is
 * the mean of up to 8×8 bilinear samples when the region is shrunk, so small text in a large
 * photo is averaged rather than skipped (OpenCV's INTER_LINEAR, which PaddleOCR uses, aliases
 * there); at or above the source scale this is plain bilinear with pixel centres at half-integers,
 * as in OpenCV.
 */
export function resampleRegion(
  image: RgbaImage,
  quad: Quad,
  outWidth: number,
  outHeight: number,
): Float32Array {
  const { width, height, data } = image;
  const plane = outWidth * outHeight;
  const out = new Float32Array(3 * plane);
  const [p0, p1, , p3] = quad;
  // Source step per output pixel along the grid's x and y.
  const ux = (p1.x - p0.x) / outWidth;
  const uy = (p1.y - p0.y) / outWidth;
  const vx = (p3.x - p0.x) / outHeight;
  const vy = (p3.y - p0.y) / outHeight;
  const nu = Math.min(MAX_SUPERSAMPLES, Math.max(1, Math.ceil(Math.hypot(ux, uy))));
  const nv = Math.min(MAX_SUPERSAMPLES, Math.max(1, Math.ceil(Math.hypot(vx, vy))));
  const weight = 1 / (nu * nv);
  const rgb = [0, 0, 0];

  // Adds the bilinear sample at source position (x, y), pixel centres at half-integers, edges clamped.
  const addSample = (x: number, y: number): void => {
    const fx = Math.min(Math.max(x - 0.5, 0), width - 1);
    const fy = Math.min(Math.max(y - 0.5, 0), height - 1);
    const x0 = Math.floor(fx);
    const y0 = Math.floor(fy);
    const x1 = Math.min(x0 + 1, width - 1);
    const y1 = Math.min(y0 + 1, height - 1);
    const ax = fx - x0;
    const ay = fy - y0;
    const w00 = (1 - ax) * (1 - ay) * weight;
    const w10 = ax * (1 - ay) * weight;
    const w01 = (1 - ax) * ay * weight;
    const w11 = ax * ay * weight;
    const i00 = (y0 * width + x0) * 4;
    const i10 = (y0 * width + x1) * 4;
    const i01 = (y1 * width + x0) * 4;
    const i11 = (y1 * width + x1) * 4;
    for (let c = 0; c < 3; c++) {
      rgb[c] =
        (rgb[c] as number) +
        w00 * overWhite(data, i00, c) +
        w10 * overWhite(data, i10, c) +
        w01 * overWhite(data, i01, c) +
        w11 * overWhite(data, i11, c);
    }
  };

  for (let j = 0; j < outHeight; j++) {
    for (let i = 0; i < outWidth; i++) {
      rgb[0] = 0;
      rgb[1] = 0;
      rgb[2] = 0;
      for (let sv = 0; sv < nv; sv++) {
        const v = j + (sv + 0.5) / nv;
        for (let su = 0; su < nu; su++) {
          const u = i + (su + 0.5) / nu;
          addSample(p0.x + u * ux + v * vx, p0.y + u * uy + v * vy);
        }
      }
      const o = j * outWidth + i;
      out[o] = rgb[0];
      out[plane + o] = rgb[1];
      out[2 * plane + o] = rgb[2];
    }
  }
  return out;
}

/** Channel `c` of the pixel at byte offset `i`, composited over white. */
function overWhite(data: Uint8ClampedArray | Uint8Array, i: number, c: number): number {
  const alpha = data[i + 3] as number;
  const value = data[i + c] as number;
  return alpha === 255 ? value : 255 - ((255 - value) * alpha) / 255;
}
