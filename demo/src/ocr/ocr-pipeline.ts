// The OCR pipeline: detection → boxes → recognition → text, with the models behind a `runModel`
// function so the caller decides where each runs (the demo: detection in the browser and
// recognition on the server through a Tandem client; the tests: onnxruntime-node directly).

import { TandemError, type Tensor, type TensorMap } from '@tandem/shared';
import { dbPostprocess, type DbPostprocessOptions } from './db-postprocess.js';
import { decodeRecognition } from './ctc-decode.js';
import { preprocessForDetection } from './detection-preprocess.js';
import type { OcrDictionary } from './dictionary.js';
import type { Quad } from './geometry.js';
import {
  batchForRecognition,
  cropForRecognition,
  type RecognitionCrop,
} from './recognition-preprocess.js';
import { assertRgbaImage, type RgbaImage } from './rgba-image.js';

/** Runs a model by name on named inputs; both PaddleOCR models take one input `x`. */
export type RunModel = (model: string, inputs: TensorMap) => Promise<TensorMap>;

/** Options for {@link runOcr}. */
export interface OcrOptions {
  /** Runs the detection and recognition models wherever the caller wants them run. */
  readonly runModel: RunModel;
  /** The recogniser's classes, from {@link parseDictionary} or {@link loadDictionary}. */
  readonly dictionary: OcrDictionary;
  /** Name passed to `runModel` for detection. @default 'paddleocr-det' */
  readonly detectionModel?: string;
  /** Name passed to `runModel` for recognition. @default 'paddleocr-rec' */
  readonly recognitionModel?: string;
  /** Longest side of the detector's input in pixels. @default 960 */
  readonly maxSideLength?: number;
  /** Box-finding settings; see {@link DbPostprocessOptions} for the defaults. */
  readonly detection?: DbPostprocessOptions;
  /** Widest recognition crop in pixels (height 48). @default 1600 */
  readonly maxRecognitionWidth?: number;
  /** Boxes per recognition run. @default 6 (PaddleOCR's rec_batch_num) */
  readonly recognitionBatchSize?: number;
  /** Lines recognised with less confidence are left out. @default 0.5 (PaddleOCR's drop_score) */
  readonly minConfidence?: number;
  /** Stops between model runs with `E_CANCELLED`; the runModel calls may take it too. */
  readonly signal?: AbortSignal;
}

/** One recognised line of text. */
export interface OcrLine {
  /** Where the text is, in the input image's pixel coordinates. */
  readonly box: Quad;
  /** The recognised text, spaces included where the recogniser saw them. */
  readonly text: string;
  /** Mean probability of the recognised characters, 0..1. */
  readonly confidence: number;
  /** The detector's mean text probability inside the box (before growing), 0..1. */
  readonly detectionScore: number;
}

/** The model names the server's built-in catalog serves PaddleOCR under. */
export const DEFAULT_OCR_MODELS = {
  detection: 'paddleocr-det',
  recognition: 'paddleocr-rec',
} as const;

/**
 * Finds and reads the text in an image. Lines come in reading order (top to bottom, then left to
 * right) with their boxes in image coordinates; lines that read as nothing or below
 * `minConfidence` are left out.
 *
 * Recognition batches are sent together: crops sorted by width share a batch (as in PaddleOCR, so
 * little padding is wasted), and all batches go to `runModel` at once, so a remote runner can
 * queue them while the first one runs.
 */
export async function runOcr(image: RgbaImage, options: OcrOptions): Promise<OcrLine[]> {
  assertRgbaImage(image);
  const batchSize = options.recognitionBatchSize ?? 6;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `recognitionBatchSize must be a positive integer, got ${batchSize}`,
    );
  }
  const detectionModel = options.detectionModel ?? DEFAULT_OCR_MODELS.detection;
  const recognitionModel = options.recognitionModel ?? DEFAULT_OCR_MODELS.recognition;
  const checkAborted = (): void => {
    if (options.signal?.aborted === true) throw new TandemError('E_CANCELLED', 'OCR was cancelled');
  };

  checkAborted();
  const detectionInput = preprocessForDetection(
    image,
    options.maxSideLength === undefined ? {} : { maxSideLength: options.maxSideLength },
  );
  const detectionOutputs = await options.runModel(detectionModel, { x: detectionInput.tensor });
  checkAborted();
  const map = onlyOutput(detectionOutputs, detectionModel);
  const boxes = dbPostprocess(map, image.width, image.height, options.detection);
  if (boxes.length === 0) return [];

  const cropOptions =
    options.maxRecognitionWidth === undefined ? {} : { maxWidth: options.maxRecognitionWidth };
  const crops = boxes.map((detected) => cropForRecognition(image, detected.box, cropOptions));
  const order = crops
    .map((_, index) => index)
    .sort((a, b) => widthOf(crops, a) - widthOf(crops, b));
  const batches: number[][] = [];
  for (let start = 0; start < order.length; start += batchSize) {
    batches.push(order.slice(start, start + batchSize));
  }
  const decoded = await Promise.all(
    batches.map(async (indices) => {
      const tensor = batchForRecognition(indices.map((index) => crops[index] as RecognitionCrop));
      const outputs = await options.runModel(recognitionModel, { x: tensor });
      const results = decodeRecognition(onlyOutput(outputs, recognitionModel), options.dictionary);
      if (results.length !== indices.length) {
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          `${recognitionModel} answered ${results.length} results for ${indices.length} crops`,
        );
      }
      return indices.map((index, i) => ({ index, result: results[i] }));
    }),
  );
  checkAborted();

  const texts = new Map(decoded.flat().map((entry) => [entry.index, entry.result]));
  const minConfidence = options.minConfidence ?? 0.5;
  const lines: OcrLine[] = [];
  boxes.forEach((detected, index) => {
    const result = texts.get(index);
    if (result === undefined || result.text.trim() === '' || result.confidence < minConfidence)
      return;
    lines.push({
      box: detected.box,
      text: result.text,
      confidence: result.confidence,
      detectionScore: detected.score,
    });
  });
  return lines;
}

const widthOf = (crops: readonly RecognitionCrop[], index: number): number =>
  (crops[index] as RecognitionCrop).width;

/** The one tensor a PaddleOCR model returns; `E_OUTPUT_NOT_FOUND` when there is not exactly one. */
function onlyOutput(outputs: TensorMap, model: string): Tensor {
  const values = Object.values(outputs);
  const [first] = values;
  if (values.length !== 1 || first === undefined) {
    throw new TandemError(
      'E_OUTPUT_NOT_FOUND',
      `${model} should return one output, got ${values.length} (${Object.keys(outputs).join(', ')})`,
    );
  }
  return first;
}
