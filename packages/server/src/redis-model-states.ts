// Model lifecycle states when scaled out: models load on the workers, so each worker publishes its
// models' statuses (on every change, and as a heartbeat) on a Redis channel of its own, and each
// gateway merges what the live workers report into the one status its clients see in `welcome`,
// `model` messages and /v1/models: ready when any worker has the model ready, instances summed,
// each measured load/warm-up/run time from the freshest report that has it. The same reports tell
// the gateway how fast a queued job will be served (its ETA, see queue-eta.ts). A worker silent for
// three heartbeats counts as gone.

import type { Redis } from 'ioredis';
import {
  TandemError,
  decodeServerMessage,
  encodeMessage,
  type ModelEstimates,
  type ModelState,
  type ModelStatus,
} from '@tandem/shared';
import type { DispatchedModel } from './job-dispatcher.js';
import type { ModelHost } from './model-host.js';
import type { QueueCapacity } from './queue-eta.js';

/** How often a worker republishes every model's status, in ms. */
export const MODEL_HEARTBEAT_MS = 5000;

/** Channel on which one worker publishes its models' statuses. */
export function modelChannel(prefix: string, worker: string): string {
  return `${prefix}-models:${worker}`;
}

/** One status as a binary `model` message (parsed with the protocol's own decoder). */
export function encodeModelStatus(status: ModelStatus): Buffer {
  const bytes = encodeMessage({ type: 'model', model: status });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Which state wins when workers disagree: the one closest to serving. */
const RANK: Record<ModelState, number> = {
  ready: 4,
  warming: 3,
  loading: 2,
  unloaded: 1,
  failed: 0,
};

interface Report {
  readonly status: ModelStatus;
  /** When it arrived (epoch ms). */
  readonly at: number;
  /** Since when this worker has reported the model in its current state (epoch ms). */
  readonly since: number;
}

/** What the gateway's workers report, merged per model version. */
export class ModelStates {
  /** Model key → worker → its last report. */
  readonly #reports = new Map<string, Map<string, Report>>();
  readonly #changed: (status: ModelStatus) => void;

  /** @param changed called when a model's merged status changes */
  constructor(changed: (status: ModelStatus) => void) {
    this.#changed = changed;
  }

  /** Subscribes `subscriber` (a connection of its own) to every worker's channel. */
  async listen(subscriber: Redis, prefix: string): Promise<void> {
    const pattern = `${prefix}-models:*`;
    subscriber.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => {
      const worker = channel.toString('utf8').slice(pattern.length - 1);
      try {
        const decoded = decodeServerMessage(message);
        if (decoded.type !== 'model')
          throw new TandemError('E_PROTOCOL', `a ${decoded.type} message on a models channel`);
        this.report(worker, decoded.model);
      } catch {
        // Not a worker of ours: ignore it rather than let it disturb the states.
      }
    });
    await subscriber.psubscribe(pattern);
  }

  /** Records a worker's report of one model. */
  report(worker: string, status: ModelStatus, now = Date.now()): void {
    const key = keyOf(status.name, status.version);
    const before = this.merged(status.name, status.version, now);
    let reports = this.#reports.get(key);
    if (reports === undefined) {
      reports = new Map<string, Report>();
      this.#reports.set(key, reports);
    }
    // A worker publishes each change of state at once, so the first report of a state is about
    // when it began (a gateway that starts later counts from its first report: less elapsed).
    const previous = reports.get(worker);
    const since = previous?.status.state === status.state ? previous.since : now;
    reports.set(worker, { status, at: now, since });
    const after = this.merged(status.name, status.version, now);
    if (after !== undefined && !sameStatus(before, after)) this.#changed(after);
  }

  /** The merged status of a model from live workers, or undefined when none reported it. */
  merged(name: string, version: string, now = Date.now()): ModelStatus | undefined {
    const live = this.#live(name, version, now);
    let best: ModelStatus | undefined;
    let instances = 0;
    for (const { status } of live) {
      instances += status.instances;
      if (best === undefined || RANK[status.state] > RANK[best.state]) best = status;
    }
    if (best === undefined) return undefined;
    const estimates = freshestEstimates(live);
    return {
      name,
      version,
      state: best.state,
      instances,
      ...(best.reason === undefined ? {} : { reason: best.reason }),
      ...(estimates === undefined ? {} : { estimates }),
    };
  }

  /**
   * How fast the live workers serve a model's queued jobs: its merged estimates, its ready
   * instances summed, and, while none is ready, the worker furthest along in starting one.
   * Undefined when no live worker reported the model (a pool scaled to zero: starting a worker
   * takes a time nobody measured).
   */
  capacity(name: string, version: string, now = Date.now()): QueueCapacity | undefined {
    const merged = this.merged(name, version, now);
    if (merged === undefined) return undefined;
    let starting: Report | undefined;
    for (const report of this.#live(name, version, now)) {
      const { state } = report.status;
      if (state !== 'loading' && state !== 'warming') continue;
      if (starting === undefined || RANK[state] > RANK[starting.status.state]) starting = report;
    }
    return {
      estimates: merged.estimates ?? {},
      instances: merged.instances,
      ready: merged.instances,
      ...(starting === undefined
        ? {}
        : {
            starting: {
              stage: starting.status.state === 'loading' ? 'loading' : 'warming',
              elapsedMs: Math.max(0, now - starting.since),
            },
          }),
    };
  }

  /** The reports of live workers about a model, oldest first; drops those of silent workers. */
  #live(name: string, version: string, now: number): Report[] {
    const reports = this.#reports.get(keyOf(name, version));
    if (reports === undefined) return [];
    for (const [worker, report] of reports) {
      if (now - report.at > 3 * MODEL_HEARTBEAT_MS) reports.delete(worker);
    }
    return [...reports.values()].sort((a, b) => a.at - b.at);
  }

  /** The view of a model that the routes use: the catalog's, with the workers' state. */
  view(host: ModelHost): DispatchedModel {
    const merged = (): ModelStatus | undefined => this.merged(host.entry.name, host.entry.version);
    return {
      entry: host.entry,
      signature: host.signature,
      externalData: host.externalData,
      label: host.label,
      failure: host.failure,
      get state() {
        return this.status().state;
      },
      status() {
        // A model the gateway cannot read is failed whatever the workers say.
        if (host.failure !== undefined) return host.status();
        return merged() ?? host.status();
      },
    };
  }
}

/** Publishes a worker's model statuses: on every change and every heartbeat. */
export function publishModelStates(
  redis: Redis,
  channel: string,
  statuses: () => ModelStatus[],
): { changed(status: ModelStatus): void; stop(): void } {
  const publish = (status: ModelStatus): void => {
    redis.publish(channel, encodeModelStatus(status)).catch(() => undefined);
  };
  const timer = setInterval(() => statuses().forEach(publish), MODEL_HEARTBEAT_MS);
  timer.unref();
  return {
    changed: publish,
    stop: () => clearInterval(timer),
  };
}

/**
 * Each measured average from the freshest report that has it: a worker that has not run the model
 * yet reports none, and must not hide what another worker measured.
 */
function freshestEstimates(live: readonly Report[]): ModelEstimates | undefined {
  let found = false;
  const estimates: { loadMs?: number; warmupMs?: number; runMs?: number } = {};
  for (const { status } of live) {
    if (status.estimates === undefined) continue;
    found = true;
    const { loadMs, warmupMs, runMs } = status.estimates;
    if (loadMs !== undefined) estimates.loadMs = loadMs;
    if (warmupMs !== undefined) estimates.warmupMs = warmupMs;
    if (runMs !== undefined) estimates.runMs = runMs;
  }
  return found ? estimates : undefined;
}

function keyOf(name: string, version: string): string {
  return `${name}\u0000${version}`;
}

function sameStatus(a: ModelStatus | undefined, b: ModelStatus): boolean {
  return a !== undefined && a.state === b.state && a.instances === b.instances;
}
