// Plane geometry for text boxes: points, quadrilaterals, the convex hull and the minimum-area
// rotated rectangle (what OpenCV's minAreaRect gives PaddleOCR), in plain arithmetic so it runs the
// same in a browser and in Node.

/** A point in pixel coordinates: x to the right, y down. */
export interface Point {
  /** Pixels to the right of the image's left edge. */
  readonly x: number;
  /** Pixels down from the image's top edge. */
  readonly y: number;
}

/**
 * A text box as four corners in the order PaddleOCR uses: top-left, top-right, bottom-right,
 * bottom-left (for a rotated box, "top-left" is the left pair's upper corner).
 */
export type Quad = readonly [Point, Point, Point, Point];

/** A rotated rectangle: its centre, the unit vector along its first side, and its side lengths. */
export interface RotatedRect {
  /** The rectangle's centre. */
  readonly center: Point;
  /** Unit vector along the side of length `width`; the other side runs along its normal. */
  readonly axis: Point;
  /** Length of the side along `axis`. */
  readonly width: number;
  /** Length of the side along the normal of `axis`. */
  readonly height: number;
}

const cross = (o: Point, a: Point, b: Point): number =>
  (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);

/** Whether the chain's last two points and `p` fail to turn left (so the last point goes). */
const turnsRight = (chain: readonly Point[], p: Point): boolean =>
  cross(chain[chain.length - 2] as Point, chain[chain.length - 1] as Point, p) <= 0;

/**
 * The convex hull of `points` in counter-clockwise order (Andrew's monotone chain), without
 * collinear points. Fewer than three distinct points come back as they are, deduplicated.
 */
export function convexHull(points: readonly Point[]): Point[] {
  const sorted = [...points].sort((a, b) => a.x - b.x || a.y - b.y);
  const unique = sorted.filter(
    (p, i) => i === 0 || p.x !== sorted[i - 1]?.x || p.y !== sorted[i - 1]?.y,
  );
  if (unique.length < 3) return unique;
  const lower: Point[] = [];
  for (const p of unique) {
    while (lower.length >= 2 && turnsRight(lower, p)) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = unique.length - 1; i >= 0; i--) {
    const p = unique[i] as Point;
    while (upper.length >= 2 && turnsRight(upper, p)) upper.pop();
    upper.push(p);
  }
  lower.pop();
  upper.pop();
  return lower.concat(upper);
}

/**
 * The rotated rectangle of least area that contains `points` (rotating calipers over the hull:
 * the best rectangle has a side on a hull edge). Degenerate inputs give zero-size rectangles:
 * one point gives 0×0, collinear points a 0-height rectangle along their line.
 */
export function minAreaRect(points: readonly Point[]): RotatedRect {
  const hull = convexHull(points);
  const first = hull[0];
  if (first === undefined)
    return { center: { x: 0, y: 0 }, axis: { x: 1, y: 0 }, width: 0, height: 0 };
  if (hull.length === 1) return { center: first, axis: { x: 1, y: 0 }, width: 0, height: 0 };
  let best: RotatedRect | undefined;
  let bestArea = Infinity;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i] as Point;
    const b = hull[(i + 1) % hull.length] as Point;
    const length = Math.hypot(b.x - a.x, b.y - a.y);
    if (length === 0) continue;
    const ux = (b.x - a.x) / length;
    const uy = (b.y - a.y) / length;
    let minU = Infinity;
    let maxU = -Infinity;
    let minV = Infinity;
    let maxV = -Infinity;
    for (const p of hull) {
      const u = (p.x - a.x) * ux + (p.y - a.y) * uy;
      const v = -(p.x - a.x) * uy + (p.y - a.y) * ux;
      if (u < minU) minU = u;
      if (u > maxU) maxU = u;
      if (v < minV) minV = v;
      if (v > maxV) maxV = v;
    }
    const area = (maxU - minU) * (maxV - minV);
    // Ties prefer the first edge found, which keeps axis-aligned inputs axis-aligned.
    if (area < bestArea - 1e-9) {
      bestArea = area;
      const cu = (minU + maxU) / 2;
      const cv = (minV + maxV) / 2;
      best = {
        center: { x: a.x + cu * ux - cv * uy, y: a.y + cu * uy + cv * ux },
        axis: { x: ux, y: uy },
        width: maxU - minU,
        height: maxV - minV,
      };
    }
  }
  return best ?? { center: first, axis: { x: 1, y: 0 }, width: 0, height: 0 };
}

/** The rectangle grown by `distance` on every side (its width and height by twice that). */
export function expandRect(rect: RotatedRect, distance: number): RotatedRect {
  return { ...rect, width: rect.width + 2 * distance, height: rect.height + 2 * distance };
}

/** The rectangle's corners as a {@link Quad} in PaddleOCR's corner order ({@link orderQuad}). */
export function rectCorners(rect: RotatedRect): Quad {
  const { center, axis } = rect;
  const hx = rect.width / 2;
  const hy = rect.height / 2;
  const corner = (su: number, sv: number): Point => ({
    x: center.x + su * hx * axis.x - sv * hy * axis.y,
    y: center.y + su * hx * axis.y + sv * hy * axis.x,
  });
  return orderQuad([corner(-1, -1), corner(1, -1), corner(1, 1), corner(-1, 1)]);
}

/**
 * Orders four corners as PaddleOCR's get_mini_boxes does: the two with the smallest x are the left
 * pair, the upper of them top-left and the lower bottom-left; the other two likewise on the right.
 */
export function orderQuad(points: readonly [Point, Point, Point, Point]): Quad {
  const byX = [...points].sort((a, b) => a.x - b.x || a.y - b.y);
  const [l1, l2, r1, r2] = byX as [Point, Point, Point, Point];
  const [topLeft, bottomLeft] = l1.y <= l2.y ? [l1, l2] : [l2, l1];
  const [topRight, bottomRight] = r1.y <= r2.y ? [r1, r2] : [r2, r1];
  return [topLeft, topRight, bottomRight, bottomLeft];
}

/** The quad with `transform` applied to each corner, in the same order. */
export function mapQuad(quad: Quad, transform: (point: Point) => Point): Quad {
  return [transform(quad[0]), transform(quad[1]), transform(quad[2]), transform(quad[3])];
}

/** The quad's axis-aligned bounds. */
export function quadBounds(quad: Quad): {
  left: number;
  top: number;
  right: number;
  bottom: number;
} {
  const xs = quad.map((p) => p.x);
  const ys = quad.map((p) => p.y);
  return {
    left: Math.min(...xs),
    top: Math.min(...ys),
    right: Math.max(...xs),
    bottom: Math.max(...ys),
  };
}
