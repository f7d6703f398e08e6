// The main thread's handle on a session worker: load, run and release, as promises. Inputs are
// copied once into buffers of their own and transferred; outputs come back transferred.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  TandemError,
  type Backend,
  type SerializedError,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';
import type { SessionSettings, SkippedProvider } from './onnx-session.js';
import { packTensorMaps, unpackTensorMaps } from './tensor-pack.js';
import { readResultFrames, type ResultFrameSpec } from './result-frames.js';
import type {
  LoadedReply,
  RanEachReply,
  RunEachRequest,
  RunReply,
  WorkerReply,
  WorkerRequest,
} from './session-messages.js';

/**
 * The compiled worker script. Tests run this package from its TypeScript sources, where no .js
 * sits beside this file; worker threads need JavaScript, so they use the build in dist/ (npm test
 * builds first).
 */
function workerUrl(): URL {
  const beside = new URL('./session-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  return new URL('../dist/session-worker.js', import.meta.url);
}

/**
 * One item of a {@link WorkerSession.runEach}: its outputs (or, when result frames were asked for,
 * its `result` frame) or its error, and its run time in ms.
 */
export type RunEachResult =
  | { readonly ok: true; readonly outputs: TensorMap; readonly runMs: number }
  | { readonly ok: true; readonly frame: Uint8Array; readonly runMs: number }
  | { readonly ok: false; readonly error: SerializedError; readonly runMs: number };

/** A run's outputs and how long onnxruntime took in the worker, in ms. */
export interface WorkerRun {
  readonly outputs: TensorMap;
  readonly runMs: number;
}

/** A session living in its own worker thread. */
export class WorkerSession {
  /** The execution provider that runs it. */
  readonly backend: Backend;
  /** Configured providers before `backend` that could not start on this machine. */
  readonly skipped: readonly SkippedProvider[];
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve: (reply: RunReply | RanEachReply) => void; reject: (error: TandemError) => void }
  >();
  #nextId = 1;
  #closed = false;
  #released = false;
  #exited = false;
  #failure: string | undefined;
  #onLost: ((error: TandemError) => void) | undefined;
  /** Wakes release() when the last pending run settles. */
  #drained: (() => void) | undefined;

  private constructor(worker: Worker, loaded: LoadedReply) {
    this.#worker = worker;
    this.backend = loaded.backend;
    this.skipped = loaded.skipped;
    worker.on('message', (message: WorkerReply) => this.#onReply(message));
    worker.on('error', (error) => {
      this.#failure = error.message;
      this.#failAll(TandemError.from(error, 'E_RUNTIME'));
    });
    worker.on('exit', (code: number) => {
      this.#exited = true;
      const error = new TandemError(
        'E_RUNTIME',
        `the session worker exited (${this.#failure ?? `exit code ${code}`})`,
      );
      this.#failAll(error);
      if (!this.#released) this.#onLost?.(error);
    });
  }

  /**
   * Calls `listener` once if the worker stops without release() (an uncaught error, a resource
   * limit): every later run would fail, so the owner replaces the session.
   */
  onLost(listener: (error: TandemError) => void): void {
    this.#onLost = listener;
  }

  /** Starts a worker and loads the model in it. Failures are `E_MODEL_LOAD_FAILED`. */
  static async load(path: string, settings: SessionSettings): Promise<WorkerSession> {
    const worker = new Worker(workerUrl());
    const loaded = await new Promise<LoadedReply>((resolve, reject) => {
      const onMessage = (message: WorkerReply): void => {
        cleanup();
        if (message.type === 'loaded') resolve(message);
        else if (message.type === 'failed') reject(TandemError.fromSerialized(message.error));
        else reject(new TandemError('E_INTERNAL', `unexpected ${message.type} before loaded`));
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(
          new TandemError('E_MODEL_LOAD_FAILED', `the session worker failed: ${error.message}`, {
            cause: error,
          }),
        );
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(
          new TandemError(
            'E_MODEL_LOAD_FAILED',
            `the session worker exited with code ${code} while loading`,
          ),
        );
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      post(worker, { type: 'load', path, settings });
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    return new WorkerSession(worker, loaded);
  }

  /**
   * Runs the session on `inputs`, returning `outputs` (all when undefined). With `detachable`, the
   * inputs' buffers move to the worker (they are detached here); otherwise they are copied once.
   */
  run(
    inputs: TensorMap,
    outputs: readonly string[] | undefined,
    detachable = false,
  ): Promise<WorkerRun> {
    if (this.#closed)
      return Promise.reject(new TandemError('E_RUNTIME', 'the session was released'));
    const id = this.#nextId++;
    const { owned, transfer } = detachable ? takeInputs(inputs) : ownInputs(inputs);
    return new Promise<RunReply | RanEachReply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      post(this.#worker, { type: 'run', id, inputs: owned, outputs }, transfer);
    }).then((reply) =>
      reply.type === 'ran'
        ? { outputs: reply.outputs, runMs: reply.runMs }
        : { outputs: {}, runMs: 0 },
    );
  }

  /**
   * Runs the session once per item, in order, in one round trip to the worker; each item gets its
   * outputs or its own error. Meant for small inputs: they are copied into one buffer that moves
   * to the worker, and the outputs come back in one buffer too. With `results`, the worker writes
   * each item's `result` frame and those come back instead of outputs (the spec's numbers move to
   * the worker: they are detached here).
   */
  runEach(
    items: readonly {
      readonly inputs: TensorMap;
      readonly outputs: readonly string[] | undefined;
    }[],
    results?: ResultFrameSpec,
  ): Promise<readonly RunEachResult[]> {
    if (this.#closed)
      return Promise.reject(new TandemError('E_RUNTIME', 'the session was released'));
    const id = this.#nextId++;
    // Copied into one buffer whatever their ownership: for small inputs one allocation and one
    // transfer per group cost less than one of each per job.
    const inputs = packTensorMaps(items.map((item) => item.inputs));
    const outputs = items.some((item) => item.outputs !== undefined)
      ? items.map((item) => item.outputs ?? null)
      : undefined;
    const request: RunEachRequest = {
      type: 'runEach',
      id,
      inputs,
      ...(outputs === undefined ? {} : { outputs }),
      ...(results === undefined ? {} : { results }),
    };
    const transfer =
      results === undefined
        ? [inputs.buffer]
        : [inputs.buffer, results.numbers.buffer as ArrayBuffer];
    return new Promise<RunReply | RanEachReply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      post(this.#worker, request, transfer);
    }).then((reply) => (reply.type === 'ranEach' ? eachResult(reply) : []));
  }

  /** Releases the session and ends the worker. */
  async release(): Promise<void> {
    this.#released = true;
    if (this.#exited || this.#closed) return;
    this.#closed = true;
    // Runs in flight finish first: the worker would otherwise close between a run's start and its
    // reply (its message handler awaits), and ending the thread inside onnxruntime-node's native
    // run (the timeout below) would abort the whole process.
    while (this.#pending.size > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    post(this.#worker, { type: 'release' });
    const timer = setTimeout(() => void this.#worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }

  #onReply(message: WorkerReply): void {
    if (message.type === 'loaded' || message.id === null) return;
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    this.#pending.delete(message.id);
    if (this.#pending.size === 0) this.#drained?.();
    // The worker is this package's own code and structured cloning keeps typed arrays intact.
    if (message.type === 'failed') pending.reject(TandemError.fromSerialized(message.error));
    else pending.resolve(message);
  }

  #failAll(error: TandemError): void {
    this.#closed = true;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    this.#drained?.();
  }
}

/** The per-item view of a `ranEach` reply. */
function eachResult(reply: RanEachReply): RunEachResult[] {
  const failure = (index: number): RunEachResult | undefined => {
    const error = reply.failures?.[index];
    return error === undefined ? undefined : { ok: false, error, runMs: reply.runMs[index] ?? 0 };
  };
  if (reply.frames !== undefined) {
    return readResultFrames(reply.frames).map(
      (frame, index): RunEachResult =>
        failure(index) ?? { ok: true, frame, runMs: reply.runMs[index] ?? 0 },
    );
  }
  if (reply.outputs === undefined) return [];
  return unpackTensorMaps(reply.outputs).map(
    (outputs, index): RunEachResult =>
      failure(index) ?? { ok: true, outputs, runMs: reply.runMs[index] ?? 0 },
  );
}

function post(worker: Worker, message: WorkerRequest, transfer: ArrayBuffer[] = []): void {
  worker.postMessage(message, transfer);
}

/** Transfers the inputs' own buffers (several inputs may share one frame's buffer). */
function takeInputs(inputs: TensorMap): { owned: TensorMap; transfer: ArrayBuffer[] } {
  const transfer = new Set<ArrayBuffer>();
  for (const tensor of Object.values(inputs)) {
    if (tensor.dtype !== 'string' && tensor.data.buffer instanceof ArrayBuffer)
      transfer.add(tensor.data.buffer);
  }
  return { owned: inputs, transfer: [...transfer] };
}

/**
 * Gives each numeric input a buffer of its own so it can be transferred: decoded inputs are views
 * into a frame (or Node's shared buffer pool) that must not be detached.
 */
function ownInputs(inputs: TensorMap): { owned: TensorMap; transfer: ArrayBuffer[] } {
  const owned: TensorMap = {};
  const transfer: ArrayBuffer[] = [];
  for (const [name, tensor] of Object.entries(inputs)) {
    if (tensor.dtype === 'string') {
      owned[name] = tensor;
      continue;
    }
    const data = (tensor.data as Float32Array).slice();
    transfer.push(data.buffer);
    owned[name] = { dtype: tensor.dtype, dims: tensor.dims, data } as Tensor;
  }
  return { owned, transfer };
}
