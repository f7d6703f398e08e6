// The whole pipeline on the demo's sample images with the real PaddleOCR models in
// onnxruntime-node: every sample must read back exactly as the text it was rendered from (same
// characters, case and spaces, line by line), and the boxes must cover all of the ink.

import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TensorMap } from '@tandem/shared';
import { paddleOcrDictionaryPath, realModelPath } from '@tandem/test-support';
import {
  DEFAULT_OCR_MODELS,
  groupIntoLines,
  parseDictionary,
  runOcr,
  type OcrDictionary,
  type OcrLine,
  type Point,
  type Quad,
  type RgbaImage,
  type RunModel,
} from '../../src/ocr/index.js';
import { SAMPLES } from '../../scripts/sample-specs.js';

const samplesDir = new URL('../../public/samples/', import.meta.url);

function readSample(file: string): RgbaImage {
  const png = PNG.sync.read(readFileSync(new URL(file, samplesDir)));
  return { width: png.width, height: png.height, data: new Uint8Array(png.data) };
}

let sessions: Map<string, ort.InferenceSession>;
let dictionary: OcrDictionary;

interface Call {
  readonly model: string;
  readonly dims: readonly number[];
}

/** A RunModel on onnxruntime-node sessions that records what it was asked to run. */
function recordingRunModel(calls: Call[]): RunModel {
  return async (model, inputs): Promise<TensorMap> => {
    const session = sessions.get(model);
    const x = inputs.x;
    if (session === undefined || x?.dtype !== 'float32') throw new Error(`unexpected ${model}`);
    calls.push({ model, dims: x.dims });
    const results = await session.run({ x: new ort.Tensor('float32', x.data, x.dims) });
    const outputs: TensorMap = {};
    for (const [name, value] of Object.entries(results)) {
      outputs[name] = { dtype: 'float32', dims: value.dims, data: value.data as Float32Array };
    }
    return outputs;
  };
}

beforeAll(async () => {
  sessions = new Map([
    [
      DEFAULT_OCR_MODELS.detection,
      await ort.InferenceSession.create(realModelPath('paddleocr-det')),
    ],
    [
      DEFAULT_OCR_MODELS.recognition,
      await ort.InferenceSession.create(realModelPath('paddleocr-rec')),
    ],
  ]);
  dictionary = parseDictionary(readFileSync(paddleOcrDictionaryPath(), 'utf8'));
});

afterAll(async () => {
  for (const session of sessions.values()) await session.release();
});

/** How far `p` lies outside the convex quad (corners in either winding); 0 inside. */
function distanceOutside(quad: Quad, p: Point): number {
  let sign = 0;
  let inside = true;
  let nearest = Infinity;
  for (let i = 0; i < 4; i++) {
    const a = quad[i]!;
    const b = quad[(i + 1) % 4]!;
    const cross = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
    if (cross !== 0) {
      if (sign === 0) sign = Math.sign(cross);
      else if (Math.sign(cross) !== sign) inside = false;
    }
    // Distance to the edge segment a–b.
    const length2 = (b.x - a.x) ** 2 + (b.y - a.y) ** 2;
    const t = Math.max(
      0,
      Math.min(1, ((p.x - a.x) * (b.x - a.x) + (p.y - a.y) * (b.y - a.y)) / length2),
    );
    nearest = Math.min(
      nearest,
      Math.hypot(p.x - a.x - t * (b.x - a.x), p.y - a.y - t * (b.y - a.y)),
    );
  }
  return inside ? 0 : nearest;
}

/**
 * Pixel centres that are clearly ink: far from the background colour (the top-left pixel, which
 * every sample leaves as margin). Anti-aliased edges in between are not counted.
 */
function inkPixels(image: RgbaImage): Point[] {
  const { width, height, data } = image;
  const [r0, g0, b0] = [data[0]!, data[1]!, data[2]!];
  const ink: Point[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const distance =
        Math.abs(data[i]! - r0) + Math.abs(data[i + 1]! - g0) + Math.abs(data[i + 2]! - b0);
      if (distance > 3 * 128) ink.push({ x: x + 0.5, y: y + 0.5 });
    }
  }
  return ink;
}

describe('OCR on the demo sample images with the real PaddleOCR models', () => {
  it('the dictionary has exactly one class per recogniser output class', () => {
    const output = sessions.get(DEFAULT_OCR_MODELS.recognition)!.outputMetadata[0]!;
    expect(output.isTensor && output.shape[2]).toBe(dictionary.length);
    expect(dictionary.length).toBe(6625);
  });

  for (const sample of SAMPLES) {
    describe(sample.file, () => {
      let image: RgbaImage;
      let lines: OcrLine[];
      const calls: Call[] = [];

      beforeAll(async () => {
        image = readSample(sample.file);
        lines = await runOcr(image, { runModel: recordingRunModel(calls), dictionary });
      });

      it('reads every line exactly as rendered, in reading order', () => {
        const read = groupIntoLines(lines, (line) => line.box).map((line) =>
          line.map((part) => part.text),
        );
        expect(read).toEqual(sample.lines);
        expect(lines.map((line) => line.text)).toEqual(sample.lines.flat());
      });

      it('puts every ink pixel inside a box (to within a pixel), and every box inside the image', () => {
        const ink = inkPixels(image);
        expect(ink.length).toBeGreaterThan(500);
        // The detector's text region can stop short of a line-ending period, and the grown box
        // then ends inside the period's last pixel column (by 0.35 px on the paragraph); the
        // recogniser still reads it. A pixel of slack allows that and nothing more.
        const outside = ink.filter((p) => lines.every((line) => distanceOutside(line.box, p) > 1));
        expect(outside).toEqual([]);
        for (const line of lines) {
          for (const corner of line.box) {
            expect(corner.x).toBeGreaterThanOrEqual(0);
            expect(corner.x).toBeLessThanOrEqual(image.width);
            expect(corner.y).toBeGreaterThanOrEqual(0);
            expect(corner.y).toBeLessThanOrEqual(image.height);
          }
          expect(line.confidence).toBeGreaterThanOrEqual(0.5);
          expect(line.confidence).toBeLessThanOrEqual(1);
        }
      });

      it('runs detection once on a multiple-of-32 input, then recognition in batches of at most 6', () => {
        const [detection, ...recognition] = calls;
        expect(detection?.model).toBe(DEFAULT_OCR_MODELS.detection);
        const [n, c, h, w] = detection!.dims;
        expect([n, c, h! % 32, w! % 32]).toEqual([1, 3, 0, 0]);
        expect(recognition.length).toBe(Math.ceil(sample.lines.flat().length / 6));
        for (const call of recognition) {
          expect(call.model).toBe(DEFAULT_OCR_MODELS.recognition);
          expect(call.dims[0]).toBeLessThanOrEqual(6);
          expect(call.dims.slice(1, 3)).toEqual([3, 48]);
          expect(call.dims[3]).toBeGreaterThanOrEqual(320);
        }
      });
    });
  }
});
