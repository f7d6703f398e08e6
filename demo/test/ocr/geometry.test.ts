// Hull and minimum-area rectangle: exact on known shapes, and as properties on random point sets
// (the rectangle holds every point and is never larger than the axis-aligned bounding box).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  convexHull,
  expandRect,
  mapQuad,
  minAreaRect,
  orderQuad,
  quadBounds,
  rectCorners,
  type Point,
} from '../../src/ocr/index.js';

const pt = (x: number, y: number): Point => ({ x, y });

describe('convexHull', () => {
  it('keeps the corners of a square and drops inner and collinear points', () => {
    const hull = convexHull([pt(0, 0), pt(2, 0), pt(4, 0), pt(4, 4), pt(0, 4), pt(2, 2), pt(0, 0)]);
    expect(hull).toEqual([pt(0, 0), pt(4, 0), pt(4, 4), pt(0, 4)]);
  });
});

describe('minAreaRect', () => {
  it('finds a rectangle rotated by 30°', () => {
    const angle = Math.PI / 6;
    const [ux, uy] = [Math.cos(angle), Math.sin(angle)];
    const corners = [
      [0, 0],
      [10, 0],
      [10, 4],
      [0, 4],
    ].map(([u, v]) => pt(5 + u! * ux - v! * uy, 7 + u! * uy + v! * ux));
    const rect = minAreaRect([...corners, pt(5 + 5 * ux - 2 * uy, 7 + 5 * uy + 2 * ux)]);
    expect(rect.width * rect.height).toBeCloseTo(40, 6);
    expect(Math.max(rect.width, rect.height)).toBeCloseTo(10, 6);
    expect(rect.center.x).toBeCloseTo(5 + 5 * ux - 2 * uy, 6);
    expect(rect.center.y).toBeCloseTo(7 + 5 * uy + 2 * ux, 6);
  });

  it('gives zero size for one point and zero height for collinear points', () => {
    expect(minAreaRect([pt(3, 3)])).toMatchObject({ width: 0, height: 0 });
    const line = minAreaRect([pt(0, 0), pt(5, 0), pt(9, 0)]);
    expect(Math.min(line.width, line.height)).toBe(0);
    expect(Math.max(line.width, line.height)).toBe(9);
  });

  it('contains every point and is no larger than the bounding box (random point sets)', () => {
    const point = fc.record({
      x: fc.integer({ min: -50, max: 50 }),
      y: fc.integer({ min: -50, max: 50 }),
    });
    fc.assert(
      fc.property(fc.array(point, { minLength: 3, maxLength: 40 }), (points) => {
        const rect = minAreaRect(points);
        const xs = points.map((p) => p.x);
        const ys = points.map((p) => p.y);
        const boxArea = (Math.max(...xs) - Math.min(...xs)) * (Math.max(...ys) - Math.min(...ys));
        expect(rect.width * rect.height).toBeLessThanOrEqual(boxArea + 1e-6);
        for (const p of points) {
          const dx = p.x - rect.center.x;
          const dy = p.y - rect.center.y;
          expect(Math.abs(dx * rect.axis.x + dy * rect.axis.y)).toBeLessThanOrEqual(
            rect.width / 2 + 1e-6,
          );
          expect(Math.abs(-dx * rect.axis.y + dy * rect.axis.x)).toBeLessThanOrEqual(
            rect.height / 2 + 1e-6,
          );
        }
      }),
    );
  });
});

describe('rectangles and quads', () => {
  it('grows a rectangle on every side and lists its corners top-left first, clockwise', () => {
    const rect = expandRect({ center: pt(10, 5), axis: { x: 1, y: 0 }, width: 8, height: 2 }, 1);
    expect(rectCorners(rect)).toEqual([pt(5, 3), pt(15, 3), pt(15, 7), pt(5, 7)]);
  });

  it('orders corners given in any order', () => {
    expect(orderQuad([pt(9, 9), pt(0, 1), pt(10, 0), pt(1, 10)])).toEqual([
      pt(0, 1),
      pt(10, 0),
      pt(9, 9),
      pt(1, 10),
    ]);
  });

  it('maps corners and measures bounds', () => {
    const quad = mapQuad([pt(0, 1), pt(10, 0), pt(9, 9), pt(1, 10)], (p) => pt(p.x * 2, p.y));
    expect(quadBounds(quad)).toEqual({ left: 0, top: 0, right: 20, bottom: 10 });
  });
});
