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
  /**
   * When `ms` is absent: the least the call would take, from the parts measured so far (a
   * download at the measured bandwidth, say). `auto` uses it to pass over a side already known
   * to be slower than the other side's whole estimate, before that side has run once.
   */
  readonly atLeastMs?: number;
  /** Whether the model would first have to be downloaded (local) or loaded (remote). */
  readonly cold?: boolean;
  /**
   * The server refused a job of this model with E_BUSY and asked for this many more ms before
   * a retry (`retryAfterMs`): `auto` tries the other side first until then, instead of paying a
   * round trip for the same refusal on every call.
   */
  readonly busyForMs?: number;
  /** When unavailable because something failed (the server is unreachable…), its code. */
  readonly code?: ErrorCode;
}

/** Per-call options a runtime receives from the router. */
export interface RuntimeRunOptions {
  /** The job's id: progress events carry it, and a remote job is resumed and cancelled by it. */
  readonly jobId: string;
  /** 0..10, higher first in the server's queue (local runs ignore it). */
  readonly priority: number;
  /** The server must finish within this many ms of receiving the job, else `E_DEADLINE_EXCEEDED`. */
  readonly deadlineMs?: number;
  /** Only these outputs are computed and returned; absent: all of them. */
  readonly outputs?: readonly string[];
  /** Aborted when the job is cancelled; the runtime stops and throws `E_CANCELLED`. */
  readonly signal: AbortSignal;
  /** Progress of this job on this runtime (fraction within the runtime's own stages). */
  readonly onProgress: (event: ProgressEvent) => void;
}

/** What a runtime returns. */
export interface RuntimeResult {
  /** The outputs by name (those asked for, else all). */
  readonly outputs: TensorMap;
  /** What ran it: 'webgpu' or 'wasm' locally, the server's execution provider remotely. */
  readonly backend: Backend;
  /** Whether the run waited for a download or compile (local) or a model load (remote). */
  readonly cold: boolean;
  /** Where this runtime's time went, in ms; stages it did not have are absent. */
  readonly timings: Partial<RunTimings>;
}

/** A place where models run. */
export interface Runtime {
  /** 'local' (this device) or 'remote' (a server). */
  readonly where: Where;
  /** A short name for logs and errors: 'worker', 'websocket', 'oip-http'. */
  readonly name: string;
  /** Whether it can run the model now, and how long it would take (what `auto` compares). */
  estimate(model: ModelManifest): Promise<RuntimeEstimate>;
  /** Runs the model; failures are TandemErrors whose code says whether to fall back. */
  run(model: ModelManifest, inputs: TensorMap, options: RuntimeRunOptions): Promise<RuntimeResult>;
  /** Prepares the model (server: starts loading; local: downloads and compiles) without running. */
  warm(model: ModelManifest, signal?: AbortSignal): Promise<void>;
  /** Frees the runtime (worker, socket); jobs in flight end with `E_CANCELLED`. */
  close(): Promise<void>;
}
