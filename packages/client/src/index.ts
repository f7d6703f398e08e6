// @tandem/client: run ONNX models where they run best: on this device (WebGPU or WASM, in a
// worker) or on a Tandem server, with one progress stream and one cancel button per call.

export { Job } from './job.js';
export type { JobController } from './job.js';
export type { Fallback, RunResult, RunTimings } from './run-result.js';
export type { Runtime, RuntimeEstimate, RuntimeResult, RuntimeRunOptions } from './runtime.js';
export { FALLBACK_CODES, allowsFallback, decidePlacement, meetsBackend } from './router.js';
export type { PlacementDecision } from './router.js';
export { WebSocketRemote, backoffDelayMs, streamUrl } from './websocket-remote.js';
export type {
  WebSocketFactory,
  WebSocketLike,
  WebSocketRemoteOptions,
} from './websocket-remote.js';
export { ModelFileStore, sha256Hex } from './model-files.js';
export { createFileCacheStorage } from './file-cache-storage.js';
export type { ModelCache, ModelCacheStorage } from './file-cache-storage.js';
export type {
  CachedExternalData,
  CachedModel,
  ExternalDataBytes,
  FileProgress,
  ModelFile,
  ModelFileStoreOptions,
  ModelStorage,
} from './model-files.js';
export { LocalRuntime, defaultWorker, webWorkerHandle } from './local-runtime.js';
export type { LocalRunOptions, LocalRuntimeOptions, WorkerHandle } from './local-runtime.js';
export type { BackendInfo } from './local-worker-api.js';
export { classifyOrtError } from './worker-errors.js';
export { createTandem } from './create-tandem.js';
export type { ModelSource, RunOptions, Tandem, TandemOptions } from './create-tandem.js';
export { OipRemote } from './oip-remote.js';
export type { OipRemoteOptions } from './oip-remote.js';
