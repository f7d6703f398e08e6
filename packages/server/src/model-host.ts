// One model version in the server: its lifecycle (unloaded → loading → warming → ready → idle
// timeout → unloaded, or failed), its instances, its priority queue, and the dispatch loop that
// feeds instances one job (or one dynamic batch) at a time. Measured moving averages of load,
// warm-up and run times drive the ETAs in progress events.

import {
  MovingAverage,
  TandemError,
  type Backend,
  type ModelEstimates,
  type ModelState,
  type ModelStatus,
  type PlannedStage,
  type StageUpdate,
  type TensorMap,
} from '@tandem/shared';
import {
  batchKey,
  batchRows,
  concatInputs,
  hasBatchDimension,
  rowsAgree,
  splitOutputs,
} from './batching.js';
import { checkInputs, type ModelSignature } from './input-check.js';
import { Job, type JobRequest, type ProgressListener } from './job.js';
import { JobQueue } from './job-queue.js';
import { setLongTimeout } from './long-timeout.js';
import type { ModelEntry } from './model-repository.js';
import { resolveExternalData, type ExternalDataOnDisk } from './external-data.js';
import { readOnnxMetadata } from './onnx-metadata.js';
import { busyRetryAfterMs, queuedEtaMs, type QueueCapacity } from './queue-eta.js';
import {
  RESULT_FIELDS,
  toMicros,
  writeResultFields,
  type ResultFrameSpec,
} from './result-frames.js';
import {
  createSession,
  releaseSession,
  runSession,
  type LoadedSession,
  type SessionSettings,
} from './onnx-session.js';
import { warmupInputs } from './warmup-inputs.js';
import { WorkerSession } from './worker-session.js';

/** Server-wide settings a host needs. */
/**
 * Most jobs of a small fast model (one that qualified for inline runs) sent to its worker in one
 * message when several wait: each crossing of the thread boundary wakes a sleeping thread, which
 * costs more than such a model's run, so a queue of them goes over in one crossing each way.
 */
export const GROUP_MAX_JOBS = 16;

/**
 * How many times `inlineMaxRunMs` a model's second warm-up run in its worker may take for an
 * inline session to be tried. The worker's run uses onnxruntime's thread pool, whose start-up
 * can cost a tiny model more than its one-thread run; a model several times over the limit there
 * is over it on one thread too.
 */
const INLINE_PROBE_FACTOR = 4;

export interface HostSettings {
  /** Idle time before an instance is unloaded, when model.json sets none. */
  readonly idleTimeoutMs: number;
  /** Queue bound, when model.json sets none. */
  readonly maxQueue: number;
  /** The autoscaler adds an instance while more than this many jobs wait per active instance. */
  readonly scaleUpQueueDepth: number;
  /** Least time between two queue-position updates to one job, in ms. */
  readonly progressIntervalMs: number;
  /** Models whose runs take at most this long (measured) run on the main thread; 0 disables. */
  readonly inlineMaxRunMs: number;
  /** Only models files up to this size get an inline session. */
  readonly inlineMaxModelBytes: number;
  /** Only jobs with inputs up to this size run inline. */
  readonly inlineMaxInputBytes: number;
  readonly session: SessionSettings;
}

/** What a host tells the rest of the server (metrics, usage, the memory budget, connections). */
export interface HostObserver {
  /** A lifecycle state or instance count changed. */
  stateChanged(host: ModelHost): void;
  /** Asks the budget for room for one more instance; `first` loads must go ahead regardless. */
  requestMemory(host: ModelHost, bytes: number, first: boolean): boolean;
  loaded?(host: ModelHost, loadMs: number, warmupMs: number): void;
  ran?(host: ModelHost, runMs: number, jobs: readonly Job[]): void;
  coldStart?(host: ModelHost): void;
  /**
   * A refusal: `job` is absent for one refused at submit (it throws), and is the job for one
   * accepted and then refused before it could run or finish in time (a missed deadline, a model
   * that failed to load under it). A scale-out worker marks such jobs for its gateway.
   */
  rejected?(host: ModelHost, code: string, job?: Job): void;
  log?(level: 'info' | 'warn', message: string, details?: Record<string, unknown>): void;
}

type InstanceState = 'loading' | 'warming' | 'ready' | 'unloading';

interface Instance {
  readonly id: number;
  state: InstanceState;
  loaded: WorkerSession | undefined;
  /** A main-thread session of a small, fast model (see HostSettings.inlineMaxRunMs). */
  inline: LoadedSession | undefined;
  /**
   * Runs handed to the instance and not yet answered: one, or two when a full group waits in the
   * worker behind a running one (see {@link ModelHost.#pump}).
   */
  runs: number;
  /** Jobs in those runs: they go first, so later deadlines count their time. */
  runJobs: number;
  /** The run in flight is on the main-thread session: nothing goes behind it in the worker. */
  inlineRunning: boolean;
  lastUsedAt: number;
  stateSince: number;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

let nextInstanceId = 1;

/** A model version's lifecycle, queue and instances. */
export class ModelHost {
  readonly entry: ModelEntry;
  /** The declared inputs and outputs (model.json overrides the file's own). */
  readonly signature: ModelSignature | undefined;
  /** The external data files the model's weights live in (none for most models). */
  readonly externalData: readonly ExternalDataOnDisk[];
  /**
   * The model's size: model.onnx and its external data files, in bytes. The memory budget counts
   * this per instance, and a browser downloads this much to run it locally.
   */
  readonly bytes: number;
  readonly estimates = {
    load: new MovingAverage(),
    warmup: new MovingAverage(),
    run: new MovingAverage(),
  };

  /**
   * onnxruntime's own time per job in the worker (single and grouped runs alike, no thread hops):
   * whether small jobs still qualify for grouping. Fed by every worker run, so one slow run (a
   * pause in the worker) cannot switch grouping off for good.
   */
  readonly #workerRunMs = new MovingAverage();
  #failure: string | undefined;
  /**
   * Whether `#failure` came from onnxruntime refusing to create a session (worth another try on
   * `warm`: memory may have been short) rather than from the files themselves (not ONNX,
   * unsupported tensor types, a broken model.json), which only a new file cures: the manager
   * then makes a new host for it.
   */
  #loadFailed = false;
  #draining = false;
  readonly #instances: Instance[] = [];
  readonly #queue = new JobQueue<Job>();
  readonly #running = new Set<Job>();
  readonly #settings: HostSettings;
  readonly #observer: HostObserver;
  readonly #batchable: boolean;
  #batchTimer: ReturnType<typeof setTimeout> | undefined;
  #idleWaiters: (() => void)[] = [];
  #readyWaiters: { resolve: () => void; reject: (error: TandemError) => void }[] = [];
  #closed = false;

  constructor(entry: ModelEntry, settings: HostSettings, observer: HostObserver) {
    this.entry = entry;
    this.#settings = settings;
    this.#observer = observer;
    let signature: ModelSignature | undefined;
    let externalData: ExternalDataOnDisk[] = [];
    if (entry.configError !== undefined) {
      this.#failure = `model.json: ${entry.configError}`;
    } else {
      try {
        const metadata = readOnnxMetadata(entry.path);
        externalData = resolveExternalData(entry.path, metadata.externalData);
        if (metadata.unsupported.length > 0) {
          this.#failure = `unsupported tensor types for ${metadata.unsupported.join(', ')}`;
        }
        signature = {
          inputs: entry.config.inputs ?? metadata.inputs,
          outputs: entry.config.outputs ?? metadata.outputs,
        };
      } catch (error) {
        this.#failure = error instanceof Error ? error.message : String(error);
      }
    }
    this.signature = signature;
    this.externalData = externalData;
    this.bytes = externalData.reduce((sum, file) => sum + file.bytes, entry.bytes);
    this.#batchable =
      entry.config.maxBatch > 1 && signature !== undefined && hasBatchDimension(signature);
  }

  /** `name@version`, for logs. */
  get label(): string {
    return `${this.entry.name}@${this.entry.version}`;
  }

  /** The model's lifecycle state, summarised over its instances. */
  get state(): ModelState {
    if (this.#failure !== undefined) return 'failed';
    const states = this.#instances.map((instance) => instance.state);
    if (states.includes('ready')) return 'ready';
    if (states.includes('warming')) return 'warming';
    if (states.includes('loading')) return 'loading';
    return 'unloaded';
  }

  /** Why the model failed, if it did. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** Instances per state, for metrics. */
  instanceCounts(): Record<InstanceState, number> {
    const counts = { loading: 0, warming: 0, ready: 0, unloading: 0 };
    for (const instance of this.#instances) counts[instance.state] += 1;
    return counts;
  }

  /** Bytes the memory budget counts for this model's loaded and loading instances. */
  get loadedBytes(): number {
    return this.#instances.filter((i) => i.state !== 'unloading').length * this.bytes;
  }

  /** Jobs waiting in the queue. */
  get queueDepth(): number {
    return this.#queue.size;
  }

  /** Milliseconds the oldest waiting job has waited (0 when none). */
  oldestWaitMs(now = performance.now()): number {
    let oldest = Infinity;
    for (const job of this.#queue.toArray()) oldest = Math.min(oldest, job.receivedAt);
    return oldest === Infinity ? 0 : now - oldest;
  }

  /** The wire view of this model. */
  status(): ModelStatus {
    const status = {
      name: this.entry.name,
      version: this.entry.version,
      state: this.state,
      instances: this.#instances.filter((i) => i.state === 'ready').length,
      estimates: this.#measured(),
    };
    return this.#failure === undefined ? status : { ...status, reason: this.#failure };
  }

  /**
   * Accepts a job: checks the model and the inputs, queues it, and starts a load if nothing is
   * loaded. Throws a TandemError for anything rejected up front (nothing is queued then).
   */
  submit(request: JobRequest, listener?: ProgressListener): Job {
    try {
      if (this.#draining || this.#closed) {
        throw new TandemError('E_SHUTTING_DOWN', 'the server is shutting down', {
          retryAfterMs: 1000,
        });
      }
      if (this.#failure !== undefined || this.signature === undefined) {
        throw new TandemError(
          'E_MODEL_LOAD_FAILED',
          `model ${this.label} failed to load: ${this.#failure ?? 'no signature'}`,
        );
      }
      checkInputs(this.signature, request.inputs, request.outputs);
      const maxQueue = this.entry.config.maxQueue ?? this.#settings.maxQueue;
      if (this.#queue.size >= maxQueue) {
        throw new TandemError('E_BUSY', `the queue for ${this.label} is full (${maxQueue} jobs)`, {
          retryAfterMs: this.#retryAfterMs(),
        });
      }
    } catch (error) {
      const coded = TandemError.from(error);
      this.#observer.rejected?.(this, coded.code);
      throw coded;
    }
    const cold = this.#readyCount() === 0;
    // The plan only shapes progress events: none for a job nobody listens to.
    const plan = listener === undefined ? undefined : this.#plan(cold, this.#queue.size);
    // An empty list of outputs asks for every output, as none does (and as OIP reads it):
    // passed on, onnxruntime refused the run ("'fetches' cannot be an empty array").
    const job = new Job(
      request.outputs?.length === 0 ? withAllOutputs(request) : request,
      plan,
      performance.now(),
    );
    // Listen before anything happens: the first events (queued, loading) come from this call.
    job.listen(listener);
    job.setCanceller(() => this.cancel(job));
    job.coldStart = cold;
    if (cold) this.#observer.coldStart?.(this);
    const position = this.#queue.push(job);
    if (job.deadlineAt !== undefined) this.#watchDeadline(job);
    this.#reportWaiting(job, position, true);
    this.#ensureCapacity();
    this.#pump();
    return job;
  }

  /** Cancels a job: a queued one leaves the queue; a running one's result is dropped. */
  cancel(job: Job): void {
    const cancelled = new TandemError('E_CANCELLED', `job ${job.request.id} was cancelled`);
    if (this.#queue.remove(job)) {
      job.fail(cancelled);
      this.#updatePositions();
      this.#checkIdle();
    } else if (this.#running.has(job)) {
      job.fail(cancelled);
    }
  }

  /** Starts a load without running anything; resolves when an instance is ready. */
  warm(): Promise<void> {
    if (this.#closed || this.#draining) {
      return Promise.reject(
        new TandemError('E_SHUTTING_DOWN', 'the server is shutting down', { retryAfterMs: 1000 }),
      );
    }
    if (this.#loadFailed) {
      this.#failure = undefined;
      this.#loadFailed = false;
    }
    if (this.#failure !== undefined) {
      return Promise.reject(
        new TandemError('E_MODEL_LOAD_FAILED', `model ${this.label} failed: ${this.#failure}`),
      );
    }
    if (this.#readyCount() > 0) {
      for (const instance of this.#instances) this.#scheduleIdle(instance);
      return Promise.resolve();
    }
    const promise = new Promise<void>((resolve, reject) =>
      this.#readyWaiters.push({ resolve, reject }),
    );
    if (!this.#instances.some((i) => i.state === 'loading' || i.state === 'warming')) {
      void this.#startInstance(true);
    }
    return promise;
  }

  /** Loads instances up to `minReady` (keep-warm); nothing once the host drains or closes. */
  keepWarm(): void {
    if (this.#closed || this.#draining) return;
    const missing = this.entry.config.minReady - this.#activeCount();
    for (let i = 0; i < missing && this.#failure === undefined; i++)
      void this.#startInstance(i === 0 && this.#activeCount() === 0);
  }

  /**
   * Unloads the least recently used idle instance beyond `minReady`, for the memory budget.
   * Returns its `lastUsedAt`, or undefined when nothing could be unloaded.
   */
  evictableSince(): number | undefined {
    const candidate = this.#evictionCandidate();
    return candidate?.lastUsedAt;
  }

  /** Bytes the memory budget could reclaim here: every instance {@link evict} may unload. */
  get evictableBytes(): number {
    if (this.#queue.size > 0) return 0;
    const idle = this.#instances.filter((i) => i.state === 'ready' && i.runs === 0).length;
    return (
      Math.max(0, Math.min(idle, this.#readyCount() - this.entry.config.minReady)) * this.bytes
    );
  }

  /** Unloads the instance {@link evictableSince} pointed at. */
  evict(): boolean {
    const candidate = this.#evictionCandidate();
    if (candidate === undefined) return false;
    void this.#unload(candidate, 'memory budget');
    return true;
  }

  /**
   * Unloads every idle instance (ready, running nothing, no job waiting) beyond `minReady`: the
   * repository API's unload. Busy instances finish and go at their idle timeout as usual; the
   * keep-warm ones stay, since model.json asks for them. Resolves once those instances are gone.
   */
  async unloadIdle(): Promise<void> {
    if (this.#queue.size > 0) return;
    const idle = this.#instances
      .filter((i) => i.state === 'ready' && i.runs === 0)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    const surplus = this.#readyCount() - this.entry.config.minReady;
    await Promise.all(idle.slice(0, Math.max(0, surplus)).map((i) => this.#unload(i, 'unload')));
  }

  /** Stops taking jobs; resolves when every accepted job has settled. */
  drain(): Promise<void> {
    this.#draining = true;
    if (this.#batchTimer !== undefined) {
      clearTimeout(this.#batchTimer);
      this.#batchTimer = undefined;
    }
    this.#pump(true);
    if (this.#queue.size === 0 && this.#running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Gives up on every accepted job (the shutdown timeout passed): queued and running jobs fail
   * with a retryable `E_SHUTTING_DOWN` now, while their callers can still hear it. Returns them.
   */
  abandon(): Job[] {
    const error = new TandemError(
      'E_SHUTTING_DOWN',
      'the server shut down before the job finished',
      { retryAfterMs: 1000 },
    );
    const jobs = [...this.#queue.removeWhere(() => true), ...this.#running];
    for (const job of jobs) job.fail(error);
    return jobs;
  }

  /**
   * Releases every instance. Jobs still queued and `warm` calls still waiting fail with `reason`.
   * @param reason @default E_SHUTTING_DOWN
   */
  async close(
    reason = new TandemError('E_SHUTTING_DOWN', 'the server is shutting down'),
  ): Promise<void> {
    this.#closed = true;
    if (this.#batchTimer !== undefined) clearTimeout(this.#batchTimer);
    for (const job of this.#queue.removeWhere(() => true)) job.fail(reason);
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(reason);
    await Promise.all(this.#instances.map((instance) => this.#unload(instance, 'shutdown')));
  }

  // ---- dispatch -------------------------------------------------------------------------------

  /**
   * Hands queued jobs to idle instances; then a full group of a small fast model to an instance
   * whose worker is running one. Each hand-over to a sleeping worker thread and each answer back
   * wait for a thread wake-up (about 0.1 ms on a busy 2-core machine, more than a tiny run), so a
   * second group queued in the worker starts the moment the first ends, while the main thread
   * handles the first one's answers. Only a full group goes behind, and only behind a worker run:
   * a partial group is better off collecting more jobs while it waits, and an inline run would
   * otherwise share the CPU with the worker's.
   */
  #pump(force = false): void {
    if (this.#closed) return;
    for (const instance of this.#instances) {
      if (instance.state !== 'ready' || instance.runs > 0) continue;
      const batch = this.#takeBatch(force, instance, false);
      if (batch === undefined) break;
      void this.#run(instance, batch);
    }
    for (const instance of this.#instances) {
      if (
        instance.state !== 'ready' ||
        instance.runs !== 1 ||
        instance.inlineRunning ||
        this.#queue.size < GROUP_MAX_JOBS
      )
        continue;
      const group = this.#takeBatch(force, instance, true);
      if (group === undefined) break;
      void this.#run(instance, group);
    }
    this.#checkIdle();
  }

  /**
   * The next jobs to run together, or undefined (nothing runnable yet): one batch along the batch
   * dimension for batchable models; a group run one after the other in one worker round trip for
   * small fast models (see {@link GROUP_MAX_JOBS}); else one job. `behind` a run in flight, only
   * a full group of a small fast model, or nothing.
   */
  #takeBatch(force: boolean, instance: Instance, behind: boolean): Job[] | undefined {
    const now = performance.now();
    for (let head = this.#queue.peek(); head !== undefined; head = this.#queue.peek()) {
      if (!this.#tooLate(head, now)) break;
      this.#queue.shift();
      this.#expire(head);
    }
    const head = this.#queue.peek();
    if (head === undefined) return undefined;
    if (!this.#batchable) {
      const size = this.#groupSize(instance, now, behind);
      if (size === 0) return undefined;
      const group: Job[] = [];
      for (let i = 0; i < size; i++) group.push(this.#queue.shift() as Job);
      this.#updatePositions();
      return group;
    }
    if (behind) return undefined;
    if (!rowsAgree(head.request.inputs)) {
      // No job can share its run: it goes alone, at once.
      this.#queue.shift();
      this.#updatePositions();
      return [head];
    }
    const key = batchKey(head.request.inputs, head.request.outputs);
    const maxRows = this.entry.config.maxBatch;
    let rows = 0;
    const late: Job[] = [];
    const batch = this.#queue.toArray().filter((job) => {
      if (batchKey(job.request.inputs, job.request.outputs) !== key) return false;
      if (!rowsAgree(job.request.inputs)) return false;
      // Every member finishes with the batch's one run: one that cannot make its deadline fails
      // now rather than run late (the head passed this check above).
      if (this.#tooLate(job, now)) {
        late.push(job);
        return false;
      }
      const jobRows = batchRows(job.request.inputs);
      if (rows > 0 && rows + jobRows > maxRows) return false;
      rows += jobRows;
      return true;
    });
    for (const job of late) {
      this.#queue.remove(job);
      this.#expire(job);
    }
    if (late.length > 0) this.#updatePositions();
    const waitedMs = now - head.receivedAt;
    if (!force && rows < maxRows && waitedMs < this.entry.config.maxDelayMs) {
      // Wait a little for more jobs to fill the batch, but never past the head's delay budget.
      this.#batchTimer ??= setTimeout(() => {
        this.#batchTimer = undefined;
        this.#pump(true);
      }, this.entry.config.maxDelayMs - waitedMs);
      return undefined;
    }
    for (const job of batch) this.#queue.remove(job);
    this.#updatePositions();
    return batch;
  }

  /**
   * How many of the queue's leading jobs run next: up to GROUP_MAX_JOBS small ones of a model that
   * qualified for grouping (instance.inline) and still runs fast, else the head alone. `behind` a
   * run in flight: a full group, or 0.
   */
  #groupSize(instance: Instance, now: number, behind: boolean): number {
    const grouping =
      instance.inline !== undefined &&
      (this.#workerRunMs.value ?? 0) <= this.#settings.inlineMaxRunMs;
    if (!grouping) return behind ? 0 : 1;
    // A group holds the instance until its last job is done; jobs handed over earlier go first.
    const runMs = this.#workerRunMs.value ?? this.estimates.run.value ?? 0;
    const aheadMs = behind ? instance.runJobs * runMs : 0;
    let size = 0;
    for (let job = this.#queue.at(0); job !== undefined && size < GROUP_MAX_JOBS;) {
      if (inputBytes(job.request.inputs) > this.#settings.inlineMaxInputBytes) break;
      // Member k finishes about k + 1 runs from its start: a deadline it would miss leaves it
      // queued (the head, run alone at once, never misses one: #tooLate checked it).
      if (
        (size > 0 || behind) &&
        job.deadlineAt !== undefined &&
        now + aheadMs + (size + 1) * runMs > job.deadlineAt
      )
        break;
      size++;
      job = this.#queue.at(size);
    }
    if (behind) return size === GROUP_MAX_JOBS ? size : 0;
    return Math.max(size, 1);
  }

  async #run(instance: Instance, jobs: Job[]): Promise<void> {
    const loaded = instance.loaded;
    if (loaded === undefined) return;
    instance.runs++;
    instance.runJobs += jobs.length;
    if (instance.idleTimer !== undefined) clearTimeout(instance.idleTimer);
    const started = performance.now();
    const runEstimate = this.estimates.run.value;
    for (const job of jobs) {
      job.startedAt = started;
      this.#running.add(job);
      job.progress(
        runEstimate === undefined
          ? { stage: 'running', etaMs: 0 }
          : { stage: 'running', etaMs: runEstimate, stageExpectedMs: runEstimate },
      );
    }
    if (!this.#batchable && jobs.length > 1) {
      await this.#runGroup(loaded, jobs, started);
      this.#ranOn(instance, jobs.length);
      return;
    }
    try {
      const first = jobs[0] as Job;
      const inputs = concatInputs(jobs.map((job) => job.request.inputs));
      const inline = this.#runsInline(instance, inputs) ? instance.inline : undefined;
      let outputs: TensorMap;
      if (inline === undefined) {
        // Batched inputs were just concatenated into new buffers: nothing else holds them.
        const ran = await loaded.run(
          inputs,
          first.request.outputs,
          jobs.length > 1 || first.request.detachableInputs === true,
        );
        outputs = ran.outputs;
        if (jobs.length === 1) this.#workerRunMs.add(ran.runMs);
      } else {
        instance.inlineRunning = true;
        try {
          outputs = await runSession(inline, inputs, first.request.outputs);
        } finally {
          instance.inlineRunning = false;
        }
      }
      const finished = performance.now();
      const runMs = finished - started;
      this.estimates.run.add(runMs);
      this.#observer.ran?.(this, runMs, jobs);
      const parts =
        jobs.length === 1
          ? [outputs]
          : splitOutputs(
              outputs,
              jobs.map((job) => batchRows(job.request.inputs)),
            );
      jobs.forEach((job, index) => {
        this.#succeed(job, parts[index] ?? {}, loaded.backend, { started, finished, runMs });
      });
    } catch (error) {
      const coded = TandemError.from(error, 'E_RUNTIME');
      for (const job of jobs) job.fail(coded);
    } finally {
      for (const job of jobs) this.#running.delete(job);
      this.#ranOn(instance, jobs.length);
    }
  }

  /** Frees an instance after a run and gives it the next jobs. */
  #ranOn(instance: Instance, jobCount: number): void {
    instance.runs--;
    instance.runJobs -= jobCount;
    instance.lastUsedAt = performance.now();
    this.#scheduleIdle(instance);
    this.#pump(this.#draining);
  }

  /**
   * Runs a group of small jobs one after the other in the instance's worker, in one round trip;
   * each job gets its own outputs or error, and its own measured run time.
   */
  async #runGroup(loaded: WorkerSession, jobs: readonly Job[], started: number): Promise<void> {
    try {
      const results = await loaded.runEach(
        jobs.map((job) => ({ inputs: job.request.inputs, outputs: job.request.outputs })),
        this.#resultFrameSpec(jobs, started, loaded.backend),
      );
      const finished = performance.now();
      // The worker ran them one after the other: a job waited for the instance while the jobs
      // before it in the group ran, which is queueing (see queueMs), not its run.
      let aheadMs = 0;
      jobs.forEach((job, index) => {
        const item = results[index];
        if (item === undefined) {
          job.fail(new TandemError('E_INTERNAL', 'the session worker answered too few results'));
          return;
        }
        this.estimates.run.add(item.runMs);
        this.#workerRunMs.add(item.runMs);
        this.#observer.ran?.(this, item.runMs, [job]);
        const waitedMs = aheadMs;
        aheadMs += item.runMs;
        if (!item.ok) {
          job.fail(TandemError.fromSerialized(item.error));
          return;
        }
        if ('frame' in item) job.succeedWithFrame(item.frame);
        else
          this.#succeed(job, item.outputs, loaded.backend, {
            started: started + waitedMs,
            finished,
            runMs: item.runMs,
          });
      });
    } catch (error) {
      const coded = TandemError.from(error, 'E_RUNTIME');
      for (const job of jobs) job.fail(coded);
    } finally {
      for (const job of jobs) this.#running.delete(job);
    }
  }

  /**
   * What the worker needs to write a group's `result` frames: everything in a job's result but
   * its outputs and its run (see result-frames.ts). Times are as {@link #succeed} reports them.
   */
  #resultFrameSpec(jobs: readonly Job[], started: number, backend: Backend): ResultFrameSpec {
    const numbers = new Float64Array(jobs.length * RESULT_FIELDS);
    jobs.forEach((job, index) => {
      writeResultFields(numbers, index, {
        coldStart: job.coldStart,
        queueMs: toMicros(
          Math.max(0, started - job.receivedAt - job.loadWaitMs - job.warmupWaitMs),
        ),
        loadMs: toMicros(job.loadWaitMs),
        warmupMs: toMicros(job.warmupWaitMs),
        receivedAtEpochMs: performance.timeOrigin + job.receivedAt,
      });
    });
    return {
      model: this.entry.name,
      version: this.entry.version,
      backend,
      ids: jobs.map((job) => job.request.id),
      numbers,
    };
  }

  /** Settles a job with its outputs and where its time went. */
  #succeed(
    job: Job,
    outputs: TensorMap,
    backend: Backend,
    times: { readonly started: number; readonly finished: number; readonly runMs: number },
  ): void {
    job.succeed({
      id: job.request.id,
      model: this.entry.name,
      version: this.entry.version,
      outputs,
      backend,
      coldStart: job.coldStart,
      // To the microsecond: the clock says no more, and a full-precision double costs several
      // times as much to write into the result header (and to parse on the other side).
      timings: {
        queueMs: toMicros(
          Math.max(0, times.started - job.receivedAt - job.loadWaitMs - job.warmupWaitMs),
        ),
        loadMs: toMicros(job.loadWaitMs),
        warmupMs: toMicros(job.warmupWaitMs),
        runMs: toMicros(times.runMs),
        totalMs: toMicros(times.finished - job.receivedAt),
      },
    });
  }

  /**
   * Whether this run goes to the instance's main-thread session: the model qualified at load (a
   * measured run on an idle loop within inlineMaxRunMs), the inputs are small, and no other job
   * waits (under load the thread hop pays for itself: it frees the main thread). (Wall times of
   * later inline runs include event-loop waits under load, so they cannot judge the run itself.)
   */
  #runsInline(instance: Instance, inputs: TensorMap): boolean {
    if (instance.inline === undefined) return false;
    // With jobs waiting, the worker thread runs this one while the main thread decodes, checks
    // and answers the others on the other core; inline, both would queue on the main thread.
    if (this.#queue.size > 0) return false;
    return inputBytes(inputs) <= this.#settings.inlineMaxInputBytes;
  }

  /** Fails a job taken off the queue that could not finish before its deadline. */
  #expire(job: Job): void {
    job.fail(
      new TandemError(
        'E_DEADLINE_EXCEEDED',
        `job ${job.request.id} could not finish before its deadline of ${job.request.deadlineMs} ms`,
      ),
    );
    this.#observer.rejected?.(this, 'E_DEADLINE_EXCEEDED', job);
  }

  #tooLate(job: Job, now: number): boolean {
    if (job.deadlineAt === undefined) return false;
    return now + (this.estimates.run.value ?? 0) > job.deadlineAt;
  }

  #watchDeadline(job: Job): void {
    const deadlineAt = job.deadlineAt as number;
    const timer = setLongTimeout(() => {
      const error = new TandemError(
        'E_DEADLINE_EXCEEDED',
        `job ${job.request.id} passed its deadline of ${job.request.deadlineMs} ms`,
      );
      if (this.#queue.remove(job)) {
        job.fail(error);
        this.#updatePositions();
        this.#observer.rejected?.(this, error.code, job);
      } else if (this.#running.has(job) && job.fail(error)) {
        this.#observer.rejected?.(this, error.code, job);
      }
    }, deadlineAt - performance.now());
    void job.outcome.then(() => {
      timer.clear();
    });
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  #readyCount(): number {
    return this.#instances.filter((i) => i.state === 'ready').length;
  }

  #activeCount(): number {
    return this.#instances.filter((i) => i.state !== 'unloading').length;
  }

  /** Starts a first instance for waiting jobs, and more while the queue is deep (autoscaler). */
  #ensureCapacity(): void {
    if (this.#failure !== undefined || this.#closed || this.#queue.size === 0) return;
    const active = this.#activeCount();
    if (active === 0) {
      void this.#startInstance(true);
      return;
    }
    const starting = this.#instances.some((i) => i.state === 'loading' || i.state === 'warming');
    const deep = this.#queue.size > this.#settings.scaleUpQueueDepth * active;
    if (!starting && deep && active < this.entry.config.maxInstances) {
      void this.#startInstance(false);
    }
  }

  async #startInstance(first: boolean): Promise<void> {
    if (!this.#observer.requestMemory(this, this.bytes, first)) return;
    const loadStart = performance.now();
    const instance: Instance = {
      id: nextInstanceId++,
      state: 'loading',
      loaded: undefined,
      inline: undefined,
      runs: 0,
      runJobs: 0,
      inlineRunning: false,
      lastUsedAt: loadStart,
      stateSince: loadStart,
      idleTimer: undefined,
    };
    this.#instances.push(instance);
    this.#observer.stateChanged(this);
    this.#reportAllWaiting();
    let loaded: WorkerSession;
    try {
      const settings: SessionSettings =
        this.entry.config.intraOpNumThreads > 0
          ? { ...this.#settings.session, intraOpNumThreads: this.entry.config.intraOpNumThreads }
          : this.#settings.session;
      loaded = await WorkerSession.load(this.entry.path, settings);
      loaded.onLost((error) => {
        this.#lost(instance, error);
      });
      if (loaded.skipped.length > 0) {
        // An operator who configured a GPU must hear that this model serves without it.
        this.#observer.log?.('warn', `${this.label} runs on ${loaded.backend}`, {
          skipped: loaded.skipped,
        });
      }
    } catch (error) {
      this.#remove(instance);
      const coded = TandemError.from(error, 'E_MODEL_LOAD_FAILED');
      if (this.#readyCount() === 0) this.#fail(coded);
      else
        this.#observer.log?.('warn', `extra instance of ${this.label} failed to load`, {
          reason: coded.message,
        });
      return;
    }
    const loadEnd = performance.now();
    const loadMs = loadEnd - loadStart;
    if (this.#discarded(instance)) {
      await loaded.release();
      return;
    }
    this.estimates.load.add(loadMs);
    instance.state = 'warming';
    instance.stateSince = loadEnd;
    this.#observer.stateChanged(this);
    this.#reportAllWaiting();
    let warmRunMs: number | undefined;
    try {
      await loaded.run(this.#warmupInputs(), undefined);
      // The first run pays one-time costs; a second says what a run costs, for the inline check.
      if (this.#inlineCandidate())
        warmRunMs = (await loaded.run(this.#warmupInputs(), undefined)).runMs;
    } catch (error) {
      // A warm-up on zeros can fail for models that need real data; real jobs may still work.
      this.#observer.log?.('warn', `warm-up run of ${this.label} failed`, {
        reason: error instanceof Error ? error.message : String(error),
      });
    }
    const ready = performance.now();
    const warmupMs = ready - loadEnd;
    this.estimates.warmup.add(warmupMs);
    for (const job of this.#queue.toArray()) {
      if (!job.coldStart) continue;
      job.loadWaitMs += Math.max(0, loadEnd - Math.max(loadStart, job.receivedAt));
      job.warmupWaitMs += Math.max(0, ready - Math.max(loadEnd, job.receivedAt));
    }
    if (this.#discarded(instance)) {
      await loaded.release();
      return;
    }
    instance.inline = await this.#inlineSession(warmRunMs);
    if (this.#discarded(instance)) {
      await loaded.release();
      if (instance.inline !== undefined) await releaseSession(instance.inline);
      return;
    }
    instance.loaded = loaded;
    instance.state = 'ready';
    instance.stateSince = ready;
    instance.lastUsedAt = ready;
    this.#observer.loaded?.(this, loadMs, warmupMs);
    this.#observer.stateChanged(this);
    for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve();
    this.#scheduleIdle(instance);
    this.#pump(this.#draining);
    this.#ensureCapacity();
  }

  /**
   * A second, main-thread session for a small model whose warm-up run was fast: handing a job to
   * a worker thread and back costs more than such a run, so it runs inline, blocking the event
   * loop for at most about `inlineMaxRunMs`. Larger inputs still go to the worker.
   */
  async #inlineSession(warmRunMs: number | undefined): Promise<LoadedSession | undefined> {
    // A model whose run in its worker took several times the limit (with onnxruntime's threads
    // there; one thread here is no faster) would only be measured and dropped, after a second
    // session's creation and two runs blocking the main thread: a fifth of a second of every cold
    // start of a model like PaddleOCR's detector.
    if (
      !this.#inlineCandidate() ||
      warmRunMs === undefined ||
      warmRunMs > INLINE_PROBE_FACTOR * this.#settings.inlineMaxRunMs
    )
      return undefined;
    const { inlineMaxRunMs } = this.#settings;
    try {
      // One thread: no pool threads spinning on the cores the event loop needs.
      const inline = await createSession(this.entry.path, {
        ...this.#settings.session,
        intraOpNumThreads: 1,
      });
      // The first run pays one-time costs; the second says what a run costs.
      await runSession(inline, this.#warmupInputs(), undefined);
      const started = performance.now();
      await runSession(inline, this.#warmupInputs(), undefined);
      const runMs = performance.now() - started;

      if (runMs > inlineMaxRunMs) {
        await releaseSession(inline);
        return undefined;
      }
      return inline;
    } catch (error) {
      this.#observer.log?.(
        'warn',
        `inline session of ${this.label} failed; using the worker only`,
        {
          reason: error instanceof Error ? error.message : String(error),
        },
      );
      return undefined;
    }
  }

  /** Whether the settings let this model have an inline session at all (its size, the limit). */
  #inlineCandidate(): boolean {
    return this.#settings.inlineMaxRunMs > 0 && this.bytes <= this.#settings.inlineMaxModelBytes;
  }

  #warmupInputs(): TensorMap {
    return warmupInputs(
      this.signature ?? { inputs: [], outputs: [] },
      this.entry.config.warmupDims,
      this.entry.config.warmupValues,
    );
  }

  /** True when the instance was unloaded or the host closed while it was loading. */
  /**
   * An instance whose worker thread died (its jobs in flight failed with it): it goes, and jobs
   * still waiting get a new instance, as after a cold start. Left in place, every later job on it
   * would fail.
   */
  #lost(instance: Instance, error: TandemError): void {
    if (this.#discarded(instance)) return;
    this.#observer.log?.('warn', `instance ${instance.id} of ${this.label} lost its worker`, {
      reason: error.message,
    });
    void this.#unload(instance, 'worker lost').then(() => {
      this.#ensureCapacity();
      // A keep-warm model promises no cold start: it must not wait for a job to reload.
      this.keepWarm();
      this.#pump(this.#draining);
    });
  }

  #discarded(instance: Instance): boolean {
    return this.#closed || instance.state === 'unloading';
  }

  #fail(error: TandemError): void {
    this.#failure = error.message;
    this.#loadFailed = true;
    this.#observer.log?.('warn', `model ${this.label} failed to load`, { reason: error.message });
    const failed = new TandemError(
      'E_MODEL_LOAD_FAILED',
      `model ${this.label} failed to load: ${error.message}`,
    );
    for (const job of this.#queue.removeWhere(() => true)) {
      // Accepted, never run: refused after all, like a job whose deadline passed in the queue.
      job.fail(failed);
      this.#observer.rejected?.(this, failed.code, job);
    }
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(failed);
    this.#observer.stateChanged(this);
    this.#checkIdle();
  }

  #scheduleIdle(instance: Instance): void {
    if (instance.idleTimer !== undefined) clearTimeout(instance.idleTimer);
    instance.idleTimer = undefined;
    if (instance.state !== 'ready' || instance.runs > 0 || this.#closed) return;
    const idleTimeoutMs = this.entry.config.idleTimeoutMs ?? this.#settings.idleTimeoutMs;
    instance.idleTimer = setTimeout(() => {
      instance.idleTimer = undefined;
      const keep = this.entry.config.minReady;
      if (
        instance.state === 'ready' &&
        instance.runs === 0 &&
        this.#queue.size === 0 &&
        this.#readyCount() > keep
      ) {
        void this.#unload(instance, 'idle');
      }
    }, idleTimeoutMs);
    instance.idleTimer.unref();
  }

  #evictionCandidate(): Instance | undefined {
    if (this.#queue.size > 0 || this.#readyCount() <= this.entry.config.minReady) return undefined;
    return this.#instances
      .filter((i) => i.state === 'ready' && i.runs === 0)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt)[0];
  }

  async #unload(instance: Instance, why: string): Promise<void> {
    if (instance.state === 'unloading') return;
    const loaded = instance.loaded;
    const inline = instance.inline;
    instance.state = 'unloading';
    instance.loaded = undefined;
    instance.inline = undefined;
    if (instance.idleTimer !== undefined) clearTimeout(instance.idleTimer);
    this.#observer.log?.('info', `unloading ${this.label} instance ${instance.id} (${why})`);
    if (loaded !== undefined) await loaded.release();
    if (inline !== undefined) await releaseSession(inline);
    this.#remove(instance);
    this.#observer.stateChanged(this);
  }

  #remove(instance: Instance): void {
    const index = this.#instances.indexOf(instance);
    if (index >= 0) this.#instances.splice(index, 1);
  }

  #checkIdle(): void {
    if (this.#queue.size > 0 || this.#running.size > 0) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  // ---- progress and estimates -----------------------------------------------------------------

  /** Stage shares for a new job, in measured milliseconds; undefined until runs are measured. */
  #plan(cold: boolean, ahead: number): PlannedStage[] | undefined {
    const run = this.estimates.run.value;
    if (run === undefined) return undefined;
    const perInstance = Math.max(1, this.#activeCount());
    const plan: PlannedStage[] = [
      { stage: 'queued', weight: Math.max(1, (ahead / perInstance) * run) },
    ];
    if (cold) {
      const load = this.estimates.load.value;
      const warmup = this.estimates.warmup.value;
      if (load === undefined || warmup === undefined) return undefined;
      plan.push({ stage: 'loading', weight: load }, { stage: 'warmup', weight: warmup });
    }
    plan.push({ stage: 'running', weight: run });
    return plan;
  }

  /** The measured averages, each absent until measured. */
  #measured(): ModelEstimates {
    const estimates: { loadMs?: number; warmupMs?: number; runMs?: number } = {};
    if (this.estimates.load.value !== undefined) estimates.loadMs = this.estimates.load.value;
    if (this.estimates.warmup.value !== undefined) estimates.warmupMs = this.estimates.warmup.value;
    if (this.estimates.run.value !== undefined) estimates.runMs = this.estimates.run.value;
    return estimates;
  }

  /** Estimated ms until a job at `position` is done; undefined until the needed parts are measured. */
  #eta(position: number, now: number): number | undefined {
    return queuedEtaMs(position, this.#capacity(now));
  }

  /** What the queue's ETAs and retry hints depend on besides a job's place in it. */
  #capacity(now: number): QueueCapacity {
    const starting = this.#instances.find((i) => i.state === 'loading' || i.state === 'warming');
    return {
      estimates: this.#measured(),
      instances: this.#activeCount(),
      ready: this.#readyCount(),
      ...(starting === undefined
        ? {}
        : {
            starting: {
              stage: starting.state === 'loading' ? 'loading' : 'warming',
              elapsedMs: now - starting.stateSince,
            },
          }),
    };
  }

  #reportWaiting(job: Job, position: number, force: boolean): void {
    if (!job.listening) return;
    const now = performance.now();
    if (!force && position === job.lastPosition) return;
    if (!force && position > 0 && now - job.lastPositionAt < this.#settings.progressIntervalMs)
      return;
    job.lastPosition = position;
    job.lastPositionAt = now;
    const starting = this.#instances.find((i) => i.state === 'loading' || i.state === 'warming');
    const waitingForLoad =
      this.#readyCount() === 0 && starting !== undefined && position < this.#activeCount();
    const eta = this.#eta(position, now);
    let update: StageUpdate;
    if (waitingForLoad) {
      const stage = starting.state === 'warming' ? 'warmup' : 'loading';
      const expected = stage === 'warmup' ? this.estimates.warmup.value : this.estimates.load.value;
      update = {
        stage,
        queuePosition: position,
        ...(eta === undefined ? {} : { etaMs: eta }),
        ...(expected === undefined ? {} : { stageExpectedMs: expected }),
      };
    } else {
      update = {
        stage: 'queued',
        queuePosition: position,
        ...(eta === undefined ? {} : { etaMs: eta }),
      };
    }
    job.progress(update);
  }

  #reportAllWaiting(): void {
    this.#queue.toArray().forEach((job, position) => {
      this.#reportWaiting(job, position, true);
    });
  }

  #updatePositions(): void {
    this.#queue.toArray().forEach((job, position) => {
      this.#reportWaiting(job, position, false);
    });
  }

  /** The `retryAfterMs` of an `E_BUSY` from this model's full queue (see busyRetryAfterMs). */
  #retryAfterMs(): number {
    return busyRetryAfterMs(this.#queue.size, this.#capacity(performance.now()));
  }
}

/** `request` asking for every output (no `outputs`). */
function withAllOutputs(request: JobRequest): JobRequest {
  const copy: { -readonly [K in keyof JobRequest]: JobRequest[K] } = { ...request };
  delete copy.outputs;
  return copy;
}

/** Bytes of a job's inputs (strings counted at 16 bytes each), for the inline and group limits. */
function inputBytes(inputs: TensorMap): number {
  let bytes = 0;
  for (const tensor of Object.values(inputs)) {
    bytes += tensor.dtype === 'string' ? tensor.data.length * 16 : tensor.data.byteLength;
  }
  return bytes;
}
