// Reading order for detected boxes: lines top to bottom, boxes left to right within a line.
// PaddleOCR's sorted_boxes treats boxes within 10 px vertically as one line; a fixed pixel count
// fails for both tiny and huge text, so here two boxes share a line when each one's vertical
// centre lies within the other's vertical extent.

import { quadBounds, type Quad } from './geometry.js';

interface Placed<T> {
  readonly item: T;
  readonly top: number;
  readonly bottom: number;
  readonly centerY: number;
  readonly left: number;
}

/**
 * Groups items into visual lines: lines in top-to-bottom order, each line's items left to right.
 * An item joins the line whose first item it overlaps as described in the module notes.
 */
export function groupIntoLines<T>(items: readonly T[], boxOf: (item: T) => Quad): T[][] {
  const placed: Placed<T>[] = items.map((item) => {
    const { left, top, bottom } = quadBounds(boxOf(item));
    return { item, top, bottom, centerY: (top + bottom) / 2, left };
  });
  placed.sort((a, b) => a.centerY - b.centerY || a.left - b.left);
  const lines: Placed<T>[][] = [];
  for (const box of placed) {
    const line = lines.find((candidate) => {
      const first = candidate[0];
      return (
        first !== undefined &&
        box.centerY >= first.top &&
        box.centerY <= first.bottom &&
        first.centerY >= box.top &&
        first.centerY <= box.bottom
      );
    });
    if (line === undefined) lines.push([box]);
    else line.push(box);
  }
  return lines.map((line) => line.sort((a, b) => a.left - b.left).map((box) => box.item));
}

/** Items in reading order: {@link groupIntoLines}, flattened. */
export function sortReadingOrder<T>(items: readonly T[], boxOf: (item: T) => Quad): T[] {
  return groupIntoLines(items, boxOf).flat();
}
