// Every model the server knows: hosts created on demand from the repository, the memory budget
// that evicts the least recently used idle instance, keep-warm at start, and draining at shutdown.

import { TandemError, type ModelStatus } from '@tandem/shared';
import type { Job, JobRequest, ProgressListener } from './job.js';
import type { JobDispatcher } from './job-dispatcher.js';
import { ModelHost, type HostObserver, type HostSettings } from './model-host.js';
import type { ModelEntry, ModelRepository } from './model-repository.js';

/** Settings of the manager. */
export interface ManagerSettings extends HostSettings {
  /** Bytes of model files that may be loaded at once (instances × file size). @default Infinity */
  readonly memoryBudgetBytes: number;
}

/** Hooks for metrics, usage and logs (all optional but `stateChanged`). */
/**
 * Defaults of the settings both a server and a scale-out worker run their models with (the
 * `createServer` options of the same names document them).
 */
export const DEFAULT_MANAGER_SETTINGS = {
  idleTimeoutMs: 300_000,
  maxQueue: 256,
  scaleUpQueueDepth: 4,
  progressIntervalMs: 100,
  inlineMaxRunMs: 1,
  inlineMaxModelBytes: 8 * 1024 * 1024,
  inlineMaxInputBytes: 256 * 1024,
  memoryBudgetBytes: Infinity,
  session: {},
} as const satisfies ManagerSettings;

export type ManagerObserver = Omit<HostObserver, 'requestMemory'>;

/** Owns one ModelHost per model version; the in-process {@link JobDispatcher}. */
export class ModelManager implements JobDispatcher {
  readonly #repository: ModelRepository;
  readonly #settings: ManagerSettings;
  readonly #observer: ManagerObserver;
  readonly #hosts = new Map<string, ModelHost>();
  /** Hosts whose files were replaced or removed, finishing the jobs they accepted (see #retire). */
  readonly #retiring = new Set<ModelHost>();
  #draining = false;
  /** Set by start(): models found after it (copied in later) get their keep-warm at once. */
  #started = false;

  constructor(repository: ModelRepository, settings: ManagerSettings, observer: ManagerObserver) {
    this.#repository = repository;
    this.#settings = settings;
    this.#observer = observer;
  }

  /** Whether the manager is draining for shutdown. */
  get draining(): boolean {
    return this.#draining;
  }

  /** The host of a model version (its latest when `version` is absent); `E_MODEL_NOT_FOUND` else. */
  host(name: string, version?: string): ModelHost {
    return this.#hostFor(this.#repository.get(name, version));
  }

  /**
   * Hosts of every model in the repository. Hosts of models no longer in it (their folder was
   * deleted) are retired here: they finish what they accepted, then unload. Kept, a keep-warm
   * model stayed loaded for good (neither idling nor the memory budget unloads below minReady),
   * uncounted in the per-model metrics but still in the budget.
   */
  hosts(): ModelHost[] {
    const hosts = this.#repository.entries.map((entry) => this.#hostFor(entry));
    // One host per entry: more hosts than entries means some entry went away.
    if (this.#hosts.size > hosts.length) this.#retireRemoved(new Set(hosts));
    return hosts;
  }

  /** {@link host}, as the dispatcher interface names it. */
  model(name: string, version?: string): ModelHost {
    return this.host(name, version);
  }

  /** {@link hosts}, as the dispatcher interface names it. */
  models(): ModelHost[] {
    return this.hosts();
  }

  /** Starts loading a model; `ready` resolves with its status once an instance is ready. */
  warm(name: string, version?: string): { model: ModelHost; ready: Promise<ModelStatus> } {
    const host = this.host(name, version);
    // A host first asked for after drain() began was not drained with the others: it would load.
    if (this.#draining)
      return {
        model: host,
        ready: Promise.reject(
          new TandemError('E_SHUTTING_DOWN', 'the server is shutting down', {
            retryAfterMs: 1000,
          }),
        ),
      };
    return { model: host, ready: host.warm().then(() => host.status()) };
  }

  /** Unloads the idle instances of every version of `name`; `E_MODEL_NOT_FOUND` when unknown. */
  async unload(name: string): Promise<void> {
    this.host(name);
    const versions = this.hosts().filter((host) => host.entry.name === name);
    await Promise.all(versions.map((host) => host.unloadIdle()));
  }

  /** The wire view of every model. */
  statuses(): ModelStatus[] {
    return this.hosts().map((host) => host.status());
  }

  /** Submits a job to its model. Throws a TandemError when it is rejected up front. */
  submit(request: JobRequest, listener?: ProgressListener): { job: Job; host: ModelHost } {
    if (this.#draining) {
      throw new TandemError('E_SHUTTING_DOWN', 'the server is shutting down', {
        retryAfterMs: 1000,
      });
    }
    const host = this.host(request.model, request.version);
    return { job: host.submit(request, listener), host };
  }

  /** Loads models with `minReady` > 0 (keep-warm). */
  start(): void {
    for (const host of this.hosts()) {
      if (host.entry.config.minReady > 0) host.keepWarm();
    }
    this.#started = true;
  }

  /** Stops taking jobs and waits for every accepted job to settle. */
  async drain(): Promise<void> {
    this.#draining = true;
    await Promise.all(this.#allHosts().map((host) => host.drain()));
  }

  /**
   * Fails every job still queued or running with `E_SHUTTING_DOWN` (see ModelHost.abandon);
   * resolves once their listeners have heard it, so a connection closed next has sent it first.
   */
  async abandon(): Promise<void> {
    this.#draining = true;
    const jobs = this.#allHosts().flatMap((host) => host.abandon());
    await Promise.all(jobs.map((job) => job.outcome));
  }

  /** Releases every loaded model. */
  async close(): Promise<void> {
    this.#draining = true;
    await Promise.all(this.#allHosts().map((host) => host.close()));
  }

  /** Bytes currently counted against the budget. */
  get loadedBytes(): number {
    let total = 0;
    for (const host of this.#allHosts()) total += host.loadedBytes;
    return total;
  }

  /**
   * The host of an entry. A new one when the entry's files changed since its host was made (a
   * file replaced, model.json edited, a copy that was still being written): its metadata, its
   * failure if any and its sessions all came from the old files.
   */
  #hostFor(entry: ModelEntry): ModelHost {
    const key = `${entry.name}\u0000${entry.version}`;
    const current = this.#hosts.get(key);
    if (current?.entry.path === entry.path && current.entry.stamp === entry.stamp) return current;
    const host = new ModelHost(entry, this.#settings, {
      ...this.#observer,
      // A retired host's unloading is not the model's state: its successor speaks for it.
      stateChanged: (changed) => {
        if (!this.#retiring.has(changed)) this.#observer.stateChanged(changed);
      },
      requestMemory: (requester, bytes, first) => this.#requestMemory(requester, bytes, first),
    });
    this.#hosts.set(key, host);
    if (current !== undefined) {
      this.#retire(current, 'was replaced by new files while it loaded; warm it again');
      this.#observer.stateChanged(host);
    }
    if (this.#started && !this.#draining && entry.config.minReady > 0) host.keepWarm();
    return host;
  }

  /**
   * Lets a replaced (or removed) host finish the jobs it accepted, on the files it accepted them
   * for, then unload. New jobs go to its successor, if any; until it is gone its instances count
   * against the memory budget. `why` ends the error of `warm` calls still waiting for it.
   */
  #retire(host: ModelHost, why: string): void {
    this.#retiring.add(host);
    const retired = new TandemError('E_MODEL_LOAD_FAILED', `model ${host.label} ${why}`);
    void host
      .drain()
      .then(() => host.close(retired))
      .catch((error: unknown) => {
        this.#observer.log?.('warn', `could not unload the replaced ${host.label}`, {
          reason: error instanceof Error ? error.message : String(error),
        });
      })
      .finally(() => this.#retiring.delete(host));
  }

  /** Retires the hosts not in `current` (their models left the repository). */
  #retireRemoved(current: ReadonlySet<ModelHost>): void {
    for (const [key, host] of this.#hosts) {
      if (current.has(host)) continue;
      this.#hosts.delete(key);
      this.#observer.log?.('info', `model ${host.label} left the repository; unloading it`);
      this.#retire(host, 'was removed from the repository while it loaded');
    }
  }

  /** Current and retiring hosts. */
  #allHosts(): ModelHost[] {
    return [...this.#hosts.values(), ...this.#retiring];
  }

  /**
   * Makes room for `bytes` by evicting least recently used idle instances of other models. An
   * extra instance (not `first`) that would not fit even with every idle instance gone evicts
   * nothing: it is not loaded, and those models would pay a cold start for no gain.
   */
  #requestMemory(requester: ModelHost, bytes: number, first: boolean): boolean {
    const budget = this.#settings.memoryBudgetBytes;
    if (!first && this.loadedBytes + bytes > budget) {
      let reclaimable = 0;
      for (const host of this.#hosts.values())
        if (host !== requester) reclaimable += host.evictableBytes;
      if (this.loadedBytes - reclaimable + bytes > budget) return false;
    }
    while (this.loadedBytes + bytes > budget) {
      let victim: ModelHost | undefined;
      let oldest = Infinity;
      for (const host of this.#hosts.values()) {
        if (host === requester) continue;
        const since = host.evictableSince();
        if (since !== undefined && since < oldest) {
          oldest = since;
          victim = host;
        }
      }
      if (victim === undefined || !victim.evict()) {
        if (first) {
          this.#observer.log?.('warn', `loading ${requester.label} beyond the memory budget`, {
            budgetBytes: budget,
            loadedBytes: this.loadedBytes,
            bytes,
          });
        }
        return first;
      }
    }
    return true;
  }
}
