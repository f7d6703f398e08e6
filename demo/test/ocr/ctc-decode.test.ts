// CTC greedy decoding on hand-made probability rows: collapse repeats, drop blanks, mean confidence.

import { describe, expect, it } from 'vitest';
import { errorCode } from '@tandem/test-support';
import { ctcGreedyDecode, decodeRecognition, parseDictionary } from '../../src/ocr/index.js';

// Classes: 0 blank, 1 'a', 2 'b', 3 'c', 4 ' ' (the space PaddleOCR appends).
const dictionary = parseDictionary('a\nb\nc');

/** One probability row per step: the winning class gets `p`, the rest share what is left. */
function rows(steps: readonly (readonly [cls: number, p: number])[]): Float32Array {
  const classes = dictionary.length;
  const data = new Float32Array(steps.length * classes);
  steps.forEach(([cls, p], t) => {
    for (let c = 0; c < classes; c++)
      data[t * classes + c] = c === cls ? p : (1 - p) / (classes - 1);
  });
  return data;
}

describe('ctcGreedyDecode', () => {
  it('collapses repeats, drops blanks, keeps a repeat split by a blank', () => {
    const probs = rows([
      [1, 0.9],
      [1, 0.8],
      [0, 0.99],
      [1, 0.7],
      [2, 0.6],
      [2, 0.9],
      [4, 0.5],
      [3, 0.95],
      [0, 0.9],
    ]);
    const result = ctcGreedyDecode(probs, 9, dictionary);
    expect(result.text).toBe('aab c');
    // The first step of each kept run counts: 0.9, 0.7, 0.6, 0.5, 0.95.
    expect(result.confidence).toBeCloseTo((0.9 + 0.7 + 0.6 + 0.5 + 0.95) / 5, 6);
  });

  it('gives an empty text with confidence 0 for all blanks', () => {
    expect(
      ctcGreedyDecode(
        rows([
          [0, 0.9],
          [0, 0.8],
        ]),
        2,
        dictionary,
      ),
    ).toEqual({
      text: '',
      confidence: 0,
    });
  });

  it('reads from an offset', () => {
    const probs = rows([
      [1, 0.9],
      [2, 0.9],
      [3, 0.9],
    ]);
    expect(ctcGreedyDecode(probs, 2, dictionary, dictionary.length).text).toBe('bc');
  });
});

describe('decodeRecognition', () => {
  it('decodes each sequence of an [N, T, C] output', () => {
    const data = new Float32Array([
      ...rows([
        [1, 0.9],
        [0, 0.9],
      ]),
      ...rows([
        [3, 0.8],
        [2, 0.7],
      ]),
    ]);
    const results = decodeRecognition(
      { dtype: 'float32', dims: [2, 2, dictionary.length], data },
      dictionary,
    );
    expect(results.map((r) => r.text)).toEqual(['a', 'cb']);
    expect(results[1]!.confidence).toBeCloseTo(0.75, 6);
  });

  it('refuses a dictionary whose size is not the class count, and a wrong shape', () => {
    const sixClasses = new Float32Array(2 * 6);
    expect(
      errorCode(() =>
        decodeRecognition({ dtype: 'float32', dims: [1, 2, 6], data: sixClasses }, dictionary),
      ),
    ).toBe('E_INVALID_ARGUMENT');
    const rankTwo = new Float32Array(2 * dictionary.length);
    expect(
      errorCode(() =>
        decodeRecognition(
          { dtype: 'float32', dims: [2, dictionary.length], data: rankTwo },
          dictionary,
        ),
      ),
    ).toBe('E_INVALID_ARGUMENT');
  });
});
