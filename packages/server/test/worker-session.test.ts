// WorkerSession with a real onnxruntime-node session in a real worker thread: inputs are copied
// (the caller keeps them) unless they are marked detachable, in which case their buffer moves to
// the worker without a copy; either way the outputs are right, and so are the result frames the
// worker writes for a group.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel, slowInput, writeModelFile, writeSlowModel } from '@tandem/test-support';
import { decodeServerMessage } from '@tandem/shared';
import { RESULT_FIELDS, toMicros, writeResultFields } from '../src/result-frames.js';
import { WorkerSession } from '../src/worker-session.js';

describe('WorkerSession', () => {
  let dir: string;
  let session: WorkerSession;
  const { scale, offset, bytes } = buildTinyModel();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-worker-session-'));
    session = await WorkerSession.load(await writeModelFile(dir, 'tiny', 1, bytes), {});
  });

  afterAll(async () => {
    await session.release();
    await rm(dir, { recursive: true, force: true });
  });

  const input = (): Float32Array => new Float32Array([1, 2, 3, 4]);
  const expected = [1, 2, 3, 4].map((x) => x * scale + offset);

  it('copies inputs by default: the caller still has them', async () => {
    const data = input();
    const { outputs, runMs } = await session.run(
      { x: { dtype: 'float32', dims: [4], data } },
      undefined,
    );
    expect(Array.from(outputs.y!.data as Float32Array)).toEqual(expected);
    // onnxruntime's own time, measured in the worker.
    expect(runMs).toBeGreaterThan(0);
    expect(Array.from(data)).toEqual([1, 2, 3, 4]);
  });

  it('moves detachable inputs to the worker: the buffer is detached here, not copied', async () => {
    // Two inputs viewing one frame-like buffer, as decoded tensors do.
    const frame = new ArrayBuffer(64);
    const data = new Float32Array(frame, 16, 4);
    data.set(input());
    const { outputs } = await session.run(
      { x: { dtype: 'float32', dims: [4], data } },
      undefined,
      true,
    );
    expect(Array.from(outputs.y!.data as Float32Array)).toEqual(expected);
    expect(frame.byteLength).toBe(0);
  });

  it('runs a group in one round trip: each item its own outputs or error, inputs kept', async () => {
    const inputs = [1, 2, 3].map((k) => new Float32Array([k, k + 1, k + 2, k + 3]));
    const results = await session.runEach([
      { inputs: { x: { dtype: 'float32', dims: [4], data: inputs[0]! } }, outputs: undefined },
      // Wrong length for its dims: this item fails in onnxruntime, the others are unaffected.
      { inputs: { x: { dtype: 'float32', dims: [4, 4], data: inputs[1]! } }, outputs: undefined },
      { inputs: { x: { dtype: 'float32', dims: [4], data: inputs[2]! } }, outputs: ['y'] },
    ]);
    expect(results.map((result) => result.ok)).toEqual([true, false, true]);
    for (const index of [0, 2]) {
      const result = results[index]!;
      if (!result.ok || !('outputs' in result)) throw new Error('expected outputs');
      const x = Array.from(inputs[index]!);
      expect(Array.from(result.outputs.y!.data as Float32Array)).toEqual(
        x.map((v) => v * scale + offset),
      );
      expect(result.runMs).toBeGreaterThanOrEqual(0);
    }
    const failed = results[1]!;
    expect(failed.ok ? undefined : failed.error.code).toBe('E_RUNTIME');
    expect(Array.from(inputs[0]!)).toEqual([1, 2, 3, 4]);
  });

  it("writes each item's result frame in the worker when asked: the frame the main thread would have sent", async () => {
    const inputs = [1, 5].map((k) => new Float32Array([k, k + 1, k + 2, k + 3]));
    const numbers = new Float64Array(3 * RESULT_FIELDS);
    const now = performance.timeOrigin + performance.now();
    [0, 1, 2].forEach((index) =>
      writeResultFields(numbers, index, {
        coldStart: index === 0,
        queueMs: 0.25 * index,
        loadMs: index === 0 ? 12.5 : 0,
        warmupMs: index === 0 ? 3.125 : 0,
        receivedAtEpochMs: now,
      }),
    );
    const results = await session.runEach(
      [
        { inputs: { x: { dtype: 'float32', dims: [4], data: inputs[0]! } }, outputs: undefined },
        { inputs: { x: { dtype: 'float32', dims: [4, 4], data: inputs[1]! } }, outputs: undefined },
        { inputs: { x: { dtype: 'float32', dims: [4], data: inputs[1]! } }, outputs: ['y'] },
      ],
      { model: 'tiny', version: '1', backend: 'cpu', ids: ['a', 'b', 'c'], numbers },
    );
    // The spec's numbers moved to the worker.
    expect(numbers.byteLength).toBe(0);
    expect(results.map((result) => result.ok)).toEqual([true, false, true]);
    const aheadMs = (index: number): number =>
      results.slice(0, index).reduce((sum, item) => sum + item.runMs, 0);
    const failed = results[1]!;
    expect(failed.ok ? undefined : failed.error.code).toBe('E_RUNTIME');
    for (const [index, id] of [
      [0, 'a'],
      [2, 'c'],
    ] as const) {
      const result = results[index]!;
      if (!result.ok || !('frame' in result)) throw new Error('expected a frame');
      const message = decodeServerMessage(result.frame);
      if (message.type !== 'result') throw new Error(`expected a result, got ${message.type}`);
      const x = Array.from(inputs[index === 0 ? 0 : 1]!);
      expect(message).toMatchObject({
        id,
        model: 'tiny',
        version: '1',
        backend: 'cpu',
        coldStart: index === 0,
        timings: {
          // Its wait behind the items before it in the group (run one after the other) is queueing.
          queueMs: toMicros(0.25 * index + aheadMs(index)),
          loadMs: index === 0 ? 12.5 : 0,
          warmupMs: index === 0 ? 3.125 : 0,
          runMs: Math.round(result.runMs * 1000) / 1000,
        },
      });
      expect(Array.from(message.outputs.y!.data as Float32Array)).toEqual(
        x.map((v) => v * scale + offset),
      );
      // From receipt (on this thread's clock) to the run's end (on the worker's).
      const elapsed = performance.timeOrigin + performance.now() - now;
      expect(message.timings.totalMs).toBeGreaterThanOrEqual(message.timings.runMs);
      expect(message.timings.totalMs).toBeLessThanOrEqual(elapsed + 0.001);
    }
  });

  it('lets runs in flight finish before it releases (ending the thread inside a run would abort the process)', async () => {
    const slowDir = await mkdtemp(join(tmpdir(), 'tandem-worker-session-slow-'));
    try {
      await writeSlowModel(slowDir);
      const slow = await WorkerSession.load(join(slowDir, 'slow', '1', 'model.onnx'), {});
      const inputs = slowInput(512, 3);
      const running = slow.run(inputs, undefined);
      const released = slow.release();
      const { outputs } = await running;
      expect(Array.from(outputs.y!.data as Float32Array)).toEqual(
        Array.from(inputs.x!.data as Float32Array),
      );
      await released;
      await expect(slow.run(inputs, undefined)).rejects.toMatchObject({ code: 'E_RUNTIME' });
    } finally {
      await rm(slowDir, { recursive: true, force: true });
    }
  });
});
