// Synthetic ONNX models for tests and benchmarks, from a few hundred bytes to hundreds of
// megabytes. Each builder returns the model bytes together with the constants it baked in, so a
// test can compute the expected outputs itself in plain JavaScript.

import { buildModel, buildModelWithExternalData, type ModelSpec } from './onnx-builder.js';
import { createPrng, fillUniform } from './prng.js';

/** The element-wise model from {@link buildTinyModel} and its constants. */
export interface TinyModel {
  readonly bytes: Uint8Array;
  /** `y = x * scale + offset`. */
  readonly scale: number;
  readonly offset: number;
}

/**
 * A model of two nodes: input `x` float32 `['n']`, output `y = x * 2 + 1` float32 `['n']` (Mul
 * then Add with scalar initializers). Small enough to inline anywhere; every output is exact.
 */
export function buildTinyModel(): TinyModel {
  const scale = 2;
  const offset = 1;
  const bytes = buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: ['n'] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: ['n'] }],
    initializers: [
      { name: 'scale', dtype: 'float32', dims: [], data: new Float32Array([scale]) },
      { name: 'offset', dtype: 'float32', dims: [], data: new Float32Array([offset]) },
    ],
    nodes: [
      { opType: 'Mul', inputs: ['x', 'scale'], outputs: ['scaled'] },
      { opType: 'Add', inputs: ['scaled', 'offset'], outputs: ['y'] },
    ],
  });
  return { bytes, scale, offset };
}

/** Sizes and seed of {@link buildMlpClassifier}. */
export interface MlpClassifierOptions {
  /** Input features per row. */
  readonly features: number;
  /** Width of the hidden layer. */
  readonly hidden: number;
  /** Number of classes (width of `probs`). */
  readonly classes: number;
  /** Seed of the weight generator; the same seed gives the same model bytes. */
  readonly seed: number;
  /**
   * Store the weights in an external data file of this name (relative to the model file) instead
   * of inside the model, as exporters do past 2 GiB. @default inside the model
   */
  readonly externalData?: string;
}

/**
 * The classifier from {@link buildMlpClassifier} and its weights. Weight matrices are stored
 * row-major as `[out, in]` (Gemm with `transB = 1`, as PyTorch's Linear stores them).
 */
export interface MlpClassifier {
  /** The model file's bytes. */
  readonly bytes: Uint8Array;
  /** With `externalData`: the weights file to write beside the model, and its name. */
  readonly externalData?: { readonly location: string; readonly bytes: Uint8Array };
  readonly features: number;
  readonly hidden: number;
  readonly classes: number;
  /** First layer weights, `[hidden, features]`. */
  readonly w1: Float32Array;
  /** First layer bias, `[hidden]`. */
  readonly b1: Float32Array;
  /** Second layer weights, `[classes, hidden]`. */
  readonly w2: Float32Array;
  /** Second layer bias, `[classes]`. */
  readonly b2: Float32Array;
}

function expectPositiveInteger(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${value}`);
  }
}

/**
 * A two-layer classifier: input `x` float32 `['batch', features]` → Gemm(w1, b1) → Relu →
 * Gemm(w2, b2) → Softmax(axis 1) → output `probs` float32 `['batch', classes]`, and output
 * `label` int64 `['batch']` = ArgMax(axis 1, keepdims 0) of the logits. Weights are drawn
 * uniformly from ±1/√fan_in by a PRNG seeded with `seed`.
 */
export function buildMlpClassifier(options: MlpClassifierOptions): MlpClassifier {
  const { features, hidden, classes, seed } = options;
  expectPositiveInteger(features, 'features');
  expectPositiveInteger(hidden, 'hidden');
  expectPositiveInteger(classes, 'classes');
  const prng = createPrng(seed);
  const bound1 = 1 / Math.sqrt(features);
  const bound2 = 1 / Math.sqrt(hidden);
  const w1 = fillUniform(new Float32Array(hidden * features), prng, -bound1, bound1);
  const b1 = fillUniform(new Float32Array(hidden), prng, -bound1, bound1);
  const w2 = fillUniform(new Float32Array(classes * hidden), prng, -bound2, bound2);
  const b2 = fillUniform(new Float32Array(classes), prng, -bound2, bound2);
  const transB = { type: 'int', value: 1 } as const;
  const axis1 = { type: 'int', value: 1 } as const;
  const spec: ModelSpec = {
    inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', features] }],
    outputs: [
      { name: 'probs', dtype: 'float32', dims: ['batch', classes] },
      { name: 'label', dtype: 'int64', dims: ['batch'] },
    ],
    initializers: [
      { name: 'w1', dtype: 'float32', dims: [hidden, features], data: w1 },
      { name: 'b1', dtype: 'float32', dims: [hidden], data: b1 },
      { name: 'w2', dtype: 'float32', dims: [classes, hidden], data: w2 },
      { name: 'b2', dtype: 'float32', dims: [classes], data: b2 },
    ],
    nodes: [
      { opType: 'Gemm', inputs: ['x', 'w1', 'b1'], outputs: ['h'], attributes: { transB } },
      { opType: 'Relu', inputs: ['h'], outputs: ['h_relu'] },
      {
        opType: 'Gemm',
        inputs: ['h_relu', 'w2', 'b2'],
        outputs: ['logits'],
        attributes: { transB },
      },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: axis1 } },
      {
        opType: 'ArgMax',
        inputs: ['logits'],
        outputs: ['label'],
        attributes: { axis: axis1, keepdims: { type: 'int', value: 0 } },
      },
    ],
  };
  const weights = { features, hidden, classes, w1, b1, w2, b2 };
  if (options.externalData === undefined) return { bytes: buildModel(spec), ...weights };
  const { model, data } = buildModelWithExternalData(spec, options.externalData);
  return {
    bytes: model,
    externalData: { location: options.externalData, bytes: data },
    ...weights,
  };
}

/** Output width of {@link buildHeavyModel}: the N of its `[K, N]` weight. */
export const HEAVY_MODEL_COLUMNS = 256;

/** Size and seed of {@link buildHeavyModel}. */
export interface HeavyModelOptions {
  /** Approximate size of the weight in bytes (the model is a few hundred bytes more). */
  readonly weightBytes: number;
  /** Seed of the weight generator. @default 1 */
  readonly seed?: number;
}

/** The model from {@link buildHeavyModel} and its weight. */
export interface HeavyModel {
  readonly bytes: Uint8Array;
  /** Rows of the weight: the input width. */
  readonly k: number;
  /** Columns of the weight: the output width, {@link HEAVY_MODEL_COLUMNS}. */
  readonly n: number;
  /** The weight, `[k, n]` row-major. */
  readonly weights: Float32Array;
}

/**
 * A model whose size is its weight: input `x` float32 `['batch', k]`, MatMul with initializer
 * `weight` float32 `[k, n]`, output `y` float32 `['batch', n]`, with `n` =
 * {@link HEAVY_MODEL_COLUMNS} and `k = round(weightBytes / (4 n))`. Weights are multiples of 1/16
 * in [-0.5, 0.4375], four PRNG bits each, which fills 300 MB in well under a second. With
 * small-integer inputs (|x| ≤ 4) and k up to 4·10⁵, every partial sum of the MatMul is exact in
 * float32, so onnxruntime's result equals a plain JavaScript dot product bit for bit whatever
 * order either sums in.
 */
export function buildHeavyModel(options: HeavyModelOptions): HeavyModel {
  const n = HEAVY_MODEL_COLUMNS;
  if (!Number.isFinite(options.weightBytes) || options.weightBytes < 4 * n) {
    throw new RangeError(`weightBytes must be at least ${4 * n}, got ${options.weightBytes}`);
  }
  const k = Math.round(options.weightBytes / (4 * n));
  const weights = new Float32Array(k * n);
  const prng = createPrng(options.seed ?? 1);
  // One 32-bit draw gives eight 4-bit weights; k * n is a multiple of 8 because n is.
  for (let i = 0; i < weights.length; i += 8) {
    let bits = prng.nextUint32();
    for (let j = i; j < i + 8; j++) {
      weights[j] = ((bits & 15) - 8) / 16;
      bits >>>= 4;
    }
  }
  const bytes = buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', k] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: ['batch', n] }],
    initializers: [{ name: 'weight', dtype: 'float32', dims: [k, n], data: weights }],
    nodes: [{ opType: 'MatMul', inputs: ['x', 'weight'], outputs: ['y'] }],
  });
  return { bytes, k, n, weights };
}

/**
 * A model whose output is `repeats` times its input: input `x` float32 `['n']`, output `y`
 * float32 `['m']` = `x` tiled `repeats` times (Tile with an int64 initializer), so `y[i] =
 * x[i % n]` and `m = n * repeats`. A small input gives a result as large as a test needs (a
 * result over a socket's message limit, say) without a large model file or request.
 */
export function buildTileModel(repeats: number): Uint8Array {
  expectPositiveInteger(repeats, 'repeats');
  return buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: ['n'] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: ['m'] }],
    initializers: [
      { name: 'repeats', dtype: 'int64', dims: [1], data: BigInt64Array.of(BigInt(repeats)) },
    ],
    nodes: [{ opType: 'Tile', inputs: ['x', 'repeats'], outputs: ['y'] }],
  });
}
