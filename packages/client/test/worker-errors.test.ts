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
