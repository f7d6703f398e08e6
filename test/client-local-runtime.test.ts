// The client's local runtime in Node: onnxruntime-web (wasm) in a worker_threads worker behind
// comlink, model files from a real server, compared with onnxruntime-node on the same file.

import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseModelManifest,
  type ModelManifest,
  type ProgressEvent,
  type TensorMap,
} from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { LocalRuntime, ModelFileStore, defaultWorker, type WorkerHandle } from '@tandem/client';
import { createPrng, fillUniform, realModelPath, rejectionCode } from '@tandem/test-support';

function clsInput(seed: number): TensorMap {
  const data = fillUniform(new Float32Array(3 * 48 * 192), createPrng(seed), 0, 1);
  return { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } };
}

function options(
  jobId: string,
  events: ProgressEvent[] = [],
  signal = new AbortController().signal,
) {
  return { jobId, priority: 5, signal, onProgress: (e: ProgressEvent) => events.push(e) };
}

describe('LocalRuntime (onnxruntime-web wasm in worker_threads)', () => {
  let server: TandemServer;
  let manifest: ModelManifest;
  let runtime: LocalRuntime;
  let url: string;

  beforeAll(async () => {
    server = await createServer({ port: 0 });
    url = await server.listen();
    manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json(),
    );
    runtime = new LocalRuntime({ files: new ModelFileStore({ baseUrl: url }) });
  });

  afterAll(async () => {
    await runtime.close();
    await server.close();
  });

  it('finds wasm (and no WebGPU) in Node', async () => {
    const info = await runtime.backendInfo();
    expect(info.backends).toEqual(['wasm']);
  });

  it('downloads, compiles and runs with outputs equal to onnxruntime-node within float tolerance', async () => {
    const inputs = clsInput(1);
    const events: ProgressEvent[] = [];
    const result = await runtime.run(manifest, inputs, options('l-1', events));
    const session = await ort.InferenceSession.create(realModelPath('paddleocr-cls'));
    const direct = await session.run({
      x: new ort.Tensor('float32', inputs.x!.data as Float32Array, [1, 3, 48, 192]),
    });
    await session.release();
    const name = session.outputNames[0]!;
    const local = result.outputs[name]!.data as Float32Array;
    const expected = direct[name]!.data as Float32Array;
    expect(local.length).toBe(expected.length);
    for (let i = 0; i < local.length; i++)
      expect(Math.abs(local[i]! - expected[i]!)).toBeLessThan(1e-4);
    expect(result.backend).toBe('wasm');
    expect(result.cold).toBe(true);
    const stages = events.map((e) => e.stage);
    expect(stages[0]).toBe('resolve');
    expect(stages).toEqual(expect.arrayContaining(['download', 'cache', 'compile', 'running']));
    const firstDownload = events.find((e) => e.stage === 'download');
    expect(firstDownload?.total).toBe(manifest.bytes);
    for (let i = 1; i < events.length; i++)
      expect(events[i]!.fraction).toBeGreaterThanOrEqual(events[i - 1]!.fraction);
  });

  it('runs warm the second time, with measured estimates', async () => {
    const events: ProgressEvent[] = [];
    const result = await runtime.run(manifest, clsInput(2), options('l-2', events));
    expect(result.cold).toBe(false);
    expect(events.map((e) => e.stage)).not.toContain('download');
    const estimate = await runtime.estimate(manifest);
    expect(estimate.available).toBe(true);
    expect(estimate.ms).toBeGreaterThan(0);
  });

  it('refuses a model that needs WebGPU here with E_NO_BACKEND', async () => {
    const needsGpu: ModelManifest = { ...manifest, placement: { minBackend: 'webgpu' } };
    expect((await runtime.estimate(needsGpu)).available).toBe(false);
    expect(await rejectionCode(runtime.run(needsGpu, clsInput(3), options('l-3')))).toBe(
      'E_NO_BACKEND',
    );
  });

  it('cancels a run with E_CANCELLED and stays usable', async () => {
    const abort = new AbortController();
    const pending = runtime.run(manifest, clsInput(4), {
      ...options('l-4', [], abort.signal),
      onProgress: (event: ProgressEvent) => {
        if (event.stage === 'running') abort.abort();
      },
    });
    expect(await rejectionCode(pending)).toBe('E_CANCELLED');
    const after = await runtime.run(manifest, clsInput(5), options('l-5'));
    expect(Object.keys(after.outputs)).toHaveLength(1);
  });

  it('transfers inputs instead of copying them when asked', async () => {
    const inputs = clsInput(6);
    const data = inputs.x!.data as Float32Array;
    await runtime.run(manifest, inputs, { ...options('l-6'), transfer: true });
    expect(data.byteLength).toBe(0); // detached: it moved to the worker
  });

  it('fails calls in flight with E_RUNTIME when the worker dies, and starts a new one after', async () => {
    let handle: WorkerHandle | undefined;
    const crashing = new LocalRuntime({
      files: new ModelFileStore({ baseUrl: url }),
      createWorker: async () => (handle = await defaultWorker()),
    });
    try {
      const pending = crashing.run(manifest, clsInput(7), {
        ...options('l-7'),
        onProgress: (event: ProgressEvent) => {
          // Killed from outside, as an out-of-memory abort or a crash in the runtime would.
          if (event.stage === 'running') void handle?.terminate();
        },
      });
      expect(await rejectionCode(pending)).toBe('E_RUNTIME');
      const first = handle;
      const after = await crashing.run(manifest, clsInput(8), options('l-8'));
      expect(Object.keys(after.outputs)).toHaveLength(1);
      expect(handle).not.toBe(first);
    } finally {
      await crashing.close();
    }
  });

  it('ends a run in flight with E_CANCELLED on close(), and every call after it', async () => {
    const closing = new LocalRuntime({ files: new ModelFileStore({ baseUrl: url }) });
    await closing.warm(manifest);
    let closed: Promise<void> | undefined;
    const pending = closing.run(manifest, clsInput(9), {
      ...options('l-9'),
      onProgress: (event: ProgressEvent) => {
        if (event.stage === 'running') closed = closing.close();
      },
    });
    expect(await rejectionCode(pending)).toBe('E_CANCELLED');
    await closed;
    expect(await rejectionCode(closing.run(manifest, clsInput(10), options('l-10')))).toBe(
      'E_CANCELLED',
    );
  });
});
