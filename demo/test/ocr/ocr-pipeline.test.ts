// The pipeline's plumbing with stand-in models: what it asks runModel for, how boxes and texts
// come back together across batches, filtering, cancellation and malformed model answers. The
// stand-in recogniser "reads" each crop's width, so a text landing on the wrong box shows.

import { describe, expect, it } from 'vitest';
import type { Tensor, TensorMap } from '@tandem/shared';
import { rejectionCode } from '@tandem/test-support';
import {
  parseDictionary,
  quadBounds,
  runOcr,
  type Quad,
  type RgbaImage,
  type RunModel,
} from '../../src/ocr/index.js';

// Classes: blank, the digits, space.
const dictionary = parseDictionary('0\n1\n2\n3\n4\n5\n6\n7\n8\n9');

/** A white 200×100 image: its detector input is 192×96. */
const image: RgbaImage = {
  width: 200,
  height: 100,
  data: new Uint8ClampedArray(200 * 100 * 4).fill(255),
};

interface Blob {
  readonly x0: number;
  readonly x1: number;
  readonly y0: number;
  readonly y1: number;
}

// Three text regions in detector-map pixels, of different widths: two on one line, one below.
const BLOBS: readonly Blob[] = [
  { x0: 100, x1: 180, y0: 20, y1: 30 },
  { x0: 10, x1: 50, y0: 21, y1: 29 },
  { x0: 10, x1: 150, y0: 60, y1: 72 },
];

interface Call {
  readonly model: string;
  readonly dims: readonly number[];
}

interface StandInOptions {
  readonly blobs?: readonly Blob[];
  /** The probability the recogniser gives each character. @default 0.9 */
  readonly charProbability?: number;
  readonly extraOutput?: boolean;
}

/**
 * Stand-in models: detection marks BLOBS on a map of its input's size; recognition spells out the
 * width of each crop in the batch (its non-zero columns; padding is exactly 0, white is 1).
 */
function standIn(calls: Call[], options: StandInOptions = {}): RunModel {
  return async (model, inputs): Promise<TensorMap> => {
    const x = inputs.x;
    if (x?.dtype !== 'float32') throw new Error('x must be float32');
    calls.push({ model, dims: x.dims });
    const extra: TensorMap = options.extraOutput === true ? { other: x } : {};
    if (model.includes('det')) {
      const [, , height = 0, width = 0] = x.dims;
      const data = new Float32Array(width * height);
      for (const { x0, x1, y0, y1 } of options.blobs ?? BLOBS) {
        for (let y = y0; y <= y1; y++) for (let xx = x0; xx <= x1; xx++) data[y * width + xx] = 0.9;
      }
      return { map: { dtype: 'float32', dims: [1, 1, height, width], data }, ...extra };
    }
    const [batch = 0, , rows = 0, width = 0] = x.dims;
    const texts = Array.from({ length: batch }, (_, n) => {
      let used = 0;
      while (used < width && x.data[n * 3 * rows * width + used] !== 0) used++;
      return String(used);
    });
    const steps = 2 * Math.max(...texts.map((t) => t.length));
    const classes = dictionary.length;
    const p = options.charProbability ?? 0.9;
    const data = new Float32Array(batch * steps * classes);
    texts.forEach((text, n) => {
      for (let t = 0; t < steps; t++) {
        // Characters on even steps, blanks between them so repeated digits survive.
        const char = t % 2 === 0 ? text[t / 2] : undefined;
        const cls = char === undefined ? 0 : dictionary.indexOf(char);
        for (let c = 0; c < classes; c++) {
          data[(n * steps + t) * classes + c] = c === cls ? p : (1 - p) / (classes - 1);
        }
      }
    });
    const output: Tensor = { dtype: 'float32', dims: [batch, steps, classes], data };
    return { y: output, ...extra };
  };
}

/** The crop width the pipeline computes for a box (height 48, aspect kept). */
const expectedWidth = (box: Quad): number => {
  const { left, top, right, bottom } = quadBounds(box);
  return Math.ceil((48 * (right - left)) / (bottom - top));
};

describe('runOcr with stand-in models', () => {
  it('detects once, recognises in batches, and gives each box its own text in reading order', async () => {
    const calls: Call[] = [];
    const lines = await runOcr(image, {
      runModel: standIn(calls),
      dictionary,
      recognitionBatchSize: 2,
    });
    expect(calls.map((c) => c.model)).toEqual(['paddleocr-det', 'paddleocr-rec', 'paddleocr-rec']);
    expect(calls[0]!.dims).toEqual([1, 3, 96, 192]);
    expect(calls.slice(1).map((c) => c.dims[0])).toEqual([2, 1]);
    expect(lines).toHaveLength(3);
    // Reading order: the left box of the first line, the right one, then the line below.
    const lefts = lines.map((line) => quadBounds(line.box).left);
    expect(lefts[0]).toBeLessThan(lefts[1]!);
    expect(quadBounds(lines[2]!.box).top).toBeGreaterThan(quadBounds(lines[1]!.box).bottom);
    for (const line of lines) {
      expect(line.text).toBe(String(expectedWidth(line.box)));
      expect(line.confidence).toBeCloseTo(0.9, 5);
      expect(line.detectionScore).toBeCloseTo(0.9, 5);
    }
    expect(new Set(lines.map((line) => line.text)).size).toBe(3);
  });

  it('passes the model names it is given', async () => {
    const calls: Call[] = [];
    await runOcr(image, {
      runModel: standIn(calls),
      dictionary,
      detectionModel: 'my-det',
      recognitionModel: 'my-rec',
    });
    expect(calls.map((c) => c.model)).toEqual(['my-det', 'my-rec']);
  });

  it('leaves out lines under minConfidence', async () => {
    const runModel = standIn([], { charProbability: 0.4 });
    expect(await runOcr(image, { runModel, dictionary })).toEqual([]);
    expect(await runOcr(image, { runModel, dictionary, minConfidence: 0.3 })).toHaveLength(3);
  });

  it('returns no lines and runs no recognition when nothing is detected', async () => {
    const calls: Call[] = [];
    expect(await runOcr(image, { runModel: standIn(calls, { blobs: [] }), dictionary })).toEqual(
      [],
    );
    expect(calls.map((c) => c.model)).toEqual(['paddleocr-det']);
  });

  it('stops with E_CANCELLED before any model runs when the signal is aborted', async () => {
    const calls: Call[] = [];
    const controller = new AbortController();
    controller.abort();
    const run = runOcr(image, { runModel: standIn(calls), dictionary, signal: controller.signal });
    expect(await rejectionCode(run)).toBe('E_CANCELLED');
    expect(calls).toEqual([]);
  });

  it('refuses a model answer with more than one output, and a bad image or batch size', async () => {
    const twoOutputs = standIn([], { extraOutput: true });
    expect(await rejectionCode(runOcr(image, { runModel: twoOutputs, dictionary }))).toBe(
      'E_OUTPUT_NOT_FOUND',
    );
    const runModel = standIn([]);
    const bad = { width: 3, height: 3, data: new Uint8ClampedArray(4) };
    expect(await rejectionCode(runOcr(bad, { runModel, dictionary }))).toBe('E_INVALID_ARGUMENT');
    expect(
      await rejectionCode(runOcr(image, { runModel, dictionary, recognitionBatchSize: 0 })),
    ).toBe('E_INVALID_ARGUMENT');
  });
});
