// The client's local runtime in Node: onnxruntime-web (wasm) in a worker_threads worker behind
// comlink, model files from a real server, compared with onnxruntime-node on the same file; and
// failures inside the worker reaching the caller with their TandemError codes.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import {
  buildModel,
  buildTinyModel,
  createPrng,
  fillUniform,
  realModelPath,
  rejectionCode,
  writeModelFile,
} from '@tandem/test-support';

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
    // The same inputs again: refused at once (Node's MessagePort drops a message that transfers a
    // detached buffer without a word, and this call waited forever).
    const again = runtime.run(manifest, inputs, { ...options('l-6b'), transfer: true });
    expect(await rejectionCode(again)).toBe('E_INVALID_ARGUMENT');
    const after = await runtime.run(manifest, clsInput(7), options('l-6c'));
    expect(Object.keys(after.outputs)).toHaveLength(1);
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

describe('LocalRuntime errors across the worker boundary', () => {
  let dir: string;
  let server: TandemServer;
  let runtime: LocalRuntime;
  let url: string;

  const manifestOf = async (name: string): Promise<ModelManifest> =>
    parseModelManifest(await (await fetch(`${url}/v1/models/${name}/manifest`)).json());

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-worker-errors-'));
    const tiny = buildTinyModel().bytes;
    await writeModelFile(dir, 'tiny', 1, tiny);
    // Valid ONNX (Relu-14 allows int16) that onnxruntime's CPU kernels do not implement.
    await writeModelFile(
      dir,
      'relu-int16',
      1,
      buildModel({
        inputs: [{ name: 'x', dtype: 'int16', dims: [2] }],
        outputs: [{ name: 'y', dtype: 'int16', dims: [2] }],
        nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      }),
    );
    // A file cut short: its sha256 matches the manifest (the server hashes what it has), so the
    // download passes and onnxruntime-web itself, in the worker, is what refuses it.
    await writeModelFile(dir, 'truncated', 1, tiny.subarray(0, tiny.byteLength - 9));
    server = await createServer({ port: 0, modelsDir: dir, catalog: false });
    url = await server.listen();
    runtime = new LocalRuntime({ files: new ModelFileStore({ baseUrl: url }) });
  });

  afterAll(async () => {
    await runtime.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the code of a session that fails to load or run, and runs the next good call', async () => {
    const tiny = await manifestOf('tiny');
    const float = (n: number): TensorMap => ({
      x: { dtype: 'float32', dims: [n], data: Float32Array.from({ length: n }, (_, i) => i) },
    });
    // Failures of session creation, each classified inside the worker.
    expect(
      await rejectionCode(
        runtime.run(
          await manifestOf('relu-int16'),
          { x: { dtype: 'int16', dims: [2], data: new Int16Array([-1, 1]) } },
          options('e-1'),
        ),
      ),
    ).toBe('E_UNSUPPORTED_OP');
    expect(
      await rejectionCode(runtime.run(await manifestOf('truncated'), float(2), options('e-2'))),
    ).toBe('E_MODEL_LOAD_FAILED');
    // Failures of runs on a compiled session: inputs onnxruntime-web refuses.
    await runtime.warm(tiny);
    const ints = { x: { dtype: 'int32', dims: [3], data: new Int32Array(3) } } as const;
    expect(await rejectionCode(runtime.run(tiny, ints, options('e-3')))).toBe('E_INPUT_DTYPE');
    const matrix = { x: { dtype: 'float32', dims: [1, 3], data: new Float32Array(3) } } as const;
    expect(await rejectionCode(runtime.run(tiny, matrix, options('e-4')))).toBe('E_INPUT_SHAPE');
    expect(await rejectionCode(runtime.run(tiny, {}, options('e-5')))).toBe('E_INPUT_MISSING');
    // Outputs read as the server reads them: an unknown name is the caller's mistake, not a
    // runtime failure that would fall back; an empty list asks for every output.
    expect(
      await rejectionCode(runtime.run(tiny, float(4), { ...options('e-7'), outputs: ['nope'] })),
    ).toBe('E_OUTPUT_NOT_FOUND');
    const all = await runtime.run(tiny, float(4), { ...options('e-8'), outputs: [] });
    expect(Object.keys(all.outputs)).toEqual(['y']);
    // None of them broke the worker: the same runtime computes y = 2x + 1.
    const after = await runtime.run(tiny, float(4), options('e-6'));
    expect(Array.from(after.outputs.y!.data as Float32Array)).toEqual([1, 3, 5, 7]);
  });
});
