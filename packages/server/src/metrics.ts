// Prometheus metrics (prom-client), one registry per server: queue depth and oldest job age per
// model (the autoscaling signals), lifecycle durations, cold starts, instances per state, and
// rejections by error code. A scale-out gateway loads no model: it exports its pools' gauges
// (redis-dispatcher.ts) instead of per-model ones that would read 0 whatever the load.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
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
    this.rejections = new Counter({
      name: 'tandem_rejections_total',
      help: 'Jobs refused or failed before running, by error code.',
      labelNames: ['model', 'code'],
      registers: [registry],
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
      registers: [registry],
    });
    if (options.localModels !== false) registerModelGauges(registry, manager);
  }
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
