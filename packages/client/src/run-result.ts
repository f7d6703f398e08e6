// What a finished job returns: the outputs, where and on what it ran, whether it fell back from the
// other side and why, and where the time went.

import type { Backend, ErrorCode, TensorMap, Where } from '@tandem/shared';

/** Where the time of a job went, in milliseconds. Stages that did not happen are 0. */
export interface RunTimings {
  /** Model download (local, not cached). */
  readonly downloadMs: number;
  /** Session creation (local). */
  readonly compileMs: number;
  /** Waiting in the server queue (remote). */
  readonly queueMs: number;
  /** Server cold start: loading and warming the model (remote). */
  readonly loadMs: number;
  /** The run itself. */
  readonly runMs: number;
  /** From `run()` to the result. */
  readonly totalMs: number;
}

/** Why a job ran on the other side than first chosen. */
export interface Fallback {
  /** The side that failed (or was skipped): the job then ran on the other. */
  readonly from: Where;
  /** The failure's code (docs/errors.md); only codes the router falls back on appear here. */
  readonly code: ErrorCode;
  /** The failure's message, as the failing side gave it. */
  readonly message: string;
}

/** The result of `tandem.run()`. */
export interface RunResult {
  /** The outputs by name: those the call asked for, else all of the model's. */
  readonly outputs: TensorMap;
  /** The side that ran the job. */
  readonly placement: Where;
  /**
   * The backend that ran it: 'webgpu' or 'wasm' locally, the server's execution provider
   * remotely. An OIP server other than Tandem's does not say: 'cpu' then.
   */
  readonly backend: Backend;
  /**
   * Present when the side the call tried first failed, or the side it would have tried first was
   * skipped because it failed (an unreachable server), and the job ran on the other.
   */
  readonly fallback?: Fallback;
  /** Why the router chose the side it tried first (e.g. "auto: local 42 ms < remote 310 ms"). */
  readonly reason: string;
  /**
   * True when the model had to be downloaded (local) or loaded by the server (remote) first. An
   * OIP server other than Tandem's does not say: true then when the readiness probe before the
   * call found the model not ready.
   */
  readonly cold: boolean;
  /** Where the time went, in ms, from `run()` to the result (stages a side lacks are 0). */
  readonly timings: RunTimings;
}
