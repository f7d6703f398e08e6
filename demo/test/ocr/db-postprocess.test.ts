// DB postprocessing on small hand-made probability maps: one box per region, grown by the unclip
// distance, scaled to the image, weak and tiny regions dropped, reading order, rotated text.

import { describe, expect, it } from 'vitest';
import type { Tensor } from '@tandem/shared';
import { errorCode } from '@tandem/test-support';
import { dbPostprocess, quadBounds, type Quad } from '../../src/ocr/index.js';

/** A W×H map of zeros with the given rectangles (inclusive pixel ranges) set to `p`. */
function map(
  width: number,
  height: number,
  blobs: readonly { x0: number; x1: number; y0: number; y1: number; p: number }[],
): Tensor<'float32'> {
  const data = new Float32Array(width * height);
  for (const { x0, x1, y0, y1, p } of blobs) {
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) data[y * width + x] = p;
  }
  return { dtype: 'float32', dims: [1, 1, height, width], data };
}

function expectQuadClose(actual: Quad, expected: readonly (readonly [number, number])[]): void {
  actual.forEach((p, i) => {
    expect(p.x).toBeCloseTo(expected[i]![0], 6);
    expect(p.y).toBeCloseTo(expected[i]![1], 6);
  });
}

describe('dbPostprocess', () => {
  it('turns one region into its rectangle grown by area × ratio / perimeter, scaled to the image', () => {
    // Pixels x 20..59, y 10..14: their centres span a 39 × 4 rectangle from (20.5, 10.5).
    const boxes = dbPostprocess(map(96, 32, [{ x0: 20, x1: 59, y0: 10, y1: 14, p: 0.9 }]), 192, 64);
    expect(boxes).toHaveLength(1);
    const d = (39 * 4 * 2) / (2 * (39 + 4)); // unclip ratio 2
    const [left, right, top, bottom] = [20.5 - d, 59.5 + d, 10.5 - d, 14.5 + d].map(
      (v) => v * 2,
    ) as [number, number, number, number];
    expectQuadClose(boxes[0]!.box, [
      [left, top],
      [right, top],
      [right, bottom],
      [left, bottom],
    ]);
    expect(boxes[0]!.score).toBeCloseTo(0.9, 6);
  });

  it('uses the given unclip ratio', () => {
    const boxes = dbPostprocess(map(96, 32, [{ x0: 20, x1: 59, y0: 10, y1: 14, p: 0.9 }]), 96, 32, {
      unclipRatio: 1.5,
    });
    const d = (39 * 4 * 1.5) / (2 * (39 + 4));
    expect(quadBounds(boxes[0]!.box).left).toBeCloseTo(20.5 - d, 6);
  });

  it('drops regions whose mean probability is under boxThreshold, and those below minSize', () => {
    const probs = map(64, 32, [
      { x0: 4, x1: 30, y0: 4, y1: 10, p: 0.5 }, // above threshold 0.3, under box threshold 0.6
      { x0: 40, x1: 41, y0: 4, y1: 30, p: 0.99 }, // 1 point wide as points: thinner than 3
      { x0: 4, x1: 30, y0: 20, y1: 26, p: 0.95 },
    ]);
    const boxes = dbPostprocess(probs, 64, 32);
    expect(boxes.map((b) => (quadBounds(b.box).top + quadBounds(b.box).bottom) / 2)).toEqual([
      23.5,
    ]);
    expect(dbPostprocess(probs, 64, 32, { boxThreshold: 0.4 })).toHaveLength(2);
  });

  it('ignores pixels at or under the threshold', () => {
    expect(dbPostprocess(map(32, 32, [{ x0: 2, x1: 28, y0: 2, y1: 12, p: 0.3 }]), 32, 32)).toEqual(
      [],
    );
  });

  it('joins diagonal neighbours into one region (8-connectivity)', () => {
    const probs = map(64, 32, [
      { x0: 4, x1: 20, y0: 4, y1: 10, p: 0.9 },
      { x0: 21, x1: 40, y0: 11, y1: 17, p: 0.9 },
    ]);
    // The L-shaped region's rectangle is half empty, so no box threshold here.
    expect(dbPostprocess(probs, 64, 32, { boxThreshold: 0 })).toHaveLength(1);
  });

  it('returns boxes in reading order: lines top to bottom, left to right within a line', () => {
    const probs = map(128, 64, [
      { x0: 70, x1: 120, y0: 6, y1: 12, p: 0.9 }, // line 1, right (starts a pixel higher)
      { x0: 12, x1: 50, y0: 7, y1: 13, p: 0.9 }, // line 1, left
      { x0: 12, x1: 60, y0: 40, y1: 48, p: 0.9 }, // line 3
      { x0: 90, x1: 120, y0: 24, y1: 30, p: 0.9 }, // between them, on its own line
    ]);
    const centres = dbPostprocess(probs, 128, 64).map((b) => {
      const { left, top, right, bottom } = quadBounds(b.box);
      return [(left + right) / 2, (top + bottom) / 2];
    });
    expect(centres).toEqual([
      [31.5, 10.5],
      [95.5, 9.5],
      [105.5, 27.5],
      [36.5, 44.5],
    ]);
  });

  it('gives a rotated box for slanted text, corners ordered as PaddleOCR orders them', () => {
    // A band rising 1 pixel every 4 to the right: about 14° from the horizontal.
    const width = 120;
    const height = 60;
    const data = new Float32Array(width * height);
    for (let x = 10; x < 110; x++) {
      const centre = 40 - (x - 10) / 4;
      for (let y = Math.round(centre) - 3; y <= Math.round(centre) + 3; y++) {
        data[y * width + x] = 0.95;
      }
    }
    const boxes = dbPostprocess({ dtype: 'float32', dims: [1, 1, height, width], data }, 120, 60);
    expect(boxes).toHaveLength(1);
    const [tl, tr, br, bl] = boxes[0]!.box;
    const angle = (Math.atan2(tl.y - tr.y, tr.x - tl.x) * 180) / Math.PI;
    expect(angle).toBeGreaterThan(12);
    expect(angle).toBeLessThan(16);
    expect(tl.x).toBeLessThan(tr.x);
    expect(bl.x).toBeLessThan(br.x);
    expect(tl.y).toBeLessThan(bl.y);
    expect(tr.y).toBeLessThan(br.y);
  });

  it('keeps boxes inside the image', () => {
    const boxes = dbPostprocess(map(64, 32, [{ x0: 0, x1: 63, y0: 0, y1: 8, p: 0.9 }]), 640, 320);
    const bounds = quadBounds(boxes[0]!.box);
    expect([bounds.left, bounds.top]).toEqual([0, 0]);
    expect(bounds.right).toBe(640);
  });

  it('stops after maxCandidates regions', () => {
    const blobs = [0, 1, 2].map((i) => ({
      x0: 4,
      x1: 40,
      y0: 4 + i * 12,
      y1: 10 + i * 12,
      p: 0.9,
    }));
    expect(dbPostprocess(map(64, 48, blobs), 64, 48, { maxCandidates: 2 })).toHaveLength(2);
  });

  it('refuses a map that is not float32 [1, 1, H, W]', () => {
    const wrong = { dtype: 'float32', dims: [1, 2, 4, 4], data: new Float32Array(32) } as const;
    expect(errorCode(() => dbPostprocess(wrong, 4, 4))).toBe('E_INVALID_ARGUMENT');
    const short = { dtype: 'float32', dims: [1, 1, 4, 4], data: new Float32Array(15) } as const;
    expect(errorCode(() => dbPostprocess(short, 4, 4))).toBe('E_INVALID_ARGUMENT');
  });
});
