import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_FILE_NAME, writeModelFile } from '../src/model-repository.js';
import { buildTinyModel } from '../src/synthetic-models.js';

describe('writeModelFile', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-model-repository-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes <dir>/<name>/<version>/model.onnx that onnxruntime loads from disk', async () => {
    const { bytes } = buildTinyModel();
    const path = await writeModelFile(dir, 'tiny', 3, bytes);
    expect(MODEL_FILE_NAME).toBe('model.onnx');
    expect(path).toBe(join(dir, 'tiny', '3', 'model.onnx'));
    expect(new Uint8Array(await readFile(path))).toEqual(bytes);
    const session = await ort.InferenceSession.create(path);
    try {
      expect(session.inputNames).toEqual(['x']);
    } finally {
      await session.release();
    }
  });

  it('overwrites an existing version', async () => {
    await writeModelFile(dir, 'again', '1', Uint8Array.of(1, 2, 3));
    const path = await writeModelFile(dir, 'again', '1', Uint8Array.of(4));
    expect(Array.from(await readFile(path))).toEqual([4]);
  });

  it('refuses names and versions that would leave the repository', async () => {
    const bytes = Uint8Array.of(0);
    await expect(writeModelFile(dir, '../escape', 1, bytes)).rejects.toThrow(RangeError);
    await expect(writeModelFile(dir, 'a/b', 1, bytes)).rejects.toThrow(RangeError);
    await expect(writeModelFile(dir, 'ok', '..', bytes)).rejects.toThrow(RangeError);
    await expect(writeModelFile(dir, '', 1, bytes)).rejects.toThrow(RangeError);
  });
});
