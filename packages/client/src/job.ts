// A Job is what `tandem.run()` returns: a Promise of the RunResult, an async iterable of the job's
// ProgressEvents, and a cancel() button. Every iterator sees the whole sequence from the first
// event, so a progress bar attached late still starts from the beginning.

import { TandemError, type ProgressEvent } from '@tandem/shared';
import type { RunResult } from './run-result.js';

/** The producer side of a job, used by the router. */
export interface JobController {
  /** Publishes a progress event to every iterator. */
  progress(event: ProgressEvent): void;
  /** Settles the job with its result. */
  resolve(result: RunResult): void;
  /** Settles the job with an error (any thrown value becomes a TandemError). */
  reject(error: unknown): void;
  /** Aborted when the caller cancels (job.cancel() or their own AbortSignal). */
  readonly signal: AbortSignal;
}

/** A running inference: await it for the result, iterate it for progress, cancel it. */
export class Job implements Promise<RunResult>, AsyncIterable<ProgressEvent> {
  /**
   * The job id: the `jobId` of its progress events, and the id on the wire when it runs remotely
   * (`<id>-remote` when the remote run is a fallback from this device).
   */
  readonly id: string;
  /** The model it runs. */
  readonly model: string;
  readonly [Symbol.toStringTag] = 'Job';

  readonly #promise: Promise<RunResult>;
  readonly #events: ProgressEvent[] = [];
  readonly #wakers = new Set<() => void>();
  readonly #abort = new AbortController();
  #settled = false;

  /**
   * Starts a job: `start` receives the controller and drives the work. A caller's `signal`, when
   * given, cancels the job as job.cancel() does.
   */
  constructor(
    id: string,
    model: string,
    start: (controller: JobController) => void,
    signal?: AbortSignal,
  ) {
    this.id = id;
    this.model = model;
    let resolve!: (result: RunResult) => void;
    let reject!: (error: TandemError) => void;
    this.#promise = new Promise<RunResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A job nobody awaits must not become an unhandled rejection.
    this.#promise.catch(() => undefined);
    const onAbort = (): void => this.cancel();
    const settle = (): boolean => {
      if (this.#settled) return false;
      this.#settled = true;
      // A caller's signal often outlives the call (one per page or component, shared by many
      // calls): kept, its listener would keep this job and its outputs alive as long as it.
      signal?.removeEventListener('abort', onAbort);
      this.#wake();
      return true;
    };
    const controller: JobController = {
      progress: (event) => {
        if (this.#settled) return;
        this.#events.push(event);
        this.#wake();
      },
      resolve: (result) => {
        if (settle()) resolve(result);
      },
      reject: (error) => {
        const coded = TandemError.from(error);
        if (settle()) reject(coded);
      },
      signal: this.#abort.signal,
    };
    if (signal !== undefined) {
      if (signal.aborted) this.#abort.abort(signal.reason);
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    try {
      start(controller);
    } catch (error) {
      controller.reject(error);
    }
  }

  /** Cancels the job: the download, session creation, local run or remote job stops, and the job
   * rejects with `E_CANCELLED`. Does nothing once the job has settled. */
  cancel(): void {
    if (this.#settled || this.#abort.signal.aborted) return;
    this.#abort.abort(new TandemError('E_CANCELLED', `job ${this.id} was cancelled`));
  }

  /** Whether the job has a result or an error. */
  get settled(): boolean {
    return this.#settled;
  }

  /** The latest progress event, if any. */
  get lastProgress(): ProgressEvent | undefined {
    return this.#events.at(-1);
  }

  then<A = RunResult, B = never>(
    onFulfilled?: ((value: RunResult) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promise.then(onFulfilled, onRejected);
  }

  catch<B = never>(
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<RunResult | B> {
    return this.#promise.catch(onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<RunResult> {
    return this.#promise.finally(onFinally);
  }

  /** Every progress event of the job, from the first, ending when the job settles. */
  async *[Symbol.asyncIterator](): AsyncIterator<ProgressEvent> {
    let index = 0;
    for (;;) {
      while (index < this.#events.length) yield this.#events[index++] as ProgressEvent;
      if (this.#settled) return;
      await new Promise<void>((resolve) => this.#wakers.add(resolve));
    }
  }

  #wake(): void {
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }
}
