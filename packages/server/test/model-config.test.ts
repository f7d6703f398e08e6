import { describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_CONFIG, parseModelConfig } from '../src/model-config.js';
import { errorCode } from '@tandem/test-support';

function codeOf(value: unknown): string {
  return errorCode(() => parseModelConfig(value, 'm/1/model.json'));
}

describe('parseModelConfig', () => {
  it('fills every default for an empty model.json', () => {
    expect(parseModelConfig({}, 'model.json')).toEqual(DEFAULT_MODEL_CONFIG);
    expect(DEFAULT_MODEL_CONFIG).toEqual({
      maxBatch: 1,
      maxDelayMs: 2,
      minReady: 0,
      maxInstances: 1,
      intraOpNumThreads: 0,
      pool: 'default',
    });
  });

  it('reads every field', () => {
    const config = parseModelConfig(
      {
        inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
        outputs: [{ name: 'y', dtype: 'int64' }],
        maxBatch: 16,
        maxDelayMs: 5,
        minReady: 1,
        maxInstances: 3,
        idleTimeoutMs: 60_000,
        maxQueue: 10,
        warmupDims: { x: [8, 4] },
        intraOpNumThreads: 2,
        pool: 'gpu',
        placement: { prefer: 'remote' },
        comment: 'unknown fields are ignored',
      },
      'model.json',
    );
    expect(config).toEqual({
      inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
      outputs: [{ name: 'y', dtype: 'int64' }],
      maxBatch: 16,
      maxDelayMs: 5,
      minReady: 1,
      maxInstances: 3,
      idleTimeoutMs: 60_000,
      maxQueue: 10,
      warmupDims: { x: [8, 4] },
      intraOpNumThreads: 2,
      pool: 'gpu',
      placement: { prefer: 'remote' },
    });
  });

  it('raises maxInstances to minReady, so keep-warm is never capped below itself', () => {
    const config = parseModelConfig({ minReady: 3 }, 'model.json');
    expect(config.maxInstances).toBe(3);
  });

  it('answers every bad field with E_INVALID_ARGUMENT', () => {
    const bad: unknown[] = [
      null,
      [],
      'maxBatch: 4',
      { maxBatch: 0 },
      { maxBatch: 1.5 },
      { maxBatch: '4' },
      { maxDelayMs: -1 },
      { minReady: 65 },
      { maxInstances: 0 },
      { idleTimeoutMs: 0 },
      { maxQueue: -1 },
      { maxQueue: 0 },
      { intraOpNumThreads: -1 },
      { pool: '' },
      { pool: 7 },
      { inputs: {} },
      { inputs: [{ name: 'x', dtype: 'float128' }] },
      { outputs: [{ dtype: 'float32' }] },
      { warmupDims: [] },
      { warmupDims: { x: [-1] } },
      { warmupDims: { x: 'big' } },
      { placement: { prefer: 'cloud' } },
    ];
    for (const value of bad)
      expect(codeOf(value), JSON.stringify(value)).toBe('E_INVALID_ARGUMENT');
  });
});
