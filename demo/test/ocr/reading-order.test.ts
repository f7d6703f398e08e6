// Reading order: lines by vertical overlap, whatever the text size, left to right within a line.

import { describe, expect, it } from 'vitest';
import { groupIntoLines, sortReadingOrder, type Quad } from '../../src/ocr/index.js';

interface Word {
  readonly text: string;
  readonly box: Quad;
}

const word = (text: string, left: number, top: number, width: number, height: number): Word => ({
  text,
  box: [
    { x: left, y: top },
    { x: left + width, y: top },
    { x: left + width, y: top + height },
    { x: left, y: top + height },
  ],
});

describe('groupIntoLines', () => {
  it('groups boxes whose vertical centres fall inside each other, then sorts each line by x', () => {
    const words = [
      word('world', 120, 12, 80, 20),
      word('second', 10, 40, 90, 20),
      word('hello', 10, 10, 90, 22),
      word('line', 110, 44, 60, 18),
    ];
    const lines = groupIntoLines(words, (w) => w.box).map((line) => line.map((w) => w.text));
    expect(lines).toEqual([
      ['hello', 'world'],
      ['second', 'line'],
    ]);
  });

  it('keeps a big heading apart from small lines beside it whose centres miss it', () => {
    const words = [word('HEADING', 10, 0, 200, 100), word('note', 220, 0, 40, 12)];
    // The note's centre (6) lies inside the heading, but the heading's centre (50) misses the note.
    expect(groupIntoLines(words, (w) => w.box).map((line) => line.map((w) => w.text))).toEqual([
      ['note'],
      ['HEADING'],
    ]);
  });

  it('flattens lines for sortReadingOrder', () => {
    const words = [word('b', 50, 0, 10, 10), word('c', 0, 30, 10, 10), word('a', 0, 1, 10, 10)];
    expect(sortReadingOrder(words, (w) => w.box).map((w) => w.text)).toEqual(['a', 'b', 'c']);
  });
});
