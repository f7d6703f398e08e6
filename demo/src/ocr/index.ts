// The demo's OCR pipeline: PaddleOCR pre- and postprocessing in plain TypeScript, no DOM and no
// runtime dependency beyond @tandem/shared's types and error, so it runs in the page and in Node
// tests alike.

export { runOcr, DEFAULT_OCR_MODELS } from './ocr-pipeline.js';
export type { OcrLine, OcrOptions, RunModel } from './ocr-pipeline.js';
export { DICTIONARY_FILE, loadDictionary, parseDictionary } from './dictionary.js';
export type { LoadDictionaryOptions, OcrDictionary, ParseDictionaryOptions } from './dictionary.js';
export {
  DEFAULT_MAX_SIDE_LENGTH,
  DETECTION_MEAN,
  DETECTION_STD,
  detectionSize,
  preprocessForDetection,
} from './detection-preprocess.js';
export type { DetectionInput, DetectionPreprocessOptions } from './detection-preprocess.js';
export { dbPostprocess } from './db-postprocess.js';
export type { DbPostprocessOptions, DetectedBox } from './db-postprocess.js';
export {
  DEFAULT_RECOGNITION_MAX_WIDTH,
  RECOGNITION_HEIGHT,
  RECOGNITION_MIN_WIDTH,
  batchForRecognition,
  cropForRecognition,
} from './recognition-preprocess.js';
export type { RecognitionCrop, RecognitionPreprocessOptions } from './recognition-preprocess.js';
export { ctcGreedyDecode, decodeRecognition } from './ctc-decode.js';
export type { CtcResult } from './ctc-decode.js';
export { groupIntoLines, sortReadingOrder } from './reading-order.js';
export {
  convexHull,
  expandRect,
  mapQuad,
  minAreaRect,
  orderQuad,
  quadBounds,
  rectCorners,
} from './geometry.js';
export type { Point, Quad, RotatedRect } from './geometry.js';
export { assertRgbaImage, resampleRegion } from './rgba-image.js';
export type { RgbaImage } from './rgba-image.js';
