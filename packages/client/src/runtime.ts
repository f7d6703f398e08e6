// The interface every place a model can run implements: the local worker runtime, the WebSocket
// remote and the OIP v2 HTTP remote. The router asks each for an estimate, tries them in order,
// and reports which ran and why.

import type {
  Backend,
  ErrorCode,
  ModelManifest,
  ProgressEvent,
  TensorMap,
  Where,
} from '@tandem/shared';
import type { RunTimings } from './run-result.js';

/** What a runtime thinks of running a model now. */
export interface RuntimeEstimate {
  /** False when this runtime cannot run the model at all (no backend, server unreachable…). */
  readonly available: boolean;
  /** Why it is unavailable, or what the estimate is made of. */
  readonly reason: string;
  /** Estimated milliseconds until a result, from measured history; absent when unknown. */
  readonly ms?: number;
  /** Whether the model would first have to be downloaded (local) or loaded (remote). */
  readonly cold?: boolean;
  /** When unavailable because something failed (the server is unreachable…), its code. */
  readonly code?: ErrorCode;
}

/** Per-call options a runtime receives from the router. */
export interface RuntimeRunOptions {
  readonly jobId: string;
  readonly priority: number;
  readonly deadlineMs?: number;
  readonly outputs?: readonly string[];
  /** Aborted when the job is cancelled; the runtime stops and throws `E_CANCELLED`. */
  readonly signal: AbortSignal;
  /** Progress of this job on this runtime (fraction within the runtime's own stages). */
  readonly onProgress: (event: ProgressEvent) => void;
}

/** What a runtime returns. */
export interface RuntimeResult {
  readonly outputs: TensorMap;
  readonly backend: Backend;
  readonly cold: boolean;
  readonly timings: Partial<RunTimings>;
}

/** A place where models run. */
export interface Runtime {
  readonly where: Where;
  /** A short name for logs and errors: 'worker', 'websocket', 'oip-http'. */
  readonly name: string;
  estimate(model: ModelManifest): Promise<RuntimeEstimate>;
  run(model: ModelManifest, inputs: TensorMap, options: RuntimeRunOptions): Promise<RuntimeResult>;
  /** Prepares the model (server: starts loading; local: downloads and compiles) without running. */
  warm(model: ModelManifest, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}
