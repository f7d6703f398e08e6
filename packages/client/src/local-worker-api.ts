// What runs inside the local worker: onnxruntime-web sessions, the backend probe, and runs. The
// main thread reaches it through comlink (local-runtime.ts); a model's files (the .onnx and its
// external data) come in and tensors come back as transferred buffers. Errors are TandemErrors
// with codes (worker-errors.ts). The probe picks the onnxruntime-web build (WebGPU + wasm, or wasm
// only) and imports it, so a worker downloads and starts one runtime, and keeps that runtime in
// Cache Storage (ort-runtime-cache.ts).

import { transfer } from 'comlink';
import type * as Ort from 'onnxruntime-web';
import { TandemError, type LocalBackend, type Tensor, type TensorMap } from '@tandem/shared';
import {
  ORT_RUNTIME_BYTES,
  ORT_RUNTIME_VERSION,
  createRuntimeFetch,
  type RuntimeDownloadListener,
  type RuntimeFetch,
} from './ort-runtime-cache.js';
import type { ExternalDataBytes } from './model-files.js';
import { classifyOrtError } from './worker-errors.js';

/** onnxruntime-web, as each of its builds exports it. */
export type OrtModule = typeof Ort;

/** Imports the onnxruntime-web builds a worker may use. */
export interface OrtBuilds {
  /** `onnxruntime-web`: WebGPU (JSEP) and wasm sessions, a 28 MB runtime. */
  readonly full: () => Promise<OrtModule>;
  /**
   * `onnxruntime-web/wasm`: wasm sessions only, a 14 MB runtime that also starts faster. Used when
   * the probe finds no usable WebGPU and there is no `wasmPaths` (an app serving the files itself
   * may serve only the full build's). @default the full build
   */
  readonly wasmOnly?: () => Promise<OrtModule>;
}

/** What the probe found on this device. */
export interface BackendInfo {
  /** Usable backends, best first. */
  readonly backends: LocalBackend[];
  /** The WebGPU adapter's description, when there is one. */
  readonly adapter?: string;
  /** True when the only GPU adapter is a software one (SwiftShader, llvmpipe). */
  readonly softwareGpu: boolean;
  /** wasm threads onnxruntime-web uses. */
  readonly threads: number;
}

/** Settings for the probe and onnxruntime-web. */
export interface ProbeOptions {
  /** Count a software WebGPU adapter as a GPU (tests, or apps that know better). @default false */
  readonly allowSoftwareGpu: boolean;
  /** Where onnxruntime-web's .wasm files are served from, when not beside its script. */
  readonly wasmPaths?: string;
  /** wasm threads; 0 picks by cross-origin isolation and cores. @default 0 */
  readonly numThreads?: number;
  /**
   * Cache Storage bucket that keeps onnxruntime-web's runtime .wasm between visits (the model
   * files' bucket). Without it, or without Cache Storage (Node), the runtime loads as usual.
   */
  readonly cacheName?: string;
}

/**
 * A model's files as a load takes them: the .onnx, and the external data files its weights live
 * in (onnxruntime's `externalData` session option), each by the path the model names it with.
 * The page transfers these buffers rather than copying them: a large model's weights would
 * otherwise be held twice while they cross.
 */
export interface ModelBytes {
  /** The .onnx file. */
  readonly model: Uint8Array;
  /** Its external data files; empty for a model without. */
  readonly externalData: readonly ExternalDataBytes[];
}

/** A compiled session. */
export interface LoadedSession {
  readonly backend: LocalBackend;
  /**
   * How long this call waited for the session: its compile, or the rest of the compile another
   * call had started for the same key; 0 when the session was compiled already.
   */
  readonly compileMs: number;
  /** True when this call compiled the session (so `compileMs` measured a whole compile). */
  readonly compiled: boolean;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
}

interface GpuAdapterLike {
  readonly isFallbackAdapter?: boolean;
  readonly info?: { vendor?: string; architecture?: string; description?: string; device?: string };
}

interface NavigatorLike {
  gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> };
  hardwareConcurrency?: number;
}

const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|software|basic render/i;

/**
 * A 99-byte ONNX model (y = Identity(x), float32[1], opset 17) whose session the probe creates to
 * start onnxruntime-web early: fetching and instantiating its .wasm and the first session's
 * one-time work (lazily compiled code, mostly) cost about 0.8 s in Chromium on 2 cores, and then
 * overlap the model file's download or cache read instead of following it.
 */
const WARM_UP_MODEL_BASE64 =
  'CAgSE3RhbmRlbS10ZXN0LXN1cHBvcnQ6RgocCgF4EgF5GgpJZGVudGl0eV8wIghJZGVudGl0eRIEd2FybVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCAhAR';

/** The warm-up model's bytes. */
export function warmUpModel(): Uint8Array {
  return Uint8Array.from(atob(WARM_UP_MODEL_BASE64), (char) => char.charCodeAt(0));
}

/** A compiled session in the worker, and its runs in flight. */
interface SessionEntry {
  readonly session: Ort.InferenceSession;
  readonly backend: LocalBackend;
  /** Runs (with their outputs' read-back) still using the session: a release waits for them. */
  readonly runs: Set<Promise<unknown>>;
}

/** Builds the worker's API object. */
export function createLocalWorkerApi(builds: OrtBuilds) {
  const sessions = new Map<string, SessionEntry>();
  /**
   * Sessions being created, by key: a second load of a key waits for the first one's session
   * instead of compiling the model again and leaking one of the two. An entry leaves when its
   * creation settles, so a failed one is tried afresh by the next load.
   */
  const creating = new Map<string, Promise<SessionEntry>>();
  /**
   * The last run started, every session's: runs go one at a time. onnxruntime-web's full (JSEP)
   * build keeps one "run in progress" for the whole module and fails a run that starts while
   * another is suspended on the GPU ("Session already started"), whichever session each is on:
   * two calls at once, or a call right after one cancelled mid-run (the worker still runs it),
   * failed with E_RUNTIME on WebGPU. The wasm backend runs one at a time on this thread anyway.
   */
  let lastRun: Promise<unknown> = Promise.resolve();
  /**
   * Runs waiting for their turn, by run id, and whether the page has cancelled each: a cancelled
   * one is dropped when its turn comes rather than run for nobody while the runs after it wait.
   */
  const queued = new Map<string, { cancelled: boolean }>();
  let info: BackendInfo | undefined;
  let loaded: OrtModule | undefined;
  let runtimeCache: RuntimeFetch | undefined;
  /** onnxruntime-web starting (see warmUpModel); settles either way, never rejects. */
  let runtimeStarted: Promise<void> | undefined;

  /** onnxruntime-web, once the probe has chosen and imported a build. */
  function ort(): OrtModule {
    if (loaded === undefined) throw new TandemError('E_INTERNAL', 'the worker was not probed');
    return loaded;
  }

  async function probe(options: ProbeOptions): Promise<BackendInfo> {
    if (info !== undefined) return info;
    const nav = (globalThis as { navigator?: NavigatorLike }).navigator;
    const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
    const threads =
      options.numThreads !== undefined && options.numThreads > 0
        ? options.numThreads
        : isolated
          ? Math.max(1, Math.min(4, nav?.hardwareConcurrency ?? 1))
          : 1;
    const backends: LocalBackend[] = [];
    let adapterText: string | undefined;
    let softwareGpu = false;
    try {
      const adapter = await nav?.gpu?.requestAdapter();
      if (adapter !== null && adapter !== undefined) {
        const details = adapter.info ?? {};
        adapterText = [details.vendor, details.architecture, details.device, details.description]
          .filter((part) => part !== undefined && part !== '')
          .join(' ');
        softwareGpu = adapter.isFallbackAdapter === true || SOFTWARE_ADAPTER.test(adapterText);
        if (!softwareGpu || options.allowSoftwareGpu) backends.push('webgpu');
      }
    } catch {
      // No WebGPU here: wasm it is.
    }
    backends.push('wasm');
    // Measured in Chromium on 2 cores: the wasm-only build reaches a first session about 1 s
    // sooner than the full one, on top of half the bytes to download and compile.
    const build =
      backends.includes('webgpu') || options.wasmPaths !== undefined
        ? builds.full
        : (builds.wasmOnly ?? builds.full);
    try {
      loaded ??= await build();
    } catch (error) {
      throw new TandemError('E_NO_BACKEND', 'onnxruntime-web failed to load', { cause: error });
    }
    loaded.env.wasm.numThreads = threads;
    if (options.wasmPaths !== undefined) loaded.env.wasm.wasmPaths = options.wasmPaths;
    // The full build runs on the WebGPU (jsep) binary, the wasm-only one on the plain binary.
    const binary =
      build === builds.full ? 'ort-wasm-simd-threaded.jsep.wasm' : 'ort-wasm-simd-threaded.wasm';
    if (options.cacheName !== undefined)
      runtimeCache ??= cacheRuntime(loaded, options.cacheName, ORT_RUNTIME_BYTES[binary]);
    info = {
      backends,
      ...(adapterText === undefined ? {} : { adapter: adapterText }),
      softwareGpu,
      threads,
    };
    // Started now, not awaited: the caller fetches the model file meanwhile. Unless the runtime
    // itself must be downloaded: the first session reports those bytes in its compile stage.
    if (runtimeCache === undefined || (await runtimeCache.stored())) runtimeStarted = start(loaded);
    return info;
  }

  /** Starts onnxruntime-web with the warm-up model; a failure is left for the real session. */
  function start(module: OrtModule): Promise<void> {
    return module.InferenceSession.create(warmUpModel(), { executionProviders: ['wasm'] })
      .then((session) => session.release())
      .catch(() => undefined);
  }

  /** Compiles a session; a failure is coded (worker-errors.ts). */
  async function create(files: ModelBytes, backend: LocalBackend): Promise<SessionEntry> {
    let session: Ort.InferenceSession;
    try {
      await runtimeStarted;
      session = await ort().InferenceSession.create(files.model, {
        executionProviders: [backend],
        graphOptimizationLevel: 'all',
        // A page's onnxruntime-web has no folder to read the model's weights from: each location
        // the model names is answered with the bytes given for that path.
        ...(files.externalData.length === 0 ? {} : { externalData: files.externalData }),
      });
    } catch (error) {
      throw classifyOrtError(error, 'E_MODEL_LOAD_FAILED');
    }
    // A first load also stores the runtime it fetched (done by now, unless storage is slower than
    // compiling), so a page closed or reloaded after a warm() finds it.
    await runtimeCache?.settled();
    return { session, backend, runs: new Set() };
  }

  /**
   * Creates a session from a model's files, once per key: a load that finds the key's session
   * being created waits for it. `onRuntimeBytes` hears onnxruntime-web's own runtime binary
   * arrive when a first load has to download it (a few times a second at most), whichever load
   * started the download.
   */
  async function load(
    key: string,
    files: ModelBytes,
    backend: LocalBackend,
    onRuntimeBytes?: RuntimeDownloadListener,
  ): Promise<LoadedSession> {
    const started = performance.now();
    const existing = sessions.get(key);
    if (existing !== undefined) return loadedSession(existing, 0, false);
    const stopListening =
      runtimeCache !== undefined && onRuntimeBytes !== undefined
        ? runtimeCache.addDownloadListener(throttled(onRuntimeBytes, RUNTIME_PROGRESS_INTERVAL_MS))
        : undefined;
    try {
      const pending = creating.get(key);
      if (pending !== undefined)
        return loadedSession(await pending, performance.now() - started, false);
      const created: Promise<SessionEntry> = create(files, backend)
        .then((entry) => {
          sessions.set(key, entry);
          return entry;
        })
        .finally(() => {
          if (creating.get(key) === created) creating.delete(key);
        });
      creating.set(key, created);
      return loadedSession(await created, performance.now() - started, true);
    } finally {
      stopListening?.();
    }
  }

  /**
   * Runs a session, after the runs before it. `runId` (unique per run) lets {@link cancelRun}
   * drop it while it waits for its turn.
   */
  async function run(
    key: string,
    inputs: TensorMap,
    outputs: readonly string[] | undefined,
    runId?: string,
  ): Promise<TensorMap> {
    const entry = sessions.get(key);
    if (entry === undefined) throw new TandemError('E_INTERNAL', `no session ${key} in the worker`);
    const state = { cancelled: false };
    if (runId !== undefined) queued.set(runId, state);
    const running = lastRun.then(() => {
      if (runId !== undefined) queued.delete(runId);
      if (state.cancelled)
        throw new TandemError('E_CANCELLED', 'the run was cancelled before its turn came');
      return runOn(entry, inputs, outputs);
    });
    lastRun = running.catch(() => undefined);
    entry.runs.add(running);
    try {
      return await running;
    } finally {
      entry.runs.delete(running);
    }
  }

  async function runOn(
    entry: SessionEntry,
    inputs: TensorMap,
    outputs: readonly string[] | undefined,
  ): Promise<TensorMap> {
    const { Tensor } = ort();
    const feeds: Record<string, Ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(inputs))
      feeds[name] = new Tensor(tensor.dtype, tensor.data, tensor.dims);
    // As the server reads them: an empty list asks for every output, and an unknown name is the
    // caller's mistake (E_OUTPUT_NOT_FOUND), not this side's failure (onnxruntime-web's error
    // would be E_RUNTIME, which falls back to the server only to be refused there).
    const wanted = outputs === undefined || outputs.length === 0 ? undefined : [...outputs];
    if (wanted !== undefined) checkOutputs(wanted, entry.session.outputNames);
    let results: Ort.InferenceSession.ReturnType;
    try {
      results =
        wanted === undefined
          ? await entry.session.run(feeds)
          : await entry.session.run(feeds, wanted);
    } catch (error) {
      throw classifyOrtError(error);
    }
    const out: TensorMap = {};
    const buffers: ArrayBuffer[] = [];
    for (const [name, value] of Object.entries(results)) {
      // GPU-resident outputs are read back here; the page only ever sees CPU data.
      const data = value.location === 'cpu' ? value.data : await value.getData(true);
      out[name] = { dtype: value.type, dims: [...value.dims], data } as Tensor;
      if (
        ArrayBuffer.isView(data) &&
        data.buffer instanceof ArrayBuffer &&
        data.byteOffset === 0 &&
        data.byteLength === data.buffer.byteLength
      ) {
        buffers.push(data.buffer);
      }
    }
    return transfer(out, buffers);
  }

  /**
   * Releases a key's session (a session still being created is released once created); the next
   * load of the key compiles again. Runs in flight on it finish first: releasing a session under a
   * run would fail that run. Resolves once the session is released.
   */
  async function release(key: string): Promise<void> {
    await creating.get(key)?.catch(() => undefined);
    const entry = sessions.get(key);
    if (entry === undefined) return;
    sessions.delete(key);
    await Promise.allSettled(entry.runs);
    await entry.session.release();
  }

  /**
   * Drops a run still waiting for its turn (see {@link run}); one already running goes on, as
   * onnxruntime-web cannot stop a run, and its caller has stopped waiting for it.
   */
  function cancelRun(runId: string): void {
    const state = queued.get(runId);
    if (state !== undefined) state.cancelled = true;
  }

  return { probe, load, run, cancelRun, release };
}

/** What a load returns about a session. */
function loadedSession(entry: SessionEntry, compileMs: number, compiled: boolean): LoadedSession {
  return {
    backend: entry.backend,
    compileMs,
    compiled,
    inputNames: entry.session.inputNames,
    outputNames: entry.session.outputNames,
  };
}

/** Least time between two runtime download reports crossing to the page, in ms. */
const RUNTIME_PROGRESS_INTERVAL_MS = 100;

/** Passes calls on at most once per `intervalMs`, and always the one that completes the total. */
function throttled(listener: RuntimeDownloadListener, intervalMs: number): RuntimeDownloadListener {
  let lastAt = -Infinity;
  return (loaded, total) => {
    const now = performance.now();
    if (now - lastAt < intervalMs && loaded !== total) return;
    lastAt = now;
    listener(loaded, total);
  };
}

/**
 * Routes this worker's fetches through the runtime cache (onnxruntime-web fetches its binary with
 * the global fetch). Undefined where there is no Cache Storage (Node reads the runtime from disk)
 * or for an onnxruntime-web version whose binaries the cache does not know.
 */
function cacheRuntime(
  ort: OrtModule,
  cacheName: string,
  expectedBytes: number | undefined,
): RuntimeFetch | undefined {
  const scope = globalThis as { caches?: CacheStorage };
  const ortVersion = ort.env.versions.web;
  if (scope.caches === undefined || ortVersion !== ORT_RUNTIME_VERSION) return undefined;
  const runtime = createRuntimeFetch({
    fetch: globalThis.fetch.bind(globalThis),
    caches: scope.caches,
    cacheName,
    ortVersion,
    ...(expectedBytes === undefined ? {} : { expectedBytes }),
  });
  globalThis.fetch = runtime.fetch;
  return runtime;
}

/** The worker's API, as the main thread sees it through comlink. */
export type LocalWorkerApi = ReturnType<typeof createLocalWorkerApi>;

/** Throws `E_OUTPUT_NOT_FOUND` for the first requested output the model does not have. */
function checkOutputs(wanted: readonly string[], known: readonly string[]): void {
  for (const name of wanted) {
    if (!known.includes(name)) {
      const names = known.map((output) => `"${output}"`).join(', ');
      throw new TandemError(
        'E_OUTPUT_NOT_FOUND',
        `unknown output "${name}"; the model has ${names}`,
      );
    }
  }
}
