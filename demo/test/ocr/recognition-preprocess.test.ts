// Recognition crops: height 48 with the box's aspect ratio, tall boxes turned, values in -1..1 in
// B, G, R order, batches padded with zeros to the widest crop (at least 320).

import { describe, expect, it } from 'vitest';
import {
  RECOGNITION_HEIGHT,
  batchForRecognition,
  cropForRecognition,
  type Quad,
  type RgbaImage,
} from '../../src/ocr/index.js';

/** A 100×40 image: white, a black block at x 10..29, y 10..19, and blue from x 90 on. */
function testImage(): RgbaImage {
  const width = 100;
  const height = 40;
  const data = new Uint8ClampedArray(width * height * 4).fill(255);
  for (let y = 10; y < 20; y++)
    for (let x = 10; x < 30; x++) data.set([0, 0, 0, 255], (y * width + x) * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 90; x < width; x++) data.set([0, 0, 255, 255], (y * width + x) * 4);
  }
  return { width, height, data };
}

const rect = (left: number, top: number, right: number, bottom: number): Quad => [
  { x: left, y: top },
  { x: right, y: top },
  { x: right, y: bottom },
  { x: left, y: bottom },
];

describe('cropForRecognition', () => {
  it('scales the box to height 48 keeping its aspect ratio, -1 for black and 1 for white', () => {
    // Inside the block by 2 pixels, so bilinear samples near the edge see only black.
    const crop = cropForRecognition(testImage(), rect(12, 12, 28, 18));
    expect(crop.width).toBe(128);
    expect(crop.data.length).toBe(3 * RECOGNITION_HEIGHT * 128);
    expect(Math.max(...crop.data)).toBe(-1);
    const white = cropForRecognition(testImage(), rect(40, 0, 60, 10));
    expect(Math.min(...white.data)).toBe(1);
  });

  it('puts blue in channel 0 (B, G, R order, as PaddleOCR feeds OpenCV images)', () => {
    const crop = cropForRecognition(testImage(), rect(92, 0, 98, 4));
    const plane = crop.width * RECOGNITION_HEIGHT;
    expect([crop.data[0], crop.data[plane], crop.data[2 * plane]]).toEqual([1, -1, -1]);
  });

  it('reads a box 1.5 times taller than wide turned, so its height becomes the width', () => {
    const crop = cropForRecognition(testImage(), rect(0, 0, 10, 40));
    expect(crop.width).toBe(192);
    const square = cropForRecognition(testImage(), rect(0, 0, 10, 14));
    expect(square.width).toBe(35);
  });

  it('caps the width at maxWidth', () => {
    expect(cropForRecognition(testImage(), rect(0, 0, 100, 2), { maxWidth: 500 }).width).toBe(500);
  });
});

describe('batchForRecognition', () => {
  it('stacks crops into [N, 3, 48, W] with W at least 320, left-aligned and padded with 0', () => {
    const narrow = { width: 2, data: new Float32Array(3 * 48 * 2).fill(0.5) };
    const wide = { width: 400, data: new Float32Array(3 * 48 * 400).fill(-0.5) };
    const batch = batchForRecognition([narrow, wide]);
    expect(batch.dims).toEqual([2, 3, 48, 400]);
    // Every row of the narrow crop: its two pixels, then padding.
    for (let row = 0; row < 3 * 48; row++) {
      expect([...batch.data.subarray(row * 400, row * 400 + 3)]).toEqual([0.5, 0.5, 0]);
    }
    expect(batch.data.subarray(3 * 48 * 400).every((v) => v === -0.5)).toBe(true);
    expect(batchForRecognition([narrow]).dims).toEqual([1, 3, 48, 320]);
  });
});
