import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { createPrng } from '../src/prng.js';
import {
  HEAVY_MODEL_COLUMNS,
  buildHeavyModel,
  buildMlpClassifier,
  buildTileModel,
  buildTinyModel,
  type HeavyModel,
  type MlpClassifier,
} from '../src/synthetic-models.js';

/** name, dtype and shape of each input or output, as onnxruntime reports them. */
function describeValues(values: readonly ort.InferenceSession.ValueMetadata[]): unknown[] {
  return values.map((value) =>
    value.isTensor ? [value.name, value.type, value.shape] : [value.name, 'not a tensor'],
  );
}

async function withSession<T>(
  bytes: Uint8Array,
  use: (session: ort.InferenceSession) => Promise<T>,
): Promise<T> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    return await use(session);
  } finally {
    await session.release();
  }
}

/** The MLP's forward pass in float64, independent of onnxruntime. */
function mlpForward(model: MlpClassifier, x: Float32Array, batch: number) {
  const { features, hidden, classes, w1, b1, w2, b2 } = model;
  const probs: number[] = [];
  const labels: number[] = [];
  for (let row = 0; row < batch; row++) {
    const h: number[] = [];
    for (let j = 0; j < hidden; j++) {
      let sum = b1[j] ?? NaN;
      for (let i = 0; i < features; i++)
        sum += (x[row * features + i] ?? NaN) * (w1[j * features + i] ?? NaN);
      h.push(Math.max(0, sum));
    }
    const logits: number[] = [];
    for (let c = 0; c < classes; c++) {
      let sum = b2[c] ?? NaN;
      for (let j = 0; j < hidden; j++) sum += (h[j] ?? NaN) * (w2[c * hidden + j] ?? NaN);
      logits.push(sum);
    }
    const max = Math.max(...logits);
    const exps = logits.map((logit) => Math.exp(logit - max));
    const total = exps.reduce((a, b) => a + b, 0);
    probs.push(...exps.map((e) => e / total));
    labels.push(logits.indexOf(max));
  }
  return { probs, labels };
}

/** Small integers in [-4, 4], so the heavy model's sums are exact in float32. */
function integerInput(length: number, seed: number): Float32Array {
  const prng = createPrng(seed);
  return Float32Array.from({ length }, () => prng.integer(-4, 4));
}

/** `x · weights` for the given columns, in float64, row-major `[batch, columns.length]`. */
function heavyExpected(
  model: HeavyModel,
  x: Float32Array,
  batch: number,
  columns: readonly number[],
) {
  const { k, n, weights } = model;
  const out = new Float64Array(batch * columns.length);
  for (let row = 0; row < batch; row++) {
    for (let i = 0; i < k; i++) {
      const xi = x[row * k + i] ?? NaN;
      if (xi === 0) continue;
      const base = i * n;
      columns.forEach((column, c) => {
        const at = row * columns.length + c;
        out[at] = (out[at] ?? NaN) + xi * (weights[base + column] ?? NaN);
      });
    }
  }
  return out;
}

function countMismatches(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let mismatches = 0;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) mismatches++;
  return mismatches + Math.abs(actual.length - expected.length);
}

describe('buildTinyModel', () => {
  it('computes y = x * 2 + 1 exactly, with a symbolic n dim', async () => {
    const tiny = buildTinyModel();
    expect(tiny).toMatchObject({ scale: 2, offset: 1 });
    expect(tiny.bytes.byteLength).toBeLessThan(1024);
    await withSession(tiny.bytes, async (session) => {
      expect(describeValues(session.inputMetadata)).toEqual([['x', 'float32', ['n']]]);
      expect(describeValues(session.outputMetadata)).toEqual([['y', 'float32', ['n']]]);
      const x = Float32Array.of(-1.5, 0, 0.25, 1e6, -3, 3.4028234663852886e38, 1e-30);
      const { y } = await session.run({ x: new ort.Tensor('float32', x, [x.length]) });
      const expected = Array.from(x, (v) => Math.fround(Math.fround(v * 2) + 1));
      expect(y?.dims).toEqual([x.length]);
      expect(Array.from(y?.data as Float32Array)).toEqual(expected);
      expect(expected.at(-2)).toBe(Infinity);
    });
  });

  it('is byte-for-byte the same on every build', () => {
    expect(buildTinyModel().bytes).toEqual(buildTinyModel().bytes);
  });
});

describe('buildTileModel', () => {
  it('repeats its input: y[i] = x[i % n], m = n * repeats', async () => {
    await withSession(buildTileModel(3), async (session) => {
      expect(describeValues(session.inputMetadata)).toEqual([['x', 'float32', ['n']]]);
      expect(describeValues(session.outputMetadata)).toEqual([['y', 'float32', ['m']]]);
      const x = Float32Array.of(1.5, -2, 7);
      const { y } = await session.run({ x: new ort.Tensor('float32', x, [x.length]) });
      expect(y?.dims).toEqual([9]);
      expect(Array.from(y?.data as Float32Array)).toEqual([1.5, -2, 7, 1.5, -2, 7, 1.5, -2, 7]);
    });
  });

  it('rejects repeats that are not a positive integer', () => {
    expect(() => buildTileModel(0)).toThrow(RangeError);
    expect(() => buildTileModel(1.5)).toThrow(RangeError);
  });
});

describe('buildMlpClassifier', () => {
  const options = { features: 20, hidden: 32, classes: 5, seed: 42 };

  it('matches a plain JavaScript forward pass within 1e-5, label = argmax', async () => {
    const mlp = buildMlpClassifier(options);
    expect(mlp.w1).toHaveLength(32 * 20);
    expect(mlp.b1).toHaveLength(32);
    expect(mlp.w2).toHaveLength(5 * 32);
    expect(mlp.b2).toHaveLength(5);
    const batch = 9;
    const prng = createPrng(7);
    const x = Float32Array.from({ length: batch * options.features }, () => prng.uniform(-3, 3));
    const expected = mlpForward(mlp, x, batch);
    // A model this small could still be degenerate (all rows one class); the check would be weak.
    expect(new Set(expected.labels).size).toBeGreaterThan(1);

    await withSession(mlp.bytes, async (session) => {
      expect(describeValues(session.inputMetadata)).toEqual([['x', 'float32', ['batch', 20]]]);
      expect(describeValues(session.outputMetadata)).toEqual([
        ['probs', 'float32', ['batch', 5]],
        ['label', 'int64', ['batch']],
      ]);
      const out = await session.run({ x: new ort.Tensor('float32', x, [batch, options.features]) });
      expect(out.probs?.dims).toEqual([batch, 5]);
      expect(out.label?.dims).toEqual([batch]);
      const probs = Array.from(out.probs?.data as Float32Array);
      expect(probs).toHaveLength(expected.probs.length);
      probs.forEach((p, i) => {
        expect(Math.abs(p - (expected.probs[i] ?? NaN))).toBeLessThan(1e-5);
      });
      expect(Array.from(out.label?.data as BigInt64Array, Number)).toEqual(expected.labels);
    });
  });

  it('derives its weights from the seed alone', () => {
    const a = buildMlpClassifier(options);
    expect(buildMlpClassifier(options).bytes).toEqual(a.bytes);
    const other = buildMlpClassifier({ ...options, seed: 43 });
    expect(other.bytes).not.toEqual(a.bytes);
    expect(other.bytes.byteLength).toBe(a.bytes.byteLength);
  });

  it('rejects sizes that are not positive integers', () => {
    expect(() => buildMlpClassifier({ ...options, hidden: 0 })).toThrow(RangeError);
    expect(() => buildMlpClassifier({ ...options, features: 2.5 })).toThrow(RangeError);
  });
});

describe('buildHeavyModel', () => {
  it('at 1 MB: every output of a small batch equals the JavaScript MatMul exactly', async () => {
    const weightBytes = 2 ** 20;
    const heavy = buildHeavyModel({ weightBytes, seed: 3 });
    expect(heavy.n).toBe(HEAVY_MODEL_COLUMNS);
    expect(heavy.k).toBe(1024);
    expect(heavy.weights).toHaveLength(heavy.k * heavy.n);
    expect(heavy.bytes.byteLength).toBeGreaterThan(weightBytes);
    expect(heavy.bytes.byteLength).toBeLessThan(weightBytes + 1024);
    // Every weight is one of the sixteen multiples of 1/16 in [-0.5, 0.4375], all of them used.
    const distinct = new Set(heavy.weights);
    expect([...distinct].every((w) => Number.isInteger(w * 16) && w >= -0.5 && w <= 0.4375)).toBe(
      true,
    );
    expect(distinct.size).toBe(16);

    const batch = 3;
    const x = integerInput(batch * heavy.k, 11);
    const columns = Array.from({ length: heavy.n }, (_, i) => i);
    const expected = heavyExpected(heavy, x, batch, columns);
    await withSession(heavy.bytes, async (session) => {
      expect(describeValues(session.inputMetadata)).toEqual([['x', 'float32', ['batch', 1024]]]);
      expect(describeValues(session.outputMetadata)).toEqual([['y', 'float32', ['batch', 256]]]);
      const { y } = await session.run({ x: new ort.Tensor('float32', x, [batch, heavy.k]) });
      expect(y?.dims).toEqual([batch, heavy.n]);
      expect(countMismatches(y?.data as Float32Array, expected)).toBe(0);
    });
  });

  it('derives its weights from the seed', () => {
    const a = buildHeavyModel({ weightBytes: 4096 });
    expect(a.k).toBe(4);
    expect(buildHeavyModel({ weightBytes: 4096, seed: 1 }).bytes).toEqual(a.bytes);
    expect(buildHeavyModel({ weightBytes: 4096, seed: 2 }).bytes).not.toEqual(a.bytes);
  });

  it('rejects a weight smaller than one row', () => {
    expect(() => buildHeavyModel({ weightBytes: 1000 })).toThrow(RangeError);
    expect(() => buildHeavyModel({ weightBytes: NaN })).toThrow(RangeError);
  });

  it('at 300 MB: builds, loads and computes the columns JavaScript computes', async () => {
    const batch = 2;
    const columns = [0, 1, 2, 127, 128, 254, 255];
    // Built in a function of its own so the model bytes and weights (~600 MB) can be collected
    // once onnxruntime holds its copy, before the run.
    const prepare = async () => {
      const weightBytes = 300 * 2 ** 20;
      const heavy = buildHeavyModel({ weightBytes, seed: 5 });
      expect(heavy.k).toBe(307_200);
      expect(heavy.bytes.byteLength).toBeGreaterThan(weightBytes);
      expect(heavy.bytes.byteLength).toBeLessThan(weightBytes + 1024);
      const x = integerInput(batch * heavy.k, 13);
      const expected = heavyExpected(heavy, x, batch, columns);
      const session = await ort.InferenceSession.create(heavy.bytes);
      return { session, x, expected, k: heavy.k };
    };
    const { session, x, expected, k } = await prepare();
    try {
      expect(describeValues(session.inputMetadata)).toEqual([['x', 'float32', ['batch', k]]]);
      const { y } = await session.run({ x: new ort.Tensor('float32', x, [batch, k]) });
      expect(y?.dims).toEqual([batch, HEAVY_MODEL_COLUMNS]);
      const data = y?.data as Float32Array;
      const actual = Array.from({ length: batch * columns.length }, (_, i) => {
        const row = Math.floor(i / columns.length);
        return data[row * HEAVY_MODEL_COLUMNS + (columns[i % columns.length] ?? NaN)] ?? NaN;
      });
      expect(countMismatches(actual, expected)).toBe(0);
      // Sums of ~300k terms of ±2: a wrong weight layout would not land on these exactly.
      expect(expected.some((v) => Math.abs(v) > 100)).toBe(true);
    } finally {
      await session.release();
    }
  });
});
