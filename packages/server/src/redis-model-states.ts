// Model lifecycle states when scaled out: models load on the workers, so each worker publishes its
// models' statuses (on every change, and as a heartbeat) on a Redis channel of its own, and each
// gateway merges what the live workers report into the one status its clients see in `welcome`,
// `model` messages and /v1/models: ready when any worker has the model ready, instances summed,
// measured load/warm-up/run times from the freshest report. A worker silent for three heartbeats
// counts as gone.

import type { Redis } from 'ioredis';
import {
  TandemError,
  decodeServerMessage,
  encodeMessage,
  type ModelState,
  type ModelStatus,
} from '@tandem/shared';
import type { DispatchedModel } from './job-dispatcher.js';
import type { ModelHost } from './model-host.js';

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
  readonly at: number;
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
    reports.set(worker, { status, at: now });
    const after = this.merged(status.name, status.version, now);
    if (after !== undefined && !sameStatus(before, after)) this.#changed(after);
  }

  /** The merged status of a model from live workers, or undefined when none reported it. */
  merged(name: string, version: string, now = Date.now()): ModelStatus | undefined {
    const reports = this.#reports.get(keyOf(name, version));
    if (reports === undefined) return undefined;
    let best: ModelStatus | undefined;
    let freshest: Report | undefined;
    let instances = 0;
    for (const [worker, report] of reports) {
      if (now - report.at > 3 * MODEL_HEARTBEAT_MS) {
        reports.delete(worker);
        continue;
      }
      instances += report.status.instances;
      if (best === undefined || RANK[report.status.state] > RANK[best.state]) best = report.status;
      if (freshest === undefined || report.at > freshest.at) freshest = report;
    }
    if (best === undefined) return undefined;
    const estimates = freshest?.status.estimates;
    return {
      name,
      version,
      state: best.state,
      instances,
      ...(best.reason === undefined ? {} : { reason: best.reason }),
      ...(estimates === undefined ? {} : { estimates }),
    };
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

function keyOf(name: string, version: string): string {
  return `${name}\u0000${version}`;
}

function sameStatus(a: ModelStatus | undefined, b: ModelStatus): boolean {
  return a !== undefined && a.state === b.state && a.instances === b.instances;
}
