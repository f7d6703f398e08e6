// Messages between the server's main thread and a session worker: one interface per message, one
// union per direction. onnxruntime-node runs sessions synchronously on the calling thread, so each
// model instance lives in its own worker thread and the main thread stays free for sockets,
// progress, heartbeats and the other instances.

import type { Backend, SerializedError, TensorMap } from '@tandem/shared';
import type { SessionSettings } from './onnx-session.js';

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

/** Release the session; the worker exits afterwards. */
export interface ReleaseRequest {
  readonly type: 'release';
}

/** Main thread → worker. */
export type WorkerRequest = LoadRequest | RunRequest | ReleaseRequest;

/** The session is loaded. */
export interface LoadedReply {
  readonly type: 'loaded';
  readonly backend: Backend;
}

/** A run finished. */
export interface RunReply {
  readonly type: 'ran';
  readonly id: number;
  readonly outputs: TensorMap;
}

/** A load (id null) or run failed. */
export interface FailedReply {
  readonly type: 'failed';
  readonly id: number | null;
  readonly error: SerializedError;
}

/** Worker → main thread. */
export type WorkerReply = LoadedReply | RunReply | FailedReply;
