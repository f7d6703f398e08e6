// Detection input: sizes that are multiples of 32 under the side limit, BGR channel order and
// PaddleOCR's mean/std.

import { describe, expect, it } from 'vitest';
import { errorCode } from '@tandem/test-support';
import {
  DETECTION_MEAN,
  DETECTION_STD,
  detectionSize,
  preprocessForDetection,
  type RgbaImage,
} from '../../src/ocr/index.js';

describe('detectionSize', () => {
  it('rounds each side to the nearest multiple of 32 without scaling small images up', () => {
    expect(detectionSize(560, 200)).toEqual({ width: 576, height: 192 });
    expect(detectionSize(360, 400)).toEqual({ width: 352, height: 416 });
    expect(detectionSize(10, 10)).toEqual({ width: 32, height: 32 });
  });

  it('scales the longer side down to the limit, keeping the aspect ratio', () => {
    expect(detectionSize(1920, 1080)).toEqual({ width: 960, height: 544 });
    expect(detectionSize(1000, 4000, 640)).toEqual({ width: 160, height: 640 });
  });

  it('refuses a limit under 32', () => {
    expect(errorCode(() => detectionSize(100, 100, 16))).toBe('E_INVALID_ARGUMENT');
  });
});

describe('preprocessForDetection', () => {
  it('gives float32 [1, 3, H, W] in B, G, R order normalised with mean/std on 0..1', () => {
    const width = 40;
    const height = 20;
    const data = new Uint8ClampedArray(width * height * 4);
    for (let i = 0; i < width * height; i++) data.set([255, 0, 51, 255], i * 4);
    const image: RgbaImage = { width, height, data };
    const { tensor, width: w, height: h } = preprocessForDetection(image);
    expect([w, h]).toEqual([32, 32]);
    expect(tensor.dims).toEqual([1, 3, 32, 32]);
    const plane = 32 * 32;
    // The pixel is R 255, G 0, B 51: in B, G, R order that is 0.2, 0, 1 on the 0..1 scale.
    const expected = [0.2, 0, 1].map((v, c) => (v - DETECTION_MEAN[c]!) / DETECTION_STD[c]!);
    for (let c = 0; c < 3; c++) {
      for (const i of [0, 17, plane - 1]) {
        expect(tensor.data[c * plane + i]).toBeCloseTo(expected[c]!, 5);
      }
    }
  });

  it('honours maxSideLength', () => {
    const image: RgbaImage = {
      width: 200,
      height: 100,
      data: new Uint8ClampedArray(200 * 100 * 4),
    };
    expect(preprocessForDetection(image, { maxSideLength: 64 }).tensor.dims).toEqual([
      1, 3, 32, 64,
    ]);
  });
});
