// One inference job inside the server: what was asked, its progress, and its single outcome. A job
// settles exactly once (result, error or cancellation); whoever listens (a WebSocket connection, an
// HTTP request, a resumed connection later) hears the same outcome.

import {
  TandemError,
  createProgressTracker,
  decodeServerMessage,
  type PlannedStage,
  type ProgressEvent,
  type ProgressTracker,
  type ResultMessage,
  type StageUpdate,
  type TensorMap,
} from '@tandem/shared';

/** What a caller submits. */
export interface JobRequest {
  /** Client-chosen id, unique per owner among live jobs. */
  readonly id: string;
  /** Who submitted it (an API key id, or "anonymous"): scopes ids, usage and limits. */
  readonly owner: string;
  readonly model: string;
  readonly version?: string;
  readonly inputs: TensorMap;
  readonly outputs?: readonly string[];
  readonly priority: number;
  /** Milliseconds from receipt by which the job must be done. */
  readonly deadlineMs?: number;
  /**
   * The inputs' buffers belong to this job alone (a received frame nothing else reads), so a
   * worker thread may take them over (transfer, detaching them here) instead of copying.
   */
  readonly detachableInputs?: boolean;
}

/** A finished job's answer: the `result` message without its type tag. */
export type JobResult = Omit<ResultMessage, 'type'>;

/**
 * How a job ended. A result written by a session worker comes with its `result` frame, ready to
 * send; its `result` is then decoded from the frame when first read.
 */
export type JobOutcome =
  | { readonly ok: true; readonly result: JobResult; readonly frame?: Uint8Array }
  | { readonly ok: false; readonly error: TandemError };

/** Receives a job's progress events. */
export type ProgressListener = (event: ProgressEvent) => void;

let nextSeq = 0;

/** The result a `result` frame holds (a frame this server wrote: anything else is a bug). */
function resultOfFrame(frame: Uint8Array): JobResult {
  const message = decodeServerMessage(frame);
  if (message.type !== 'result') {
    throw new TandemError('E_INTERNAL', `a job's result frame holds a ${message.type} message`);
  }
  const { id, model, version, outputs, backend, coldStart, timings } = message;
  return { id, model, version, outputs, backend, coldStart, timings };
}

/** What a settled job's request keeps of its inputs: nothing (see {@link Job.request}). */
const NO_INPUTS: TensorMap = Object.freeze({});

/** A job in the server. Created by the model host; settled once. */
export class Job {
  /** Arrival order, for first-come-first-served among equal priorities. */
  readonly seq = nextSeq++;
  /** Higher runs first (copied from the request for the queue). */
  readonly priority: number;
  /** performance.now() at receipt. */
  readonly receivedAt: number;
  /** performance.now() by which it must be done, if it has a deadline. */
  readonly deadlineAt: number | undefined;
  /** Resolves once, with the outcome; never rejects. */
  readonly outcome: Promise<JobOutcome>;
  /** True when the job arrived while no instance of its model was ready. */
  coldStart = false;
  /** performance.now() when it left the queue for a run. */
  startedAt: number | undefined;
  /** Milliseconds this job spent waiting for a load and warm-up. */
  loadWaitMs = 0;
  warmupWaitMs = 0;
  /** When the last queue-position update was sent, to throttle them. */
  lastPositionAt = 0;
  lastPosition = -1;

  #settled = false;
  #canceller: (() => void) | undefined;
  #resolve!: (outcome: JobOutcome) => void;
  #listener: ProgressListener | undefined;
  #request: JobRequest;
  readonly #plan: readonly PlannedStage[] | undefined;
  /** Made on the first progress event: most jobs under load have nobody listening. */
  #tracker: ProgressTracker | undefined;

  /** `plan`: the stages ahead and their weights (the default remote plan when undefined). */
  constructor(request: JobRequest, plan: readonly PlannedStage[] | undefined, now: number) {
    this.#request = request;
    this.#plan = plan;
    this.priority = request.priority;
    this.receivedAt = now;
    this.deadlineAt = request.deadlineMs === undefined ? undefined : now + request.deadlineMs;
    this.outcome = new Promise((resolve) => (this.#resolve = resolve));
  }

  /**
   * What was asked. Once the job settles its inputs are dropped (an empty map): a settled job may
   * wait a while for a client to resume it, and only its outcome is needed for that.
   */
  get request(): JobRequest {
    return this.#request;
  }

  /** Set by the model host that holds the job, so anyone with the job can cancel it there. */
  setCanceller(canceller: () => void): void {
    this.#canceller = canceller;
  }

  /** Cancels the job in its host (see ModelHost.cancel). */
  cancel(): void {
    this.#canceller?.();
  }

  /** Whether the job has an outcome. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Sets (or clears) who hears progress; a resumed connection takes over here. */
  listen(listener: ProgressListener | undefined): void {
    this.#listener = listener;
  }

  /**
   * Stops `listener` hearing this job, unless another has taken over since (a connection that
   * closes after its client resumed the job on a new one must not silence the new one).
   */
  unlisten(listener: ProgressListener): void {
    if (this.#listener === listener) this.#listener = undefined;
  }

  /** Whether anyone hears this job's progress (skip computing updates nobody reads). */
  get listening(): boolean {
    return this.#listener !== undefined;
  }

  /** Reports a stage update to the listener, if any. */
  progress(update: StageUpdate): void {
    const listener = this.#listener;
    if (this.#settled || listener === undefined) return;
    listener(this.#progressTracker().update(update));
  }

  /** The last progress event, for a resumed connection. */
  get lastProgress(): ProgressEvent | undefined {
    return this.#tracker?.last;
  }

  /** Settles with a result. Returns false if the job had already settled. */
  succeed(result: JobResult): boolean {
    if (this.#settled) return false;
    this.#settle();
    this.#listener?.(this.#progressTracker().finish('done'));
    this.#resolve({ ok: true, result });
    return true;
  }

  /**
   * Settles with a result already encoded as a `result` frame (for this job's id). Returns false
   * if the job had already settled.
   */
  succeedWithFrame(frame: Uint8Array): boolean {
    if (this.#settled) return false;
    this.#settle();
    this.#listener?.(this.#progressTracker().finish('done'));
    let decoded: JobResult | undefined;
    this.#resolve({
      ok: true,
      frame,
      get result(): JobResult {
        decoded ??= resultOfFrame(frame);
        return decoded;
      },
    });
    return true;
  }

  /** Settles with an error. Returns false if the job had already settled. */
  fail(error: TandemError): boolean {
    if (this.#settled) return false;
    this.#settle();
    this.#listener?.(
      this.#progressTracker().finish(error.code === 'E_CANCELLED' ? 'cancelled' : 'error'),
    );
    this.#resolve({ ok: false, error });
    return true;
  }

  #settle(): void {
    this.#settled = true;
    this.#request = { ...this.#request, inputs: NO_INPUTS };
  }

  #progressTracker(): ProgressTracker {
    const request = this.#request;
    const base = {
      jobId: request.id,
      model: request.model,
      where: 'remote',
      now: () => performance.now(),
      startedAt: this.receivedAt,
    } as const;
    this.#tracker ??= createProgressTracker(
      this.#plan === undefined ? base : { ...base, plan: this.#plan },
    );
    return this.#tracker;
  }
}
