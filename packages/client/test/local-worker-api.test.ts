// The worker's warm-up model: valid ONNX that onnxruntime runs, and the model it says it is (built
// here again with the test fixtures' ONNX writer). The probe's use of it runs in
// test/client-local-runtime.test.ts (Node) and test/client-browser.test.ts (Chromium). Then the
// worker API over a fake onnxruntime-web: loads of one key that overlap share one session, a
// release waits for the run in flight, and every load waiting for onnxruntime-web's runtime hears
// its download.

import * as ort from 'onnxruntime-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { TensorMap } from '@tandem/shared';
import { buildModel, rejectionCode } from '@tandem/test-support';
import {
  createLocalWorkerApi,
  warmUpModel,
  type LocalWorkerApi,
  type ModelBytes,
} from '../src/local-worker-api.js';
import { deferred, fakeOrt, type FakeOrt } from './fake-ort.js';

describe('warmUpModel', () => {
  it('is y = Identity(x) on float32[1], and onnxruntime runs it', async () => {
    expect(warmUpModel()).toEqual(
      buildModel({
        graphName: 'warm',
        inputs: [{ name: 'x', dtype: 'float32', dims: [1] }],
        outputs: [{ name: 'y', dtype: 'float32', dims: [1] }],
        nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
      }),
    );
    const session = await ort.InferenceSession.create(warmUpModel());
    const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array([3]), [1]) });
    expect(Array.from(y!.data as Float32Array)).toEqual([3]);
    await session.release();
  });
});

const MODEL_A = Uint8Array.of(1, 2, 3);
const MODEL_B = Uint8Array.of(4, 5, 6);
/** The two models' files as a load takes them (no external data). */
const FILES_A: ModelBytes = { model: MODEL_A, externalData: [] };
const FILES_B: ModelBytes = { model: MODEL_B, externalData: [] };
const RUNTIME_URL = 'https://app.example/assets/ort-wasm-simd-threaded.wasm';
const RUNTIME_BYTES = 4096;

/** The worker's API over a fake onnxruntime-web, probed. */
async function probedApi(ort: FakeOrt, cacheName?: string): Promise<LocalWorkerApi> {
  const api = createLocalWorkerApi({ full: () => Promise.resolve(ort.module) });
  await api.probe({ allowSoftwareGpu: false, ...(cacheName === undefined ? {} : { cacheName }) });
  return api;
}

describe('createLocalWorkerApi: loads', () => {
  it('compiles a key once when two first loads of it overlap, and both get that session', async () => {
    const compiling = deferred();
    const ort = fakeOrt({ compile: () => compiling.promise });
    const api = await probedApi(ort);
    const first = api.load('a', FILES_A, 'wasm');
    const second = api.load('a', FILES_A, 'wasm');
    compiling.resolve();
    const [one, two] = await Promise.all([first, second]);
    expect(ort.creates).toBe(1);
    expect(ort.sessions).toHaveLength(1);
    expect(one).toMatchObject({ compiled: true, inputNames: ['x'], outputNames: ['y'] });
    expect(two).toMatchObject({ compiled: false, inputNames: ['x'], outputNames: ['y'] });
    // Loaded again later: the same session, nothing to wait for.
    expect(await api.load('a', FILES_A, 'wasm')).toMatchObject({ compiled: false, compileMs: 0 });
    await api.release('a');
    expect(ort.sessions[0]!.released).toBe(true);
  });

  it('fails every load waiting on a creation that fails, and the next load compiles afresh', async () => {
    const ort = fakeOrt({
      compile: (n) => (n === 0 ? Promise.reject(new Error('bad model')) : Promise.resolve()),
    });
    const api = await probedApi(ort);
    const first = api.load('a', FILES_A, 'wasm');
    const second = api.load('a', FILES_A, 'wasm');
    expect(await rejectionCode(first)).toBe('E_MODEL_LOAD_FAILED');
    expect(await rejectionCode(second)).toBe('E_MODEL_LOAD_FAILED');
    expect(ort.creates).toBe(1);
    expect(await api.load('a', FILES_A, 'wasm')).toMatchObject({ compiled: true });
    expect(ort.creates).toBe(2);
    expect(ort.sessions).toHaveLength(1);
  });
});

describe('createLocalWorkerApi: release', () => {
  it('releases a session once the run in flight on it is done; the next load compiles again', async () => {
    const running = deferred();
    const ort = fakeOrt({ run: () => running.promise });
    const api = await probedApi(ort);
    await api.load('a', FILES_A, 'wasm');
    const inputs: TensorMap = { x: { dtype: 'float32', dims: [1], data: new Float32Array([2]) } };
    const run = api.run('a', inputs, undefined);
    const released = api.release('a');
    running.resolve();
    expect(Array.from((await run).y!.data as Float32Array)).toEqual([2]);
    await released;
    expect(ort.sessions[0]).toMatchObject({ released: true, runsAtRelease: 0 });
    expect(await api.load('a', FILES_A, 'wasm')).toMatchObject({ compiled: true });
    expect(ort.sessions).toHaveLength(2);
  });
});

describe('createLocalWorkerApi: runs', () => {
  it("runs one at a time, whichever session each is on: onnxruntime-web's WebGPU build fails a run that starts while another is under way", async () => {
    // As onnxruntime-web's full (JSEP) build does: one run in progress for the whole module.
    let inProgress = false;
    const gates = [deferred(), deferred(), deferred()];
    let runs = 0;
    const ort = fakeOrt({
      run: async () => {
        if (inProgress) throw new Error('Session already started');
        inProgress = true;
        try {
          await gates[runs++]!.promise;
        } finally {
          inProgress = false;
        }
      },
    });
    const api = await probedApi(ort);
    await api.load('a', FILES_A, 'wasm');
    await api.load('b', FILES_B, 'wasm');
    const input = (value: number): TensorMap => ({
      x: { dtype: 'float32', dims: [1], data: new Float32Array([value]) },
    });
    const all = [api.run('a', input(1), undefined), api.run('a', input(2), undefined)];
    all.push(api.run('b', input(3), undefined));
    for (const gate of gates) gate.resolve();
    const outputs = await Promise.all(all);
    expect(outputs.map((out) => Array.from(out.y!.data as Float32Array))).toEqual([[1], [2], [3]]);
  });
});

describe('createLocalWorkerApi: the runtime download', () => {
  let runtimeBody: ReadableStreamDefaultController<Uint8Array>;

  beforeEach(() => {
    // A browser worker's first visit: Cache Storage with no runtime in it, and a network whose
    // runtime response the test writes.
    const cache = {
      match: () => Promise.resolve(undefined),
      put: (_key: string, response: Response) => response.arrayBuffer().then(() => undefined),
      keys: () => Promise.resolve([]),
      delete: () => Promise.resolve(false),
    };
    vi.stubGlobal('caches', { open: () => Promise.resolve(cache) });
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        runtimeBody = controller;
      },
    });
    vi.stubGlobal('fetch', () =>
      Promise.resolve(new Response(body, { headers: { 'content-length': String(RUNTIME_BYTES) } })),
    );
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  /** Sends the runtime's bytes in two halves and ends the response. */
  const sendRuntime = (): void => {
    runtimeBody.enqueue(new Uint8Array(RUNTIME_BYTES / 2));
    runtimeBody.enqueue(new Uint8Array(RUNTIME_BYTES / 2));
    runtimeBody.close();
  };

  /**
   * Each creation waits for onnxruntime-web's runtime, which the first one fetches (through the
   * worker's fetch, the runtime cache's, as onnxruntime-web does); `fails` names models whose
   * creation fails before that.
   */
  const runtimeOrt = (fails: Uint8Array[] = []): FakeOrt => {
    let runtime: Promise<void> | undefined;
    return fakeOrt({
      compile: (_n, bytes) => {
        if (fails.includes(bytes)) return Promise.reject(new Error('bad model'));
        runtime ??= globalThis
          .fetch(RUNTIME_URL)
          .then((response) => response.arrayBuffer())
          .then(() => undefined);
        return runtime;
      },
    });
  };

  it('reports the runtime download to every load waiting for it', async () => {
    const api = await probedApi(runtimeOrt(), 'bucket');
    const heard: number[][] = [[], [], []];
    const loads = [
      api.load('a', FILES_A, 'wasm', (loaded) => heard[0]!.push(loaded)),
      api.load('b', FILES_B, 'wasm', (loaded) => heard[1]!.push(loaded)),
      // A second first load of 'a': it waits for the first one's session, and for the runtime.
      api.load('a', FILES_A, 'wasm', (loaded) => heard[2]!.push(loaded)),
    ];
    sendRuntime();
    await Promise.all(loads);
    for (const bytes of heard) expect(bytes.at(-1)).toBe(RUNTIME_BYTES);
  });

  it('stops reporting to a load once it ends, and only to that load', async () => {
    const api = await probedApi(runtimeOrt([MODEL_A]), 'bucket');
    const heardA: number[] = [];
    const heardB: number[] = [];
    const a = api.load('a', FILES_A, 'wasm', (loaded) => heardA.push(loaded));
    const b = api.load('b', FILES_B, 'wasm', (loaded) => heardB.push(loaded));
    expect(await rejectionCode(a)).toBe('E_MODEL_LOAD_FAILED');
    sendRuntime();
    await b;
    expect(heardA).toEqual([]);
    expect(heardB.at(-1)).toBe(RUNTIME_BYTES);
  });
});
