import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeServerMessage,
  encodeMessage,
  type ResultMessage,
  type Tensor,
} from '@tandem/shared';
import {
  RESULT_FIELDS,
  readResultFrames,
  writeResultFields,
  writeResultFrames,
  type ResultFrameSpec,
} from '../src/result-frames.js';
import { smallTensorArb } from './tensor-arbitraries.js';

// Strings are not in the pack's first size guess: long ones make it grow.
const tensorArb = smallTensorArb(700);
const itemArb = fc.record({
  id: fc.string({ minLength: 1, maxLength: 40 }),
  outputs: fc.option(fc.dictionary(fc.constantFrom('y', 'z'), tensorArb), { nil: undefined }),
  coldStart: fc.boolean(),
  queueMs: fc.integer({ min: 0, max: 10_000_000 }).map((us) => us / 1000),
  loadMs: fc.integer({ min: 0, max: 10_000_000 }).map((us) => us / 1000),
  warmupMs: fc.integer({ min: 0, max: 10_000_000 }).map((us) => us / 1000),
  receivedAtEpochMs: fc.double({ min: 1e12, max: 2e12, noNaN: true }),
  runMs: fc.double({ min: 0, max: 1e4, noNaN: true }),
  totalMs: fc.double({ min: 0, max: 1e5, noNaN: true }),
});

describe('writeResultFrames and readResultFrames', () => {
  it('write each item the frame the main thread would have encoded, aligned, empty when it failed', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { maxLength: 8 }), (items) => {
        const numbers = new Float64Array(items.length * RESULT_FIELDS);
        items.forEach((item, index) => writeResultFields(numbers, index, item));
        const spec: ResultFrameSpec = {
          model: 'm',
          version: '3',
          backend: 'cpu',
          ids: items.map((item) => item.id),
          numbers,
        };
        const packed = writeResultFrames(
          spec,
          items.map((item) => item.outputs),
          Float64Array.from(items.map((item) => item.runMs)),
          Float64Array.from(items.map((item) => item.receivedAtEpochMs + item.totalMs)),
        );
        // What postMessage does to it on the way back to the main thread.
        const crossed = structuredClone(packed, {
          transfer: [packed.buffer, packed.ends.buffer as ArrayBuffer],
        });
        const frames = readResultFrames(crossed);
        expect(frames).toHaveLength(items.length);
        // The items ran one after the other: each waited for the runs before it (failed ones too).
        let aheadMs = 0;
        items.forEach((item, index) => {
          const waitedMs = aheadMs;
          aheadMs += item.runMs;
          const frame = frames[index]!;
          if (item.outputs === undefined) {
            expect(frame.byteLength).toBe(0);
            return;
          }
          expect(frame.byteOffset % 8).toBe(0);
          const expected: ResultMessage = {
            type: 'result',
            id: item.id,
            model: 'm',
            version: '3',
            outputs: item.outputs,
            backend: 'cpu',
            coldStart: item.coldStart,
            timings: {
              queueMs: Math.round((item.queueMs + waitedMs) * 1000) / 1000,
              loadMs: item.loadMs,
              warmupMs: item.warmupMs,
              runMs: Math.round(item.runMs * 1000) / 1000,
              // Measured as a difference of epoch times: equal to the microsecond, give or take
              // the rounding of the sum.
              totalMs: decodedTotal(frame),
            },
          };
          expect(Array.from(frame)).toEqual(Array.from(encodeMessage(expected)));
          expect(Math.abs(decodedTotal(frame) - item.totalMs)).toBeLessThan(0.002);
        });
      }),
    );
  });
});

describe('writeResultFrames', () => {
  it('grows its pack when string outputs outrun the first guess, keeping earlier frames', () => {
    const numbers = new Float64Array(2 * RESULT_FIELDS);
    const long = 'x'.repeat(5000);
    const outputs: Tensor[] = [
      { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) },
      { dtype: 'string', dims: [2], data: [long, long] },
    ];
    const packed = writeResultFrames(
      { model: 'm', version: '1', backend: 'cpu', ids: ['a', 'b'], numbers },
      outputs.map((y) => ({ y })),
      new Float64Array(2),
      new Float64Array(2),
    );
    const decoded = readResultFrames(packed).map((frame) => decodeServerMessage(frame));
    expect(decoded.map((message) => (message.type === 'result' ? message.id : ''))).toEqual([
      'a',
      'b',
    ]);
    const [first, second] = decoded.map((message) =>
      message.type === 'result' ? message.outputs.y : undefined,
    );
    expect(Array.from(first?.data as Float32Array)).toEqual([1, 2]);
    expect(second?.data).toEqual([long, long]);
  });
});

function decodedTotal(frame: Uint8Array): number {
  const message = decodeServerMessage(frame);
  if (message.type !== 'result') throw new Error(`expected a result, got ${message.type}`);
  return message.timings.totalMs;
}
