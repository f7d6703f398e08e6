// Resampling regions of RGBA images: exact copies at scale 1, averages when shrinking, bilinear
// when growing, transparent pixels over white, and a rotated read of a box.

import { describe, expect, it } from 'vitest';
import { errorCode } from '@tandem/test-support';
import { assertRgbaImage, resampleRegion, type Quad, type RgbaImage } from '../../src/ocr/index.js';

/** An image from rows of [r, g, b, a] pixels. */
function image(rows: readonly (readonly (readonly number[])[])[]): RgbaImage {
  const height = rows.length;
  const width = rows[0]!.length;
  return { width, height, data: new Uint8ClampedArray(rows.flat(2)) };
}

const whole = (img: RgbaImage): Quad => [
  { x: 0, y: 0 },
  { x: img.width, y: 0 },
  { x: img.width, y: img.height },
  { x: 0, y: img.height },
];

const planes = (rgb: Float32Array, size: number): number[][] =>
  [0, 1, 2].map((c) => [...rgb.subarray(c * size, (c + 1) * size)]);

describe('resampleRegion', () => {
  const img = image([
    [
      [10, 20, 30, 255],
      [40, 50, 60, 255],
    ],
    [
      [70, 80, 90, 255],
      [100, 110, 120, 255],
    ],
  ]);

  it('copies an image unchanged at its own size, as R, G and B planes', () => {
    expect(planes(resampleRegion(img, whole(img), 2, 2), 4)).toEqual([
      [10, 40, 70, 100],
      [20, 50, 80, 110],
      [30, 60, 90, 120],
    ]);
  });

  it('averages when shrinking', () => {
    expect(planes(resampleRegion(img, whole(img), 1, 1), 1)).toEqual([[55], [65], [75]]);
  });

  it('interpolates when growing, with edges clamped', () => {
    const red = planes(resampleRegion(img, whole(img), 4, 1), 4)[0]!;
    // Pixel centres at x = 0.25, 0.75, 1.25, 1.75 of the 2-pixel-wide source; row average 40..70.
    expect(red).toEqual([40, 47.5, 62.5, 70]);
  });

  it('puts transparent pixels over white', () => {
    const clear = image([[[0, 0, 0, 0]], [[0, 0, 0, 128]]]);
    const [r] = planes(resampleRegion(clear, whole(clear), 1, 2), 2);
    expect(r![0]).toBe(255);
    expect(r![1]).toBeCloseTo(255 - (255 * 128) / 255, 6);
  });

  it('reads a box turned 90°: corner 0 lands top-left, corner 1 top-right', () => {
    // Reading from the top-right corner downwards turns the image counter-clockwise.
    const turned: Quad = [
      { x: 2, y: 0 },
      { x: 2, y: 2 },
      { x: 0, y: 2 },
      { x: 0, y: 0 },
    ];
    expect(planes(resampleRegion(img, turned, 2, 2), 4)[0]).toEqual([40, 100, 10, 70]);
  });
});

describe('assertRgbaImage', () => {
  it('refuses sizes that are not positive integers and byte counts that do not match', () => {
    const data = new Uint8ClampedArray(16);
    expect(errorCode(() => assertRgbaImage({ width: 2, height: 2, data }))).toBe('ok');
    expect(errorCode(() => assertRgbaImage({ width: 0, height: 2, data }))).toBe(
      'E_INVALID_ARGUMENT',
    );
    expect(errorCode(() => assertRgbaImage({ width: 1.5, height: 2, data }))).toBe(
      'E_INVALID_ARGUMENT',
    );
    expect(errorCode(() => assertRgbaImage({ width: 3, height: 2, data }))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});
