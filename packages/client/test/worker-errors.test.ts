import { describe, expect, it } from 'vitest';
import { TandemError } from '@tandem/shared';
import { classifyOrtError } from '../src/worker-errors.js';

describe('classifyOrtError', () => {
  it('maps onnxruntime-web failures to codes the router can act on', () => {
    const cases: [string, string][] = [
      ['no available backend found. ERR: [webgpu] backend not found.', 'E_NO_BACKEND'],
      ['GPUDevice was lost: reason destroyed', 'E_DEVICE_LOST'],
      ['RangeError: Array buffer allocation failed', 'E_OUT_OF_MEMORY'],
      ['Could not find an implementation for NonZero(13) node with name n', 'E_UNSUPPORTED_OP'],
      // onnxruntime-web 1.30's own words for inputs a session refuses.
      [
        'failed to call OrtRun(). ERROR_CODE: 2, ERROR_MESSAGE: Unexpected input data type. Actual: (tensor(int32)) , expected: (tensor(float))',
        'E_INPUT_DTYPE',
      ],
      [
        'failed to call OrtRun(). ERROR_CODE: 2, ERROR_MESSAGE: Got invalid dimensions for input: x for the following indices',
        'E_INPUT_SHAPE',
      ],
      [
        'failed to call OrtRun(). ERROR_CODE: 2, ERROR_MESSAGE: Invalid rank for input: x Got: 2 Expected: 1',
        'E_INPUT_SHAPE',
      ],
      ["input 'x' is missing in 'feeds'.", 'E_INPUT_MISSING'],
      ["invalid input 'z'", 'E_INPUT_MISSING'],
      ['input dims mismatch somewhere', 'E_RUNTIME'],
    ];
    for (const [message, code] of cases)
      expect(classifyOrtError(new Error(message)).code, message).toBe(code);
  });

  it('keeps TandemErrors and uses the fallback code for the rest', () => {
    const own = new TandemError('E_CANCELLED', 'x');
    expect(classifyOrtError(own)).toBe(own);
    expect(classifyOrtError('weird', 'E_MODEL_LOAD_FAILED').code).toBe('E_MODEL_LOAD_FAILED');
  });
});
