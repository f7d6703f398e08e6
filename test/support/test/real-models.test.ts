import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  PADDLEOCR_DICTIONARY,
  REAL_MODELS,
  REAL_MODEL_NAMES,
  paddleOcrDictionaryPath,
  realAssetPath,
  realModelPath,
  type RealModelName,
} from '../src/real-models.js';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function tensorMetadata(session: ort.InferenceSession, input: string) {
  const found = session.inputMetadata.find((m) => m.name === input);
  if (found === undefined || !found.isTensor) throw new Error(`no tensor input ${input}`);
  return found;
}

async function withModel<T>(
  name: RealModelName,
  use: (session: ort.InferenceSession) => Promise<T>,
): Promise<T> {
  const session = await ort.InferenceSession.create(realModelPath(name));
  try {
    return await use(session);
  } finally {
    await session.release();
  }
}

describe('REAL_MODELS', () => {
  it('lists every model once, under its own name', () => {
    expect([...REAL_MODEL_NAMES].sort()).toEqual(Object.keys(REAL_MODELS).sort());
    for (const name of REAL_MODEL_NAMES) expect(REAL_MODELS[name].name).toBe(name);
  });

  for (const name of REAL_MODEL_NAMES) {
    it(`${name}: the file has the expected size and hash and loads with the expected names`, async () => {
      const model = REAL_MODELS[name];
      const path = realModelPath(name);
      expect(isAbsolute(path)).toBe(true);
      expect(path.endsWith(model.file)).toBe(true);
      expect(statSync(path).size).toBe(model.bytes);
      expect(sha256(path)).toBe(model.sha256);
      await withModel(name, (session) => {
        expect(session.inputNames).toEqual(model.inputs);
        expect(session.outputNames).toEqual(model.outputs);
        return Promise.resolve();
      });
    });
  }

  it('has the sizes the design names (PaddleOCR 4.7, 10.8 and 0.6 MB)', () => {
    expect(REAL_MODELS['paddleocr-det'].bytes / 1e6).toBeCloseTo(4.7, 1);
    expect(REAL_MODELS['paddleocr-rec'].bytes / 1e6).toBeCloseTo(10.8, 1);
    expect(REAL_MODELS['paddleocr-cls'].bytes / 1e6).toBeCloseTo(0.6, 1);
  });
});

describe('PaddleOCR', () => {
  it('det: input x float32 [?, 3, ?, ?]; 1×3×64×64 zeros give a 1×1×64×64 probability map', async () => {
    await withModel('paddleocr-det', async (session) => {
      const x = tensorMetadata(session, 'x');
      expect(x.type).toBe('float32');
      expect(x.shape).toHaveLength(4);
      expect(x.shape[1]).toBe(3);
      // Dynamic dims are reported by their dim_param names (strings), not numbers.
      expect([x.shape[0], x.shape[2], x.shape[3]].every((d) => typeof d === 'string')).toBe(true);
      const input = new ort.Tensor('float32', new Float32Array(3 * 64 * 64), [1, 3, 64, 64]);
      const out = (await session.run({ x: input }))['sigmoid_0.tmp_0'];
      expect(out?.dims).toEqual([1, 1, 64, 64]);
      const data = out?.data as Float32Array;
      expect(data.every((p) => p >= 0 && p <= 1)).toBe(true);
    });
  });

  it('rec: 48-pixel-high strips map to 6625 classes, the dictionary plus blank and space', async () => {
    const dictionary = readFileSync(paddleOcrDictionaryPath(), 'utf8');
    expect(Buffer.byteLength(dictionary)).toBe(PADDLEOCR_DICTIONARY.bytes);
    expect(sha256(paddleOcrDictionaryPath())).toBe(PADDLEOCR_DICTIONARY.sha256);
    const characters = dictionary.split('\n').filter((line) => line.length > 0);
    await withModel('paddleocr-rec', async (session) => {
      const x = tensorMetadata(session, 'x');
      expect([x.shape[1], x.shape[2]]).toEqual([3, 48]);
      const input = new ort.Tensor('float32', new Float32Array(3 * 48 * 320), [1, 3, 48, 320]);
      const out = (await session.run({ x: input }))['softmax_11.tmp_0'];
      // One step per 8 pixels of width.
      expect(out?.dims).toEqual([1, 40, characters.length + 2]);
      expect(characters.length + 2).toBe(6625);
    });
  });

  it('cls: a 1×3×48×192 strip gives two direction probabilities summing to 1', async () => {
    await withModel('paddleocr-cls', async (session) => {
      const input = new ort.Tensor('float32', new Float32Array(3 * 48 * 192), [1, 3, 48, 192]);
      const out = (await session.run({ x: input }))['softmax_0.tmp_0'];
      expect(out?.dims).toEqual([1, 2]);
      const [a = NaN, b = NaN] = out?.data as Float32Array;
      expect(a + b).toBeCloseTo(1, 5);
    });
  });
});

describe('Silero VAD', () => {
  /** 512 samples (32 ms at 16 kHz) of a 440 Hz tone. */
  const chunk = Float32Array.from(
    { length: 512 },
    (_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000),
  );
  const sr = new ort.Tensor('int64', BigInt64Array.of(16000n), []);

  it('v5: inputs input, state [2, ?, 128] and an int64 scalar sr; one chunk gives a probability', async () => {
    await withModel('silero-vad', async (session) => {
      expect(tensorMetadata(session, 'input').type).toBe('float32');
      expect(tensorMetadata(session, 'input').shape).toHaveLength(2);
      const state = tensorMetadata(session, 'state');
      expect(state.type).toBe('float32');
      expect([state.shape[0], state.shape[2]]).toEqual([2, 128]);
      // The batch dim has neither a value nor a name; onnxruntime reports it as ''.
      expect(state.shape[1]).toBe('');
      expect(tensorMetadata(session, 'sr')).toMatchObject({ type: 'int64', shape: [] });

      const out = await session.run({
        input: new ort.Tensor('float32', chunk, [1, 512]),
        state: new ort.Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]),
        sr,
      });
      expect(out.output?.dims).toEqual([1, 1]);
      expect(out.stateN?.dims).toEqual([2, 1, 128]);
      const [probability = NaN] = out.output?.data as Float32Array;
      expect(probability).toBeGreaterThanOrEqual(0);
      expect(probability).toBeLessThanOrEqual(1);
      // The state moves: a model that ignored its input would hand back zeros.
      expect((out.stateN?.data as Float32Array).some((v) => v !== 0)).toBe(true);
    });
  });

  it('legacy: inputs input, sr, h and c [2, batch, 64]; one chunk gives a probability', async () => {
    await withModel('silero-vad-legacy', async (session) => {
      expect(tensorMetadata(session, 'h').shape).toEqual([2, 'batch', 64]);
      expect(tensorMetadata(session, 'sr')).toMatchObject({ type: 'int64', shape: [] });
      const zeros = () => new ort.Tensor('float32', new Float32Array(2 * 64), [2, 1, 64]);
      const out = await session.run({
        input: new ort.Tensor('float32', chunk, [1, 512]),
        sr,
        h: zeros(),
        c: zeros(),
      });
      expect(out.output?.dims).toEqual([1, 1]);
      expect(out.hn?.dims).toEqual([2, 1, 64]);
      const [probability = NaN] = out.output?.data as Float32Array;
      expect(probability).toBeGreaterThanOrEqual(0);
      expect(probability).toBeLessThanOrEqual(1);
    });
  });
});

describe('realAssetPath', () => {
  it('names the package and path of a missing file, with the file system error as cause', () => {
    const missing = { ...REAL_MODELS['silero-vad'], file: 'dist/not-shipped.onnx' };
    let caught: unknown;
    try {
      realAssetPath(missing);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(Error);
    const error = caught as Error;
    expect(error.message).toContain('@ricky0123/vad-web');
    expect(error.message).toContain('not-shipped.onnx');
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('refuses a directory', () => {
    expect(() => realAssetPath({ ...PADDLEOCR_DICTIONARY, file: 'assets' })).toThrow(/not a file/);
  });
});
