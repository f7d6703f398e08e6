// CTC greedy decoding of the recogniser's output, as PaddleOCR's CTCLabelDecode: the most likely
// class at each time step, repeats collapsed, blanks (class 0) dropped; the confidence is the mean
// probability of the kept steps.

import { TandemError, type Tensor } from '@tandem/shared';
import type { OcrDictionary } from './dictionary.js';

/** A decoded line: its text and the mean probability of its characters (0 when empty). */
export interface CtcResult {
  readonly text: string;
  readonly confidence: number;
}

/**
 * Decodes one sequence: `steps` rows of `dictionary.length` class probabilities each, starting at
 * `offset` in `probs`.
 */
export function ctcGreedyDecode(
  probs: Float32Array,
  steps: number,
  dictionary: OcrDictionary,
  offset = 0,
): CtcResult {
  const classes = dictionary.length;
  let text = '';
  let sum = 0;
  let kept = 0;
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    const row = offset + t * classes;
    let best = 0;
    let bestProb = probs[row] as number;
    for (let c = 1; c < classes; c++) {
      const p = probs[row + c] as number;
      if (p > bestProb) {
        bestProb = p;
        best = c;
      }
    }
    if (best !== 0 && best !== previous) {
      text += dictionary[best] ?? '';
      sum += bestProb;
      kept++;
    }
    previous = best;
  }
  return { text, confidence: kept === 0 ? 0 : sum / kept };
}

/**
 * Decodes a recogniser output, float32 [N, T, C] with C = `dictionary.length`, into N results.
 * Throws `E_INVALID_ARGUMENT` when the shape does not fit, in particular when the dictionary is
 * not the one the model was trained with (its class count differs).
 */
export function decodeRecognition(output: Tensor, dictionary: OcrDictionary): CtcResult[] {
  const [batch, steps, classes] = output.dims;
  if (
    output.dtype !== 'float32' ||
    output.dims.length !== 3 ||
    batch === undefined ||
    steps === undefined ||
    classes === undefined ||
    output.data.length !== batch * steps * classes
  ) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `The recognition output must be float32 [N, T, C], got ${output.dtype} [${output.dims.join(', ')}]`,
    );
  }
  if (classes !== dictionary.length) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `The recogniser has ${classes} classes but the dictionary gives ${dictionary.length}`,
    );
  }
  const results: CtcResult[] = [];
  for (let n = 0; n < batch; n++) {
    results.push(ctcGreedyDecode(output.data, steps, dictionary, n * steps * classes));
  }
  return results;
}
