// The local runtime: onnxruntime-web in a dedicated worker (a module Web Worker in browsers,
// worker_threads in Node) behind comlink. It probes backends (webgpu, then wasm; a software WebGPU
// adapter counts as no GPU unless allowed), fetches model files through the ModelFileStore,
// compiles sessions once per file, runs them, and keeps moving averages of download speed, compile
// and run times for the router's estimates.

import { proxy, transfer, wrap, type Endpoint, type Remote } from 'comlink';
import {
  MovingAverage,
  TandemError,
  createProgressTracker,
  type LocalBackend,
  type ModelManifest,
  type PlannedStage,
  type TensorMap,
} from '@tandem/shared';
import { abortable } from './abortable.js';
import type { BackendInfo, LoadedSession, LocalWorkerApi, ModelBytes } from './local-worker-api.js';
import { modelBytes, type ModelFile, type ModelFileStore } from './model-files.js';
import { isNodeRuntime, nodeBuiltin } from './node-builtin.js';
import { nodeEndpoint } from './node-endpoint.js';
import { meetsBackend } from './router.js';
import type { Runtime, RuntimeEstimate, RuntimeResult, RuntimeRunOptions } from './runtime.js';
import { installTandemErrorHandler } from './worker-errors.js';
import { checkInputs } from './tensor-inputs.js';
import type * as Fs from 'node:fs';
import type * as Url from 'node:url';
import type * as WorkerThreads from 'node:worker_threads';

/** A started worker. */
export interface WorkerHandle {
  /** The worker's comlink endpoint (a Worker, or a worker_threads port adapted). */
  readonly endpoint: Endpoint;
  /** Stops the worker at once. */
  terminate(): unknown;
  /**
   * Calls `listener` once when the worker stops on its own (in Node: it exited, or threw where
   * nothing caught it), so calls in flight fail rather than wait forever. Optional: a browser's
   * Worker gives no such signal.
   */
  onExit?(listener: (detail: string) => void): void;
}

/**
 * Failures after which a worker's onnxruntime-web cannot be trusted: a lost GPU device stays lost
 * for that runtime, and a wasm heap that ran out (an abort) stays broken. A new worker gets a new
 * device and a new heap.
 */
const WORKER_FATAL_CODES: ReadonlySet<string> = new Set(['E_DEVICE_LOST', 'E_OUT_OF_MEMORY']);

/** A worker, its comlink proxy, and the end that fails every call still waiting on it. */
interface StartedWorker {
  readonly handle: WorkerHandle;
  readonly api: Remote<LocalWorkerApi>;
  /** Rejects once the worker is gone (closed or exited); never resolves. */
  readonly ended: Promise<never>;
  end(error: TandemError): void;
}

/** A session of one model file on one backend in the worker, and the calls using it. */
interface LocalSession {
  readonly model: string;
  /**
   * Its key in the worker: unique per session, so one created after a release never shares a key
   * with the released one, which may still be finishing a run.
   */
  readonly workerKey: string;
  /** The worker it lives in. */
  readonly worker: Promise<StartedWorker> | undefined;
  readonly loading: Promise<LoadedSession>;
  /** Compiled: `loading` has resolved. Until then a call that finds it waits for a compile. */
  ready: boolean;
  /** When its compile started (`performance.now()`): what is left of it is the estimate. */
  readonly startedAt: number;
  /** Calls between finding (or creating) it and the end of their run on it. */
  users: number;
  /** Released ({@link LocalRuntime.release}): the worker lets it go once `users` is 0. */
  released: boolean;
}

/** Options of {@link LocalRuntime}. */
export interface LocalRuntimeOptions {
  /** Where model files are downloaded, checked and stored. */
  readonly files: ModelFileStore;
  /** Count a software WebGPU adapter (SwiftShader) as a GPU. @default false */
  readonly allowSoftwareGpu?: boolean;
  /** Backends this app allows locally, best first. @default ['webgpu', 'wasm'] */
  readonly backends?: readonly LocalBackend[];
  /** Where onnxruntime-web's .wasm files are served from. */
  readonly wasmPaths?: string;
  /** wasm threads; 0 picks by cross-origin isolation. @default 0 */
  readonly numThreads?: number;
  /** Starts the worker. @default a module Web Worker, or worker_threads in Node */
  readonly createWorker?: () => Promise<WorkerHandle>;
}

/** Per-call extras for local runs. */
export interface LocalRunOptions extends RuntimeRunOptions {
  /** Transfer input buffers to the worker instead of copying them (the caller's arrays detach). */
  readonly transfer?: boolean;
}

/** Runs models on this device. */
export class LocalRuntime implements Runtime {
  readonly where = 'local' as const;
  readonly name = 'worker';
  readonly #options: LocalRuntimeOptions;
  #worker: Promise<StartedWorker> | undefined;
  #closed = false;
  #info: Promise<BackendInfo> | undefined;
  /** Sessions by file and backend (see sessionKey); a released one is no longer here. */
  readonly #sessions = new Map<string, LocalSession>();
  #sessionCount = 0;
  /** Runs started: each run's id in the worker is unique. */
  #runCount = 0;
  readonly #bandwidth = new MovingAverage(); // bytes per ms
  readonly #compileMs = new Map<string, MovingAverage>();
  readonly #runMs = new Map<string, MovingAverage>();

  constructor(options: LocalRuntimeOptions) {
    this.#options = options;
    installTandemErrorHandler();
  }

  /** What this device can run on (probed in the worker; a success is kept, a failure retried). */
  backendInfo(): Promise<BackendInfo> {
    if (this.#info !== undefined) return this.#info;
    const probing = this.#call((api) =>
      api.probe({
        allowSoftwareGpu: this.#options.allowSoftwareGpu ?? false,
        cacheName: this.#options.files.cacheName,
        ...(this.#options.wasmPaths === undefined ? {} : { wasmPaths: this.#options.wasmPaths }),
        ...(this.#options.numThreads === undefined ? {} : { numThreads: this.#options.numThreads }),
      }),
    );
    this.#info = probing;
    // One failed probe must not disable local runs for the client's lifetime: the next call
    // probes again.
    probing.catch(() => {
      if (this.#info === probing) this.#info = undefined;
    });
    return probing;
  }

  /** The backend a model would run on here, or undefined when none fits. */
  async backendFor(manifest: ModelManifest): Promise<LocalBackend | undefined> {
    const info = await this.backendInfo();
    const allowed = this.#options.backends ?? ['webgpu', 'wasm'];
    return info.backends.find(
      (backend) =>
        allowed.includes(backend) && meetsBackend(backend, manifest.placement?.minBackend),
    );
  }

  async estimate(manifest: ModelManifest): Promise<RuntimeEstimate> {
    if (
      manifest.url === undefined ||
      manifest.bytes === undefined ||
      manifest.sha256 === undefined
    ) {
      return { available: false, reason: 'the model has no file to run locally' };
    }
    let backend: LocalBackend | undefined;
    try {
      backend = await this.backendFor(manifest);
    } catch (error) {
      const coded = TandemError.from(error);
      return {
        available: false,
        reason: `the local runtime failed: ${coded.message}`,
        code: coded.code,
      };
    }
    if (backend === undefined) {
      return {
        available: false,
        reason: `this device lacks ${manifest.placement?.minBackend ?? 'a usable backend'}`,
      };
    }
    const key = sessionKey(manifest, backend);
    // A session still compiling (a warm() on page load, say) is not ready: a call now would wait
    // for that compile, so it counts as cold, with the measured compile time as its estimate.
    const session = this.#sessions.get(key);
    const compiled = session?.ready === true;
    // Every file not stored counts: the .onnx and its external data (most of a large model).
    const toDownload =
      session !== undefined ? 0 : await this.#options.files.bytesToDownload(manifest);
    const cached = toDownload === 0;
    const run = this.#runMs.get(key)?.value;
    const average = this.#compileMs.get(key)?.value;
    // A compile under way is partly done: what is left of the measured average.
    const compile = compiled
      ? 0
      : average === undefined
        ? undefined
        : session === undefined
          ? average
          : Math.max(0, average - (performance.now() - session.startedAt));
    const bandwidth = this.#bandwidth.value;
    const download = cached ? 0 : bandwidth === undefined ? undefined : toDownload / bandwidth;
    if (run === undefined || compile === undefined || download === undefined) {
      // What is measured is still a floor: a large model's download alone, at this device's
      // measured bandwidth, can outlast the server's whole answer (see decidePlacement).
      const atLeastMs = (download ?? 0) + (compile ?? 0) + (run ?? 0);
      return {
        available: true,
        cold: !compiled,
        reason:
          download !== undefined && download > 0
            ? `${backend}, download ~${Math.round(download)} ms, not fully measured yet`
            : `${backend}, not measured yet`,
        ...(atLeastMs > 0 ? { atLeastMs } : {}),
      };
    }
    return {
      available: true,
      cold: !compiled,
      ms: download + compile + run,
      reason: `${backend}${cached ? '' : ' + download'}${compiled ? '' : ' + compile'}`,
    };
  }

  async warm(manifest: ModelManifest, signal?: AbortSignal): Promise<void> {
    const { session } = await this.#session(manifest, signal, () => undefined);
    this.#unuse(session);
  }

  /**
   * Releases the model's compiled sessions in the worker (`tandem.cache.delete`), so the next
   * call reads or downloads its file and compiles again. A session a call is still using (loading
   * or running on it) is released once that call is done with it; the promise does not wait for
   * those, only for the idle ones to be released.
   */
  async release(model: string): Promise<void> {
    const releasing: Promise<void>[] = [];
    for (const [key, session] of this.#sessions) {
      if (session.model !== model) continue;
      this.#sessions.delete(key);
      session.released = true;
      if (session.users === 0) releasing.push(this.#releaseInWorker(session));
    }
    await Promise.all(releasing);
  }

  async run(
    manifest: ModelManifest,
    inputs: TensorMap,
    options: LocalRunOptions,
  ): Promise<RuntimeResult> {
    // Also when called directly, not through createTandem: a detached buffer would hang the call.
    checkInputs(inputs);
    const plan = this.#plan(manifest);
    const tracker = createProgressTracker({
      jobId: options.jobId,
      model: manifest.name,
      where: 'local',
      ...(plan === undefined ? {} : { plan }),
    });
    options.onProgress(tracker.update({ stage: 'resolve' }));
    const started = performance.now();
    const { backend, key, session, downloadMs, compileMs, cold } = await this.#session(
      manifest,
      options.signal,
      (update) => options.onProgress(tracker.update(update)),
    );
    try {
      throwIfAborted(options.signal);
      const runEstimate = this.#runMs.get(key)?.value;
      options.onProgress(
        tracker.update(
          runEstimate === undefined
            ? { stage: 'running' }
            : { stage: 'running', stageExpectedMs: runEstimate },
        ),
      );
      const runStarted = performance.now();
      const payload = options.transfer === true ? transferable(inputs) : inputs;
      const runId = `${options.jobId}#${this.#runCount++}`;
      // Runs take turns in the worker: one cancelled before its turn is dropped there, so the
      // runs after it do not wait for a result nobody reads.
      const onAbort = (): void => this.#cancelInWorker(runId);
      options.signal.addEventListener('abort', onAbort, { once: true });
      let outputs: TensorMap;
      try {
        outputs = await untilCancelled(
          this.#call((api) => api.run(session.workerKey, payload, options.outputs, runId)),
          options.signal,
        );
      } finally {
        options.signal.removeEventListener('abort', onAbort);
      }
      const runMs = performance.now() - runStarted;
      this.#average(this.#runMs, key).add(runMs);
      return {
        outputs,
        backend,
        cold,
        timings: { downloadMs, compileMs, runMs, totalMs: performance.now() - started },
      };
    } finally {
      this.#unuse(session);
    }
  }

  /**
   * Ends the worker. Calls still waiting on it (a download, compile or run) reject with
   * `E_CANCELLED`, and so does every later call: a closed runtime stays closed.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#forget();
    if (worker === undefined) return;
    const started = await worker.catch(() => undefined);
    started?.end(new TandemError('E_CANCELLED', 'the local runtime was closed'));
    await started?.handle.terminate();
  }

  // ---- internals ------------------------------------------------------------------------------

  /** Drops the worker and everything that lived in it (sessions, the probe). */
  #forget(): void {
    this.#worker = undefined;
    this.#info = undefined;
    this.#sessions.clear();
  }

  /**
   * Calls the worker; rejects as soon as the worker is gone, whatever the call was doing. After a
   * failure that leaves its runtime unusable (see WORKER_FATAL_CODES) the worker is replaced:
   * calls still on it fail with the same error, and the next call starts a fresh one.
   */
  async #call<T>(call: (api: Remote<LocalWorkerApi>) => Promise<T>): Promise<T> {
    const starting = this.#ensureWorker();
    const worker = await starting;
    try {
      return await Promise.race([call(worker.api), worker.ended]);
    } catch (error) {
      const coded = TandemError.from(error);
      if (WORKER_FATAL_CODES.has(coded.code) && this.#worker === starting) {
        this.#forget();
        worker.end(coded);
        await worker.handle.terminate();
      }
      throw coded;
    }
  }

  #ensureWorker(): Promise<StartedWorker> {
    if (this.#closed)
      return Promise.reject(new TandemError('E_CANCELLED', 'the local runtime was closed'));
    if (this.#worker !== undefined) return this.#worker;
    const starting = (this.#options.createWorker ?? defaultWorker)().then((handle) => {
      let end!: (error: TandemError) => void;
      const ended = new Promise<never>((_, reject) => {
        end = reject;
      });
      ended.catch(() => undefined); // only calls in flight need to hear it
      handle.onExit?.((detail) => {
        // A crashed worker takes its sessions along: the next call starts a new one.
        if (this.#worker === starting) this.#forget();
        end(new TandemError('E_RUNTIME', `the local worker stopped (${detail})`));
      });
      return { handle, api: wrap<LocalWorkerApi>(handle.endpoint), ended, end };
    });
    this.#worker = starting;
    // A worker that failed to start is not kept: the next call starts one again.
    starting.catch(() => {
      if (this.#worker === starting) this.#worker = undefined;
    });
    return starting;
  }

  /**
   * Downloads (or reads) and compiles a model once per file and backend. The session returned is
   * in use by the caller until it hands it back with {@link #unuse}; on a throw it was handed back.
   */
  async #session(
    manifest: ModelManifest,
    signal: AbortSignal | undefined,
    progress: (update: {
      stage: 'download' | 'cache' | 'compile';
      loaded?: number;
      total?: number;
      stageExpectedMs?: number;
    }) => void,
  ): Promise<{
    backend: LocalBackend;
    key: string;
    session: LocalSession;
    downloadMs: number;
    compileMs: number;
    cold: boolean;
  }> {
    const backend = await this.backendFor(manifest);
    if (backend === undefined) {
      throw new TandemError(
        'E_NO_BACKEND',
        `this device has no backend for "${manifest.name}" (needs ${manifest.placement?.minBackend ?? 'webgpu or wasm'})`,
      );
    }
    const key = sessionKey(manifest, backend);
    const existing = this.#sessions.get(key);
    if (existing !== undefined) {
      // Still compiling: this call waits for that compile, and says so.
      const wasReady = existing.ready;
      if (!wasReady) {
        const compileEstimate = this.#compileMs.get(key)?.value;
        progress(
          compileEstimate === undefined
            ? { stage: 'compile' }
            : { stage: 'compile', stageExpectedMs: compileEstimate },
        );
      }
      const waitedMs = await this.#join(existing, signal);
      return {
        backend,
        key,
        session: existing,
        downloadMs: 0,
        compileMs: wasReady ? 0 : waitedMs,
        cold: !wasReady,
      };
    }
    const getFiles = (): Promise<ModelFile> =>
      this.#options.files.get(manifest, {
        ...(signal === undefined ? {} : { signal }),
        onProgress: (p) => progress({ stage: p.stage, loaded: p.loaded, total: p.total }),
      });
    let file = await getFiles();
    // The whole download's time: a call that joined one under way waited only for its rest.
    if (!file.cached && file.downloadMs > 0)
      this.#bandwidth.add(file.downloadedBytes / file.downloadMs);
    // This call's wait, not the whole download's (it may have joined one under way).
    let downloadMs = file.downloadWaitMs;
    for (;;) {
      throwIfAborted(signal);
      // Another call of this model got here first (both read the file): its session is this one.
      const raced = this.#sessions.get(key);
      if (raced !== undefined) {
        const compileMs = await this.#join(raced, signal);
        return { backend, key, session: raced, downloadMs, compileMs, cold: true };
      }
      if (!handedToWorker(file)) break;
      // Calls that shared a fetch share its arrays, and one for another session key (another
      // name or backend on the same files) took them for its worker: this call reads them again
      // (a new fetch, from storage as a rule).
      file = await getFiles();
      downloadMs += file.downloadWaitMs;
    }
    const compileEstimate = this.#compileMs.get(key)?.value;
    progress(
      compileEstimate === undefined
        ? { stage: 'compile' }
        : { stage: 'compile', stageExpectedMs: compileEstimate },
    );
    // Compiling cannot be interrupted; a cancelled caller stops waiting, and the session stays
    // cached for the next call rather than leaking.
    // A first load may have to download onnxruntime-web's runtime binary too (megabytes): its
    // bytes move the compile stage along, rather than a guess.
    const onRuntimeBytes = proxy((loaded: number, total: number | undefined) => {
      progress({ stage: 'compile', loaded, ...(total === undefined ? {} : { total }) });
      // Downloaded: compiling it and the model goes on, without bytes to count.
      if (total !== undefined && loaded >= total) progress({ stage: 'compile' });
    });
    const workerKey = `${key}#${this.#sessionCount++}`;
    const files = transferred(file);
    const loading = this.#call((api) => api.load(workerKey, files, backend, onRuntimeBytes));
    const session: LocalSession = {
      model: manifest.name,
      workerKey,
      worker: this.#worker,
      loading,
      ready: false,
      startedAt: performance.now(),
      users: 1,
      released: false,
    };
    void loading.then(
      () => (session.ready = true),
      () => undefined,
    );
    this.#sessions.set(key, session);
    loading.catch(() => {
      if (this.#sessions.get(key) === session) this.#sessions.delete(key);
    });
    let loaded: LoadedSession;
    try {
      loaded = await untilCancelled(loading, signal);
    } catch (error) {
      this.#unuse(session);
      throw error;
    }
    // A load that waited for another's compile (in the worker) measured only part of it.
    if (loaded.compiled) this.#average(this.#compileMs, key).add(loaded.compileMs);
    return {
      backend,
      key,
      session,
      downloadMs,
      compileMs: loaded.compileMs,
      cold: true,
    };
  }

  /**
   * Starts using a session another call created, waiting for its compile if it is still going;
   * returns the ms waited. On a throw the session was handed back.
   */
  async #join(session: LocalSession, signal: AbortSignal | undefined): Promise<number> {
    session.users++;
    const started = performance.now();
    try {
      await untilCancelled(session.loading, signal);
    } catch (error) {
      this.#unuse(session);
      throw error;
    }
    return performance.now() - started;
  }

  /**
   * Tells the worker that a run was cancelled, if it still waits for its turn there. No worker is
   * started for it: one that is gone took the run along.
   */
  #cancelInWorker(runId: string): void {
    const worker = this.#worker;
    if (worker === undefined) return;
    void worker.then((started) => started.api.cancelRun(runId)).catch(() => undefined);
  }

  /** Hands a session back; the last user of a released one lets the worker release it. */
  #unuse(session: LocalSession): void {
    session.users--;
    if (session.released && session.users === 0) void this.#releaseInWorker(session);
  }

  /**
   * Releases a session in its worker, once loaded (a failed load left nothing). A worker that has
   * since gone (replaced, closed) took the session along: none is started for it, and a worker
   * that fails the release is gone or broken with the session in it, so that is no failure here.
   */
  async #releaseInWorker(session: LocalSession): Promise<void> {
    const loaded = await session.loading.then(
      () => true,
      () => false,
    );
    if (!loaded || session.worker === undefined || session.worker !== this.#worker) return;
    await this.#call((api) => api.release(session.workerKey)).catch(() => undefined);
  }

  /** Stage shares for a job, in measured ms where known. */
  #plan(manifest: ModelManifest): PlannedStage[] | undefined {
    const bandwidth = this.#bandwidth.value;
    const keyPrefix = `${manifest.name}@${filesId(manifest)}/`;
    const compile = [...this.#compileMs].find(([key]) => key.startsWith(keyPrefix))?.[1].value;
    const run = [...this.#runMs].find(([key]) => key.startsWith(keyPrefix))?.[1].value;
    const bytes = modelBytes(manifest);
    if (
      bandwidth === undefined ||
      compile === undefined ||
      run === undefined ||
      bytes === undefined
    )
      return undefined;
    return [
      { stage: 'resolve', weight: 1 },
      { stage: 'download', weight: bytes / bandwidth },
      { stage: 'cache', weight: 1 },
      { stage: 'compile', weight: compile },
      { stage: 'running', weight: run },
    ];
  }

  #average(map: Map<string, MovingAverage>, key: string): MovingAverage {
    let average = map.get(key);
    if (average === undefined) {
      average = new MovingAverage();
      map.set(key, average);
    }
    return average;
  }
}

function sessionKey(manifest: ModelManifest, backend: LocalBackend): string {
  return `${manifest.name}@${filesId(manifest)}/${backend}`;
}

/**
 * The model's files by their hashes: the .onnx's, and each external data file's (weights replaced
 * under an unchanged .onnx are another model, not the compiled session of the old one).
 */
function filesId(manifest: ModelManifest): string {
  const external = (manifest.externalData ?? []).map((file) => `+${file.sha256}`).join('');
  return `${manifest.sha256 ?? manifest.version ?? ''}${external}`;
}

/**
 * Buffers of model files given to a worker (by any runtime of this page): transferred, they are
 * emptied once posted. Marked when a load is decided, before it is posted, so a call that shared
 * the fetch sees it at once.
 */
const givenToWorkers = new WeakSet<ArrayBuffer>();

function buffersOf(file: ModelFile): ArrayBuffer[] {
  return [file.bytes, ...file.externalData.map((external) => external.data)].map(
    (bytes) => bytes.buffer,
  );
}

/** True when some of the file's buffers went (or are going) to a worker already. */
function handedToWorker(file: ModelFile): boolean {
  return buffersOf(file).some((buffer) => givenToWorkers.has(buffer));
}

/**
 * The model's files for a load, their buffers marked for transfer (comlink.transfer): moved to
 * the worker, not copied, so a large model's weights are never held twice while they cross. The
 * store keeps none of these arrays (see ModelFileStore.get).
 */
function transferred(file: ModelFile): ModelBytes {
  const buffers = new Set(buffersOf(file));
  for (const buffer of buffers) givenToWorkers.add(buffer);
  return transfer({ model: file.bytes, externalData: file.externalData }, [...buffers]);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) {
    throw signal.reason instanceof TandemError
      ? signal.reason
      : new TandemError('E_CANCELLED', 'cancelled');
  }
}

/** Resolves like `promise`, or rejects with E_CANCELLED as soon as `signal` aborts. */
function untilCancelled<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  return abortable(promise, signal, () =>
    signal?.reason instanceof TandemError
      ? signal.reason
      : new TandemError('E_CANCELLED', 'cancelled'),
  );
}

/** Marks input buffers for transfer (comlink.transfer) when each tensor owns its whole buffer. */
function transferable(inputs: TensorMap): TensorMap {
  const buffers: ArrayBuffer[] = [];
  for (const tensor of Object.values(inputs)) {
    if (tensor.dtype === 'string') continue;
    const { buffer, byteOffset, byteLength } = tensor.data;
    if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength)
      buffers.push(buffer);
  }
  return transfer(inputs, buffers);
}

/** The default worker: a module Web Worker in browsers, worker_threads in Node. */
export async function defaultWorker(): Promise<WorkerHandle> {
  if (isNodeRuntime()) {
    const { Worker } = await nodeBuiltin<typeof WorkerThreads>('node:worker_threads');
    const { existsSync } = await nodeBuiltin<typeof Fs>('node:fs');
    const { fileURLToPath } = await nodeBuiltin<typeof Url>('node:url');
    // Tests run this package from its TypeScript sources: workers need the built JavaScript.
    const beside = new URL('./local-worker-node.js', import.meta.url);
    const url = existsSync(fileURLToPath(beside))
      ? beside
      : new URL('../dist/local-worker-node.js', import.meta.url);
    const worker = new Worker(url);
    let failure: string | undefined;
    worker.on('error', (error: Error) => {
      failure = error.message;
    });
    return {
      endpoint: nodeEndpoint(worker),
      terminate: () => worker.terminate(),
      onExit(listener) {
        worker.once('exit', (code: number) => {
          listener(failure ?? `exit code ${code}`);
        });
      },
    };
  }
  return webWorkerHandle(
    new Worker(new URL('./local-worker.js', import.meta.url), { type: 'module' }),
  );
}

/**
 * A {@link WorkerHandle} for a browser's Worker running the client's worker script (for a
 * `createWorker` that starts it another way, say from a CDN or with a policy). An `error` event
 * (the script failed to load, or threw where nothing caught it) ends it: the worker is
 * terminated and the calls waiting on it fail with `E_RUNTIME`, so the router can use the server.
 */
export function webWorkerHandle(worker: Worker): WorkerHandle {
  let failure: string | undefined;
  const listeners: ((detail: string) => void)[] = [];
  worker.addEventListener('error', (event: Event) => {
    if (failure !== undefined) return;
    failure =
      event instanceof ErrorEvent && event.message !== ''
        ? event.message
        : 'the worker script failed to load or run';
    worker.terminate();
    for (const listener of listeners.splice(0)) listener(failure);
  });
  return {
    endpoint: worker,
    terminate: () => {
      worker.terminate();
    },
    onExit(listener) {
      if (failure === undefined) listeners.push(listener);
      else queueMicrotask(() => listener(failure as string));
    },
  };
}
