// The seam between the server's front doors (the WebSocket gateway, the OIP v2 routes, the /v1 model
// routes) and whatever runs the jobs: the in-process ModelManager (one machine), or the Redis
// dispatcher that puts jobs on BullMQ queues for `tandem worker` processes (scale-out). The front
// doors only ever see this interface, so both modes share one code path for parsing, auth, limits,
// progress and delivery.

import type { ModelState, ModelStatus } from '@tandem/shared';
import type { ExternalDataOnDisk } from './external-data.js';
import type { ModelSignature } from './input-check.js';
import type { Job, JobRequest, ProgressListener } from './job.js';
import type { ModelEntry } from './model-repository.js';

/** A model as the routes see it, wherever it runs (a ModelHost is one). */
export interface DispatchedModel {
  readonly entry: ModelEntry;
  /** The declared inputs and outputs; undefined when the file or model.json could not be read. */
  readonly signature: ModelSignature | undefined;
  /** The external data files the model's weights live in (none for most models). */
  readonly externalData: readonly ExternalDataOnDisk[];
  /** `name@version`, for messages and logs. */
  readonly label: string;
  /** Why the model failed, if it did. */
  readonly failure: string | undefined;
  readonly state: ModelState;
  /** The wire view of the model. */
  status(): ModelStatus;
}

/** Submits jobs and answers questions about models; implemented in-process and over Redis. */
export interface JobDispatcher {
  /** Whether new work is refused because the server is shutting down. */
  readonly draining: boolean;
  /** A model version (its latest when `version` is absent); throws `E_MODEL_NOT_FOUND`. */
  model(name: string, version?: string): DispatchedModel;
  /** Every model version known. */
  models(): DispatchedModel[];
  /** The wire view of every model. */
  statuses(): ModelStatus[];
  /**
   * Accepts a job. Throws a TandemError when it is refused up front (unknown model, bad inputs,
   * draining); anything that goes wrong later settles the job with a coded error instead.
   */
  submit(request: JobRequest, listener?: ProgressListener): { readonly job: Job };
  /**
   * Starts loading a model without running anything (the "wake up" call). Throws
   * `E_MODEL_NOT_FOUND` up front; `ready` resolves with the model's status once it can serve.
   */
  warm(
    name: string,
    version?: string,
  ): { readonly model: DispatchedModel; readonly ready: Promise<ModelStatus> };
  /**
   * Unloads the idle instances of every version of a model (the repository API's unload); throws
   * `E_MODEL_NOT_FOUND` for an unknown name. Absent when another process holds the models (the
   * Redis workers, which unload them when idle).
   */
  unload?(name: string): Promise<void>;
  /**
   * Finds a job this process does not hold but a shared store does (one submitted through another
   * gateway, or before this one restarted), so a client can `resume` it. Undefined when unknown.
   * Absent when jobs live only in this process.
   */
  adopt?(owner: string, id: string): Promise<Job | undefined>;
  /**
   * A resumed job's outcome was handed to its client: forget it wherever else it could be
   * resumed, so it is delivered once. Absent when jobs live only in this process.
   */
  handedOver?(job: Job): void;
  /** Starts background work (keep-warm, connections); called once the server is ready. */
  start(): void | Promise<void>;
  /** Stops taking jobs and waits until every accepted job this process follows has settled. */
  drain(): Promise<void>;
  /** Gives up on jobs still unsettled after the shutdown timeout (see ServerOptions). */
  abandon(): Promise<void>;
  /** Releases everything (models, connections). */
  close(): Promise<void>;
}
