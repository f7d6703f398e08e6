// Prometheus metrics (prom-client), one registry per server: queue depth and oldest job age per
// model (the autoscaling signals), lifecycle durations, cold starts, instances per state, and
// rejections by error code (RejectionCounter: every front door's refusals, each counted once). A
// scale-out gateway loads no model: it exports its pools' gauges (redis-dispatcher.ts) instead of
// per-model ones that would read 0 whatever the load.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TandemError, type ErrorCode } from '@tandem/shared';
import type { Job, JobRequest, ProgressListener } from './job.js';
import type { JobDispatcher } from './job-dispatcher.js';
import type { ModelHost } from './model-host.js';
import type { ModelManager } from './model-manager.js';

/** Durations from tens of milliseconds (a tiny run) to minutes (a large cold start), in seconds. */
const DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
];

/** Options of {@link ServerMetrics}. */
export interface ServerMetricsOptions {
  /**
   * Export the gauges of models loaded in this process (queue depth, oldest wait, instances per
   * state, failed, loaded bytes). Off on a scale-out gateway, where models load on the workers.
   * @default true
   */
  readonly localModels?: boolean;
  /**
   * Export what a front door counts: `tandem_rejections_total` and
   * `tandem_websocket_connections`. Off on a scale-out worker, which takes jobs from Redis (its
   * gateways count the refusals). @default true
   */
  readonly frontDoor?: boolean;
}

/** The server's metrics. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly loadSeconds: Histogram<'model' | 'version'>;
  readonly warmupSeconds: Histogram<'model' | 'version'>;
  readonly runSeconds: Histogram<'model' | 'version'>;
  readonly coldStarts: Counter<'model' | 'version'>;
  readonly rejections: Counter<'model' | 'code'>;
  readonly jobs: Counter<'model' | 'version'>;
  readonly connections: Gauge;

  constructor(manager: ModelManager, options: ServerMetricsOptions = {}) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry });
    this.loadSeconds = new Histogram({
      name: 'tandem_model_load_seconds',
      help: 'Time to create a model session (cold start, before warm-up).',
      labelNames: ['model', 'version'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    });
    this.warmupSeconds = new Histogram({
      name: 'tandem_model_warmup_seconds',
      help: 'Time of the warm-up run after a load.',
      labelNames: ['model', 'version'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    });
    this.runSeconds = new Histogram({
      name: 'tandem_run_seconds',
      help: 'Time of one session run (one job or one dynamic batch).',
      labelNames: ['model', 'version'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    });
    this.coldStarts = new Counter({
      name: 'tandem_cold_starts_total',
      help: 'Jobs that arrived while no instance of their model was ready.',
      labelNames: ['model', 'version'],
      registers: [registry],
    });
    const frontDoor = options.frontDoor === false ? [] : [registry];
    this.rejections = new Counter({
      name: 'tandem_rejections_total',
      help: 'Requests refused (a missed deadline included), by error code; model "" when none is known.',
      labelNames: ['model', 'code'],
      registers: frontDoor,
    });
    this.jobs = new Counter({
      name: 'tandem_jobs_total',
      help: 'Jobs run to completion.',
      labelNames: ['model', 'version'],
      registers: [registry],
    });
    this.connections = new Gauge({
      name: 'tandem_websocket_connections',
      help: 'Open WebSocket connections.',
      registers: frontDoor,
    });
    if (options.localModels !== false) registerModelGauges(registry, manager);
  }

  /** A model instance became ready: its load and warm-up times (a host's `loaded` event). */
  modelLoaded(host: ModelHost, loadMs: number, warmupMs: number): void {
    const labels = hostLabels(host);
    this.loadSeconds.observe(labels, loadMs / 1000);
    this.warmupSeconds.observe(labels, warmupMs / 1000);
  }

  /** One run of `jobCount` jobs (a dynamic batch, or one job) took `runMs` (a host's `ran`). */
  modelRan(host: ModelHost, runMs: number, jobCount: number): void {
    const labels = hostLabels(host);
    this.runSeconds.observe(labels, runMs / 1000);
    this.jobs.inc(labels, jobCount);
  }

  /** A job arrived while no instance of its model was ready (a host's `coldStart`). */
  coldStart(host: ModelHost): void {
    this.coldStarts.inc(hostLabels(host));
  }
}

/** A model version's metric labels, made once per host: runs are observed once per job. */
const HOST_LABELS = new WeakMap<ModelHost, { model: string; version: string }>();

function hostLabels(host: ModelHost): { model: string; version: string } {
  let labels = HOST_LABELS.get(host);
  if (labels === undefined) {
    labels = { model: host.entry.name, version: host.entry.version };
    HOST_LABELS.set(host, labels);
  }
  return labels;
}

/** Gauges read from the models this process loads, at each scrape. */
function registerModelGauges(registry: Registry, manager: ModelManager): void {
  new Gauge({
    name: 'tandem_queue_depth',
    help: 'Jobs waiting in a model queue.',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const host of manager.hosts()) {
        this.set({ model: host.entry.name, version: host.entry.version }, host.queueDepth);
      }
    },
  });
  new Gauge({
    name: 'tandem_queue_oldest_wait_seconds',
    help: 'Age of the oldest job waiting in a model queue (0 when empty).',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      const now = performance.now();
      for (const host of manager.hosts()) {
        this.set(
          { model: host.entry.name, version: host.entry.version },
          host.oldestWaitMs(now) / 1000,
        );
      }
    },
  });
  new Gauge({
    name: 'tandem_model_instances',
    help: 'Model instances per lifecycle state (loading, warming, ready, unloading).',
    labelNames: ['model', 'version', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const host of manager.hosts()) {
        for (const [state, count] of Object.entries(host.instanceCounts())) {
          this.set({ model: host.entry.name, version: host.entry.version, state }, count);
        }
      }
    },
  });
  new Gauge({
    name: 'tandem_model_failed',
    help: '1 when a model failed to load (see the reason in /v1/models).',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const host of manager.hosts()) {
        this.set(
          { model: host.entry.name, version: host.entry.version },
          host.state === 'failed' ? 1 : 0,
        );
      }
    },
  });
  new Gauge({
    name: 'tandem_memory_loaded_bytes',
    help: 'Bytes of model files loaded, as counted by the memory budget.',
    registers: [registry],
    collect() {
      this.set(manager.loadedBytes);
    },
  });
}

/**
 * The `model` label of a refusal that names no model the server knows: a refused upgrade, a
 * malformed frame, an unknown model. Label values cannot be absent on a labelled metric, and a
 * name a client made up must not become one: every new name would start a new series.
 */
export const NO_MODEL_LABEL = '';

/**
 * Counts refused requests in `tandem_rejections_total{model,code}`, each once. Model hosts count
 * what they refuse (a full queue, bad inputs, a missed deadline) through their observer; scaled
 * out, the Redis dispatcher reports through {@link RejectionCounter.count} what the pool refused
 * after submit returned (a full pool, a missed deadline, a worker's refusal), for the jobs this
 * gateway submitted. The front doors (WebSocket gateway, HTTP routes) count everything else:
 * refused upgrades, keys, rate limits, unknown models, malformed frames, oversize payloads, slow
 * readers. A refusal is known by the error object it is answered with, so one that passes several
 * layers is counted once.
 */
export class RejectionCounter {
  readonly #counter: Counter<'model' | 'code'>;
  readonly #knows: (model: string) => boolean;
  /** Errors counted already, or failures of accepted jobs (never counted). */
  readonly #accounted = new WeakSet<TandemError>();
  /** Refusals model hosts have counted: tells a submit whether its refusal is counted already. */
  #byHosts = 0;

  /** `knows`: whether a model name is the server's (only such names become label values). */
  constructor(counter: Counter<'model' | 'code'>, knows: (model: string) => boolean) {
    this.#counter = counter;
    this.#knows = knows;
  }

  /** A refusal a model host made and reported (ModelHost's `rejected` observer). */
  countByHost(model: string, code: string): void {
    this.#byHosts += 1;
    this.#counter.inc({ model, code });
  }

  /**
   * Counts one refusal. `model` is the name the request asked for, if any: it becomes the label
   * only when the server knows it (never for `E_MODEL_NOT_FOUND`), else {@link NO_MODEL_LABEL}.
   */
  count(code: ErrorCode, model?: string): void {
    const known =
      model !== undefined && code !== 'E_MODEL_NOT_FOUND' && this.#knows(model)
        ? model
        : NO_MODEL_LABEL;
    this.#counter.inc({ model: known, code });
  }

  /** Counts the refusal answered with `error`, unless that error was counted (or exempted). */
  countError(error: TandemError, model?: string): void {
    if (this.#accounted.has(error)) return;
    this.#accounted.add(error);
    this.count(error.code, model);
  }

  /**
   * Marks the failure of a job that was accepted: not a refusal, though a route may answer it
   * through the same error path (a missed deadline the host counted, a runtime error).
   */
  exempt(error: TandemError): void {
    this.#accounted.add(error);
  }

  /**
   * Submits a job and counts the refusal `dispatcher.submit` throws (rethrown as a TandemError),
   * unless a model host counted it already during the call: hosts count their refusals before
   * they throw, so a change of their count during this synchronous call is this refusal's. (The
   * dispatcher itself refuses an unknown model or a draining server; over Redis, everything.)
   */
  submit(dispatcher: JobDispatcher, request: JobRequest, listener?: ProgressListener): Job {
    const before = this.#byHosts;
    try {
      return dispatcher.submit(request, listener).job;
    } catch (error) {
      const coded = TandemError.from(error);
      if (this.#byHosts === before) this.countError(coded, request.model);
      else this.#accounted.add(coded);
      throw coded;
    }
  }
}
