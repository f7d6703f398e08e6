// How a job crosses Redis: inputs and outcomes as binary protocol frames (codes kept), job data
// parsed at the boundary.

import { describe, expect, it } from 'vitest';
import { TandemError, encodeMessage } from '@tandem/shared';
import { errorCode } from '@tandem/test-support';
import {
  decodeJobInput,
  decodeOutcome,
  encodeJobInput,
  encodeJobOutcome,
  encodeModelOutcome,
  parseInferJobData,
} from '../src/redis-job-codec.js';
import { bytesOf } from './fixtures.js';

const INPUTS = {
  x: { dtype: 'float32', dims: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  n: { dtype: 'int64', dims: [1], data: new BigInt64Array([2n ** 60n]) },
} as const;

describe('redis-job-codec', () => {
  it('carries a job input as raw tensor bytes, not JSON numbers', () => {
    const frame = encodeJobInput(
      { id: 'j', owner: 'o', model: 'm', inputs: INPUTS, outputs: ['y'], priority: 7 },
      '3',
    );
    // The float32 data sits in the frame byte for byte.
    expect(Buffer.from(frame).includes(bytesOf(INPUTS.x))).toBe(true);
    const message = decodeJobInput(frame);
    expect(message).toMatchObject({
      id: 'j',
      model: 'm',
      version: '3',
      outputs: ['y'],
      priority: 7,
    });
    expect(bytesOf(message.inputs.x!).equals(bytesOf(INPUTS.x))).toBe(true);
    expect(bytesOf(message.inputs.n!).equals(bytesOf(INPUTS.n))).toBe(true);
  });

  it('keeps a result, an error with its code, and a model status across the hop', () => {
    const result = {
      id: 'j',
      model: 'm',
      version: '1',
      outputs: { y: INPUTS.x },
      backend: 'cpu',
      coldStart: true,
      timings: { queueMs: 1, loadMs: 2, warmupMs: 3, runMs: 4, totalMs: 10 },
    } as const;
    const ok = decodeOutcome(encodeJobOutcome('j', { ok: true, result }));
    expect(ok.kind === 'job' && ok.outcome.ok && ok.outcome.result.timings).toEqual(result.timings);
    const error = new TandemError('E_BUSY', 'full', { retryAfterMs: 250 });
    const failed = decodeOutcome(encodeJobOutcome('j', { ok: false, error }));
    expect(failed.kind === 'job' && !failed.outcome.ok && failed.outcome.error).toMatchObject({
      code: 'E_BUSY',
      retryable: true,
      retryAfterMs: 250,
    });
    const status = { name: 'm', version: '1', state: 'ready', instances: 1 } as const;
    expect(decodeOutcome(encodeModelOutcome(status))).toEqual({ kind: 'model', status });
  });

  it('refuses frames and job data that are not what the other side writes, with E_PROTOCOL', () => {
    const ping = encodeMessage({ type: 'ping', nonce: 1 });
    expect(errorCode(() => decodeJobInput(ping))).toBe('E_PROTOCOL');
    expect(errorCode(() => decodeOutcome(encodeMessage({ type: 'pong', nonce: 1 })))).toBe(
      'E_PROTOCOL',
    );
    expect(errorCode(() => decodeOutcome(new Uint8Array([1, 2, 3])))).toBe('E_PROTOCOL');
    for (const bad of [null, 'x', {}, { owner: 'o', id: 1, model: 'm', version: '1' }])
      expect(errorCode(() => parseInferJobData(bad))).toBe('E_PROTOCOL');
    expect(
      parseInferJobData({ owner: 'o', id: 'i', model: 'm', version: '1', deadlineAt: 5 }),
    ).toEqual({ owner: 'o', id: 'i', model: 'm', version: '1', deadlineAt: 5 });
  });
});
