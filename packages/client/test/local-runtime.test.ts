// LocalRuntime's handling of its worker, with a fake worker (comlink over a MessageChannel) whose
// runs fail as a lost GPU device or an exhausted wasm heap would: the worker is replaced, and the
// next call runs on a fresh one. A worker that fails to start, or a backend probe that fails, is
// tried again by the next call rather than remembered. Then the real worker API over a fake
// onnxruntime-web (fake-ort.ts), for how calls share its sessions. Real onnxruntime-web in a real
// worker is tested in test/client-local-runtime.test.ts (Node) and test/client-browser.test.ts
// (Chromium).

import { expose } from 'comlink';
import { describe, expect, it, vi } from 'vitest';
import { TandemError, type ModelManifest, type TensorMap } from '@tandem/shared';
import { rejectionCode } from '@tandem/test-support';
import { LocalRuntime, type WorkerHandle } from '../src/local-runtime.js';
import { createLocalWorkerApi } from '../src/local-worker-api.js';
import { ModelFileStore, sha256Hex, type ModelFile } from '../src/model-files.js';
import { fakeCaches } from './fake-caches.js';
import { gatedFetch } from './fake-fetch.js';
import { deferred, fakeOrt, type FakeOrt } from './fake-ort.js';

const manifest: ModelManifest = {
  name: 'm',
  url: 'https://models.example/m.onnx',
  bytes: 4,
  sha256: '0'.repeat(64),
};

/** A store that always has the model, and gives the files `stored` makes (a 4-byte .onnx). */
function storeWith(stored: () => Pick<ModelFile, 'bytes' | 'externalData'>): ModelFileStore {
  return {
    cacheName: 'test',
    has: () => Promise.resolve(true),
    bytesToDownload: () => Promise.resolve(0),
    get: () =>
      Promise.resolve({
        ...stored(),
        cached: true,
        downloadMs: 0,
        downloadWaitMs: 0,
        downloadedBytes: 0,
      }),
  } as unknown as ModelFileStore;
}

const files = storeWith(() => ({ bytes: new Uint8Array(4), externalData: [] }));

const inputs = (): TensorMap => ({
  x: { dtype: 'float32', dims: [1], data: new Float32Array([1]) },
});

/**
 * Starts fake workers; the n-th one's runs fail with `failures[n]`, when given. Its first
 * `probeFailures` probes (counted across workers) fail with E_RUNTIME.
 */
function fakeWorkers(failures: (string | undefined)[], probeFailures = 0) {
  const started: { terminated: boolean }[] = [];
  let probes = 0;
  const createWorker = (): Promise<WorkerHandle> => {
    const failure = failures[started.length];
    const state = { terminated: false };
    started.push(state);
    const { port1, port2 } = new MessageChannel();
    expose(
      {
        probe: () => {
          if (probes++ < probeFailures) throw new TandemError('E_RUNTIME', 'fake probe failure');
          return { backends: ['wasm'], softwareGpu: false, threads: 1 };
        },
        load: () => ({
          backend: 'wasm',
          compileMs: 1,
          compiled: true,
          inputNames: ['x'],
          outputNames: ['y'],
        }),
        run: (_key: string, given: TensorMap) => {
          if (failure !== undefined) throw new TandemError(failure as never, `fake ${failure}`);
          return { y: given.x };
        },
      },
      port2,
    );
    return Promise.resolve({
      endpoint: port1,
      terminate: () => {
        state.terminated = true;
        port1.close();
        port2.close();
      },
    });
  };
  return { started, createWorker };
}

const options = {
  jobId: 'j',
  priority: 5,
  signal: new AbortController().signal,
  onProgress: () => undefined,
};

describe('LocalRuntime', () => {
  for (const code of ['E_DEVICE_LOST', 'E_OUT_OF_MEMORY']) {
    it(`replaces the worker after ${code}, and the next call runs on a fresh one`, async () => {
      const workers = fakeWorkers([code]);
      const runtime = new LocalRuntime({ files, createWorker: workers.createWorker });
      try {
        expect(await rejectionCode(runtime.run(manifest, inputs(), options))).toBe(code);
        expect(workers.started).toEqual([{ terminated: true }]);
        const result = await runtime.run(manifest, inputs(), options);
        expect(Array.from(result.outputs.y!.data as Float32Array)).toEqual([1]);
        expect(result.cold).toBe(true); // compiled again in the new worker
        expect(workers.started).toEqual([{ terminated: true }, { terminated: false }]);
      } finally {
        await runtime.close();
      }
    });
  }

  it('keeps the worker after a failure that is about the call (E_RUNTIME)', async () => {
    const workers = fakeWorkers(['E_RUNTIME']);
    const runtime = new LocalRuntime({ files, createWorker: workers.createWorker });
    try {
      expect(await rejectionCode(runtime.run(manifest, inputs(), options))).toBe('E_RUNTIME');
      expect(await rejectionCode(runtime.run(manifest, inputs(), options))).toBe('E_RUNTIME');
      expect(workers.started).toEqual([{ terminated: false }]);
    } finally {
      await runtime.close();
    }
  });

  it('probes again after a failed probe: one failure does not disable local runs', async () => {
    const workers = fakeWorkers([], 1);
    const runtime = new LocalRuntime({ files, createWorker: workers.createWorker });
    try {
      expect(await runtime.estimate(manifest)).toMatchObject({
        available: false,
        code: 'E_RUNTIME',
      });
      expect(await runtime.estimate(manifest)).toMatchObject({ available: true });
      const result = await runtime.run(manifest, inputs(), options);
      expect(result.backend).toBe('wasm');
      expect(workers.started).toEqual([{ terminated: false }]); // the same worker, probed twice
    } finally {
      await runtime.close();
    }
  });

  it('starts a worker again after a failed start', async () => {
    const workers = fakeWorkers([]);
    let attempts = 0;
    const runtime = new LocalRuntime({
      files,
      createWorker: () =>
        attempts++ === 0
          ? Promise.reject(new TandemError('E_RUNTIME', 'fake start failure'))
          : workers.createWorker(),
    });
    try {
      expect(await rejectionCode(runtime.run(manifest, inputs(), options))).toBe('E_RUNTIME');
      expect(await runtime.estimate(manifest)).toMatchObject({ available: true });
      expect((await runtime.run(manifest, inputs(), options)).backend).toBe('wasm');
      expect(attempts).toBe(2);
    } finally {
      await runtime.close();
    }
  });
});

/**
 * Starts workers that run the real worker API over `ort`, each on a MessageChannel; `onLoad`,
 * `onRun` and `onCancelRun` hear each such call arrive in the worker.
 */
function apiWorkers(
  ort: FakeOrt,
  onLoad?: () => void,
  onRun?: () => void,
  onCancelRun?: () => void,
): () => Promise<WorkerHandle> {
  return () => {
    const { port1, port2 } = new MessageChannel();
    const api = createLocalWorkerApi({ full: () => Promise.resolve(ort.module) });
    const load: typeof api.load = (...args) => {
      onLoad?.();
      return api.load(...args);
    };
    const run: typeof api.run = (...args) => {
      const running = api.run(...args);
      onRun?.();
      return running;
    };
    const cancelRun: typeof api.cancelRun = (...args) => {
      api.cancelRun(...args);
      onCancelRun?.();
    };
    expose({ ...api, load, run, cancelRun }, port2);
    return Promise.resolve({
      endpoint: port1,
      terminate: () => {
        port1.close();
        port2.close();
      },
    });
  };
}

describe('LocalRuntime sessions in the worker', () => {
  it('loads and compiles once for two first runs at once, though the one that started it is cancelled', async () => {
    const compiling = deferred();
    const ort = fakeOrt({ compile: () => compiling.promise });
    // Both calls read the file before either has a session to find.
    const loading = deferred();
    let loads = 0;
    const createWorker = apiWorkers(ort, () => {
      loads++;
      loading.resolve();
    });
    const runtime = new LocalRuntime({ files, createWorker });
    try {
      const abort = new AbortController();
      const cancelled = runtime.run(manifest, inputs(), {
        ...options,
        signal: abort.signal,
        onProgress: (event) => {
          if (event.stage === 'compile') abort.abort();
        },
      });
      const other = runtime.run(manifest, inputs(), options);
      expect(await rejectionCode(cancelled)).toBe('E_CANCELLED');
      await loading.promise;
      compiling.resolve();
      expect((await other).cold).toBe(true);
      expect((await runtime.run(manifest, inputs(), options)).cold).toBe(false);
      // One load reached the worker (the second call took the first one's session), and the
      // worker compiled once (it would also have joined a second load of the key to the first).
      expect(loads).toBe(1);
      expect(ort.creates).toBe(1);
      expect(ort.sessions).toHaveLength(1);
    } finally {
      await runtime.close();
    }
  });

  it('a run cancelled while it waits for its turn in the worker is never run there; the next run waits only for the one running', async () => {
    const first = deferred();
    let ran = 0;
    const ort = fakeOrt({
      run: () => (ran++ === 0 ? first.promise : Promise.resolve()),
    });
    const arrived: (() => void)[] = [];
    const told = deferred();
    const createWorker = apiWorkers(
      ort,
      undefined,
      () => arrived.shift()?.(),
      () => told.resolve(),
    );
    const runtime = new LocalRuntime({ files, createWorker });
    const reached = (): Promise<void> => new Promise((resolve) => arrived.push(resolve));
    try {
      await runtime.warm(manifest);
      const running = reached();
      const a = runtime.run(manifest, inputs(), { ...options, jobId: 'a' });
      await running;
      const abort = new AbortController();
      const waiting = reached();
      const b = runtime.run(manifest, inputs(), { ...options, jobId: 'b', signal: abort.signal });
      await waiting;
      abort.abort();
      expect(await rejectionCode(b)).toBe('E_CANCELLED');
      // The worker has heard of the cancel before a's run ends and b's turn comes.
      await told.promise;
      first.resolve();
      expect(await rejectionCode(a)).toBe('ok');
      expect(await rejectionCode(runtime.run(manifest, inputs(), { ...options, jobId: 'c' }))).toBe(
        'ok',
      );
      // a and c: b was dropped before its turn came.
      expect(ran).toBe(2);
    } finally {
      await runtime.close();
    }
  });

  it('a run that finds the model still compiling (a warm() in flight) is cold, and so is the estimate until then', async () => {
    const compiling = deferred();
    const loadArrived = deferred();
    const ort = fakeOrt({ compile: () => compiling.promise });
    const runtime = new LocalRuntime({
      files,
      createWorker: apiWorkers(ort, () => loadArrived.resolve()),
    });
    try {
      const warming = runtime.warm(manifest);
      await loadArrived.promise;
      expect(await runtime.estimate(manifest)).toMatchObject({ cold: true });
      const stages: string[] = [];
      const run = runtime.run(manifest, inputs(), {
        ...options,
        onProgress: (event) => stages.push(event.stage),
      });
      compiling.resolve();
      await warming;
      const result = await run;
      expect(result.cold).toBe(true);
      expect(stages).toContain('compile');
      expect(result.timings.downloadMs).toBe(0);
      expect(await runtime.estimate(manifest)).toMatchObject({ cold: false });
      expect((await runtime.run(manifest, inputs(), options)).cold).toBe(false);
      expect(ort.creates).toBe(1);
    } finally {
      await runtime.close();
    }
  });

  it('estimates a compile under way at what is left of the measured compile time', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      let compiling = deferred();
      let compiles = 0;
      const ort = fakeOrt({
        compile: () => (compiles++ === 0 ? compiling.promise : Promise.resolve()),
      });
      const loadArrived: (() => void)[] = [];
      const runtime = new LocalRuntime({
        files,
        createWorker: apiWorkers(ort, () => loadArrived.shift()?.()),
      });
      try {
        // A first compile measured at 1,000 ms on the (fake) clock, and one run.
        let arrived = new Promise<void>((resolve) => loadArrived.push(resolve));
        const first = runtime.run(manifest, inputs(), options);
        await arrived;
        vi.advanceTimersByTime(1000);
        compiling.resolve();
        await first;
        await runtime.release(manifest.name);
        // The next compile, held: its estimate shrinks as it goes on.
        compiling = deferred();
        compiles = 0;
        arrived = new Promise<void>((resolve) => loadArrived.push(resolve));
        const warming = runtime.warm(manifest);
        await arrived;
        const atStart = await runtime.estimate(manifest);
        vi.advanceTimersByTime(400);
        const later = await runtime.estimate(manifest);
        expect(atStart).toMatchObject({ available: true, cold: true });
        expect(atStart.ms! - later.ms!).toBeCloseTo(400, 6);
        vi.advanceTimersByTime(1000);
        // Past the average: nothing left but the run.
        const overdue = await runtime.estimate(manifest);
        expect(overdue.ms!).toBeCloseTo(atStart.ms! - 1000, 6);
        compiling.resolve();
        await warming;
      } finally {
        await runtime.close();
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it("a run that joins another run's download under way reports only its own wait as downloadMs", async () => {
    // A clock that moves only when told: the download takes 1,000 ms, the second run joins at 600.
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const file = Uint8Array.from([1, 2, 3, 4]);
      const model: ModelManifest = { ...manifest, sha256: await sha256Hex(file) };
      const gate = gatedFetch();
      const runtime = new LocalRuntime({
        files: new ModelFileStore({ fetch: gate.fetch }),
        createWorker: apiWorkers(fakeOrt()),
      });
      try {
        const first = runtime.run(model, inputs(), { ...options, jobId: 'first' });
        const body = await gate.requested(1);
        body.push(file.subarray(0, 2));
        vi.advanceTimersByTime(600);
        // It has joined once it hears the download's progress so far.
        const joined = deferred();
        const second = runtime.run(model, inputs(), {
          ...options,
          jobId: 'second',
          onProgress: (event) => {
            if (event.stage === 'download') joined.resolve();
          },
        });
        await joined.promise;
        vi.advanceTimersByTime(400);
        body.push(file.subarray(2));
        body.end();
        const [started, late] = await Promise.all([first, second]);
        expect(gate.bodies).toHaveLength(1);
        expect(started.timings.downloadMs).toBe(1000);
        expect(late.timings.downloadMs).toBe(400);
        expect(late.timings.downloadMs).toBeLessThan(started.timings.downloadMs!);
        expect(late.cold).toBe(true);
      } finally {
        await runtime.close();
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it('release() lets go of a model after the run in flight on it; the next run compiles again', async () => {
    const running = deferred();
    let runs = 0;
    // The second run is held in the worker until the test lets it finish.
    const ort = fakeOrt({ run: () => (++runs === 2 ? running.promise : Promise.resolve()) });
    const runtime = new LocalRuntime({ files, createWorker: apiWorkers(ort) });
    try {
      expect((await runtime.run(manifest, inputs(), options)).cold).toBe(true);
      const releaseCalled = deferred();
      let released: Promise<void> | undefined;
      const inFlight = runtime.run(manifest, inputs(), {
        ...options,
        onProgress: (event) => {
          if (event.stage !== 'running') return;
          try {
            released = runtime.release(manifest.name);
          } finally {
            releaseCalled.resolve();
          }
        },
      });
      await releaseCalled.promise;
      await released;
      expect(await runtime.estimate(manifest)).toMatchObject({ cold: true });
      running.resolve();
      const result = await inFlight;
      expect(result.cold).toBe(false);
      expect(Array.from(result.outputs.y!.data as Float32Array)).toEqual([1]);
      await ort.sessions[0]!.whenReleased;
      expect(ort.sessions[0]!.runsAtRelease).toBe(0);
      expect((await runtime.run(manifest, inputs(), options)).cold).toBe(true);
      expect(ort.sessions).toHaveLength(2);
      expect(ort.sessions[1]!.released).toBe(false);
    } finally {
      await runtime.close();
    }
  });
});

describe('LocalRuntime and a model with external data', () => {
  const withWeights: ModelManifest = {
    ...manifest,
    externalData: [
      {
        path: 'weights.bin',
        url: 'https://models.example/w.bin',
        bytes: 16,
        sha256: '1'.repeat(64),
      },
    ],
  };

  it("gives the worker the .onnx and each external data file (onnxruntime's externalData option), moving their bytes rather than copying them", async () => {
    const model = Uint8Array.of(1, 2, 3, 4);
    const weights = new Uint8Array(16).fill(7);
    const stored = storeWith(() => ({
      bytes: model,
      externalData: [{ path: 'weights.bin', data: weights }],
    }));
    const ort = fakeOrt();
    const runtime = new LocalRuntime({ files: stored, createWorker: apiWorkers(ort) });
    try {
      await runtime.run(withWeights, inputs(), options);
      expect(ort.sessions).toHaveLength(1);
      expect(ort.sessions[0]!.bytes).toEqual(Uint8Array.of(1, 2, 3, 4));
      expect(ort.sessions[0]!.externalData).toEqual([
        { path: 'weights.bin', data: new Uint8Array(16).fill(7) },
      ]);
      // Transferred: the page's copies are gone (detached), not cloned.
      expect(model.byteLength).toBe(0);
      expect(weights.byteLength).toBe(0);
    } finally {
      await runtime.close();
    }
  });

  it("estimates a cold run's download from the bytes of every file not stored, at the bandwidth measured over all files", async () => {
    // A clock that moves only when told: the model's 4 + 12 bytes take 1,000 ms to download, and
    // compiling and running take no time at all.
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const onnx = Uint8Array.of(1, 2, 3, 4);
      const weights = Uint8Array.from({ length: 12 }, (_, i) => i);
      const weightsUrl = 'https://models.example/weights.bin';
      const model: ModelManifest = {
        ...manifest,
        sha256: await sha256Hex(onnx),
        externalData: [
          {
            path: 'weights.bin',
            url: weightsUrl,
            bytes: weights.byteLength,
            sha256: await sha256Hex(weights),
          },
        ],
      };
      const gate = gatedFetch();
      const caches = fakeCaches();
      const store = new ModelFileStore({ fetch: gate.fetch, caches });
      const runtime = new LocalRuntime({ files: store, createWorker: apiWorkers(fakeOrt()) });
      try {
        const totals: number[] = [];
        const run = runtime.run(model, inputs(), {
          ...options,
          onProgress: (event) => {
            if (event.stage === 'download') totals.push(event.total!);
          },
        });
        const first = await gate.requested(1);
        first.push(onnx);
        first.end();
        const second = await gate.requested(2);
        vi.advanceTimersByTime(1000);
        second.push(weights);
        second.end();
        expect((await run).timings.downloadMs).toBe(1000);
        expect(new Set(totals)).toEqual(new Set([16]));
        await runtime.release(model.name);
        // The weights gone from storage (evicted, say), the .onnx still there: a run would
        // download 12 bytes at 16 bytes a second.
        const bucket = await caches.open(store.cacheName);
        for (const request of await bucket.keys()) {
          if (request.url.startsWith(weightsUrl)) await bucket.delete(request);
        }
        const partly = await runtime.estimate(model);
        expect(partly).toMatchObject({ available: true, cold: true });
        expect(partly.ms).toBeCloseTo(750, 6);
        // Nothing stored: all 16 bytes.
        await store.delete(model.name);
        expect((await runtime.estimate(model)).ms).toBeCloseTo(1000, 6);
      } finally {
        await runtime.close();
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it('two models of other names on the same files, fetched at once, each get the bytes: the second reads them again once the first moved them to the worker', async () => {
    const onnx = Uint8Array.of(1, 2, 3, 4);
    const weights = new Uint8Array(16).fill(7);
    const model: ModelManifest = {
      ...withWeights,
      sha256: await sha256Hex(onnx),
      externalData: [{ ...withWeights.externalData![0]!, sha256: await sha256Hex(weights) }],
    };
    const gate = gatedFetch();
    const ort = fakeOrt();
    const runtime = new LocalRuntime({
      files: new ModelFileStore({ fetch: gate.fetch }),
      createWorker: apiWorkers(ort),
    });
    try {
      const first = runtime.run(model, inputs(), options);
      const second = runtime.run({ ...model, name: 'alias' }, inputs(), options);
      for (const [n, body] of [onnx, weights].entries()) {
        const response = await gate.requested(n + 1);
        response.push(body);
        response.end();
      }
      await Promise.all([first, second]);
      expect(gate.bodies).toHaveLength(2); // one download, the second read from storage
      expect(ort.sessions.map((session) => session.bytes)).toEqual([onnx, onnx]);
      expect(ort.sessions.map((session) => session.externalData)).toEqual([
        [{ path: 'weights.bin', data: weights }],
        [{ path: 'weights.bin', data: weights }],
      ]);
    } finally {
      await runtime.close();
    }
  });
});
