// Messages between the server's main thread and a session worker: one interface per message, one
// union per direction. onnxruntime-node runs sessions synchronously on the calling thread, so each
// model instance lives in its own worker thread and the main thread stays free for sockets,
// progress, heartbeats and the other instances.

import type { Backend, SerializedError, TensorMap } from '@tandem/shared';
import type { SessionSettings, SkippedProvider } from './onnx-session.js';
import type { PackedFrames, ResultFrameSpec } from './result-frames.js';
import type { PackedTensorMaps } from './tensor-pack.js';

/** Load a model file into this worker's session. */
export interface LoadRequest {
  readonly type: 'load';
  readonly path: string;
  readonly settings: SessionSettings;
}

/** Run the session. */
export interface RunRequest {
  readonly type: 'run';
  readonly id: number;
  readonly inputs: TensorMap;
  readonly outputs: readonly string[] | undefined;
}

/**
 * Run the session once per item, one after the other: a group of small jobs crosses the thread
 * boundary in one message each way instead of two per job.
 */
export interface RunEachRequest {
  readonly type: 'runEach';
  readonly id: number;
  /** Each item's inputs, packed (see tensor-pack.ts for why not the maps themselves). */
  readonly inputs: PackedTensorMaps;
  /** Each item's requested outputs (null: all); absent when every item wants all. */
  readonly outputs?: readonly (readonly string[] | null)[];
  /**
   * When present, the worker writes each item's `result` frame itself and answers `frames`
   * instead of `outputs` (see result-frames.ts for why).
   */
  readonly results?: ResultFrameSpec;
}

/** Release the session; the worker exits afterwards. */
export interface ReleaseRequest {
  readonly type: 'release';
}

/** Main thread → worker. */
export type WorkerRequest = LoadRequest | RunRequest | RunEachRequest | ReleaseRequest;

/** The session is loaded. */
export interface LoadedReply {
  readonly type: 'loaded';
  readonly backend: Backend;
  /** Configured providers before `backend` that could not start here. */
  readonly skipped: readonly SkippedProvider[];
}

/** A run finished. */
export interface RunReply {
  readonly type: 'ran';
  readonly id: number;
  readonly outputs: TensorMap;
  /** How long onnxruntime's run took in the worker, in ms (no thread hops, no queueing). */
  readonly runMs: number;
}

/** A `runEach` finished (each item on its own). */
export interface RanEachReply {
  readonly type: 'ranEach';
  readonly id: number;
  /** Each item's outputs, packed (an item that failed has none); absent when `frames` is set. */
  readonly outputs?: PackedTensorMaps;
  /** Each item's `result` frame, when the request asked for them (`results`). */
  readonly frames?: PackedFrames;
  /** How long each item's run took in the worker, in ms. */
  readonly runMs: Float64Array;
  /** The errors of the items that failed, by index; absent when none did. */
  readonly failures?: Readonly<Record<number, SerializedError>>;
}

/** A load (id null) or run failed. */
export interface FailedReply {
  readonly type: 'failed';
  readonly id: number | null;
  readonly error: SerializedError;
}

/** Worker → main thread. */
export type WorkerReply = LoadedReply | RunReply | RanEachReply | FailedReply;
