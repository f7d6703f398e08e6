// The gateway side of scale-out (`tandem serve --redis URL`): the JobDispatcher that puts jobs on
// one BullMQ queue per worker pool instead of running them. Inputs are checked here against the
// model's signature (the gateway reads the same model repository as the workers, without loading
// anything), so bad input is refused before it reaches Redis. Each accepted job gets a local Job
// that the WebSocket gateway and the OIP routes follow exactly as in-process: BullMQ job events
// (QueueEvents) drive its progress and settle it once, queue positions come from BullMQ's wait list
// and ordered set of prioritised jobs, with ETAs from what the workers report of the model (as a
// single server's, see queue-eta.ts), and cancel removes a waiting job or tells the worker that
// holds it.
// An owner/id index in Redis lets any gateway — this one after a restart, or another — resume it.
// Gateways count refusals (a worker's /metrics has none): a job refused after submit returned (a
// full pool, a missed deadline, refused on a worker) is reported to the gateway that submitted it,
// and only to that one, so a refusal is counted once however many gateways follow the job.

import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { Gauge, type Registry } from 'prom-client';
import {
  FINAL_STAGES,
  TandemError,
  parseProgressEvent,
  type ErrorCode,
  type ModelStatus,
  type ProgressEvent,
  type StageUpdate,
} from '@tandem/shared';
import { checkInputs } from './input-check.js';
import { Job, type JobRequest, type ProgressListener } from './job.js';
import type { DispatchedModel, JobDispatcher } from './job-dispatcher.js';
import { setLongTimeout, type LongTimeout } from './long-timeout.js';
import type { ModelManager } from './model-manager.js';
import { queuedEtaMs } from './queue-eta.js';
import { ModelStates } from './redis-model-states.js';
import {
  decodeOutcome,
  encodeJobInput,
  parseInferJobData,
  type InferJobData,
  type WarmJobData,
} from './redis-job-codec.js';
import {
  INFER_JOB,
  INPUT_TTL_MS,
  RedisKeys,
  WARM_JOB,
  bullPriority,
  checkPoolName,
  connectRedis,
  queueUnavailable,
  redisReady,
} from './redis-queues.js';
import { RedisKeyLimits } from './redis-key-limits.js';
import { RedisUsage } from './redis-usage.js';

/** Options of the {@link RedisDispatcher}. */
export interface RedisDispatcherOptions {
  /** Redis URL, e.g. redis://redis:6379. */
  readonly url: string;
  /** Prefix of every Redis key (the workers must use the same). */
  readonly prefix: string;
  /** The model repository's view: signatures and pools. Nothing is loaded through it. */
  readonly catalog: ModelManager;
  /** How long outcomes are kept for `resume`, in ms (passed on to the workers). */
  readonly resultTtlMs: number;
  /** Least time between two queue-position updates of a waiting job, in ms. */
  readonly progressIntervalMs: number;
  /** Times a job may fail by throwing on a worker before it fails for good. */
  readonly maxAttempts: number;
  /** Jobs that may wait in a model's pool (model.json `maxQueue` overrides); past it, E_BUSY. */
  readonly maxQueue: number;
  /**
   * Called once for each job submitted through this gateway that is refused after `submit`
   * returned, rather than run: its pool was full (`E_BUSY`), Redis could not take it
   * (`E_QUEUE_UNAVAILABLE`), its deadline passed, or a worker refused it (bad inputs, a model that
   * failed to load, …). Not for a job that ran and failed, was cancelled or was lost. What `submit`
   * throws is the caller's to count.
   */
  readonly rejected?: (model: string, code: ErrorCode) => void;
  /** Called when a model's state on the workers changes (for `model` messages). */
  readonly stateChanged?: (status: ModelStatus) => void;
  /**
   * How long start() waits for Redis before serving anyway (jobs get E_QUEUE_UNAVAILABLE), in ms.
   * @default 5000
   */
  readonly connectTimeoutMs?: number;
  /**
   * How long a key's concurrency slot outlives a gateway that stopped renewing it (one that died
   * with jobs in flight), in ms. @default 30000
   */
  readonly keyLeaseMs?: number;
  readonly log?: (level: 'info' | 'warn', message: string, details?: object) => void;
}

/** A job this gateway follows: its local Job and where it sits in Redis. */
interface Followed {
  readonly job: Job;
  readonly jobId: string;
  readonly pool: string;
  /** The model version it runs, for its ETA; undefined for a resumed job whose data is unreadable. */
  readonly model: { readonly name: string; readonly version: string } | undefined;
  /** Epoch ms when it was queued (the oldest-job metric). */
  readonly queuedAt: number;
  /** Still waiting in the queue (not yet taken by a worker), as far as this gateway knows. */
  waiting: boolean;
  /** Last queue position sent; -1 before the first, and once the job is put back in the queue. */
  position: number;
  /** Whether the last position sent had an ETA: one that becomes known is sent at once. */
  etaSent: boolean;
  /** Whether the BullMQ job exists (added, or found by `adopt`). */
  added: boolean;
  deadlineTimer: LongTimeout | undefined;
}

/** A pool's queue and the event reader that follows it. */
interface PoolLink {
  readonly queue: Queue;
  /** Resolves once the event reader is attached (so no event of a job added next is missed). */
  readonly ready: Promise<QueueEvents>;
}

/**
 * How often jobs are checked against Redis directly, in ms: the safety net for an event that never
 * arrived (a stream trimmed while this gateway lagged, a Redis restarted without persistence).
 */
const RECONCILE_INTERVAL_MS = 5000;

/** Attempts to read an outcome that a blip of Redis made unreadable, before giving up. */
const OUTCOME_READS = 10;

/** Attempts to remove what a job that was not queued left in Redis, before giving up. */
const FORGET_ATTEMPTS = 4;

/**
 * A waiting-set entry older than this whose job BullMQ does not hold is left by a gateway that
 * died between storing the job and adding it to its queue (an add takes milliseconds), or whose
 * store's reply was lost: it is removed when the pool's signals are read and every
 * RECONCILE_INTERVAL_MS, or it would hold the oldest-job age (the autoscaling signal) up, and
 * count against maxQueue, for good.
 */
const STALE_WAITING_ENTRY_MS = 60_000;

/** At most this many old waiting entries are looked at per pool per sweep (the rest next time). */
const STALE_ENTRIES_PER_SWEEP = 1000;

/**
 * Deletes what a job that never ran left in Redis: its input, its cancel mark, its waiting-set
 * entry, and its resume index entry if that still names this job (the client may have sent the
 * same id again since). Unless BullMQ holds the job: an add whose reply was lost with the
 * connection may have run all the same, and then the job is queued and needs all of it. One
 * script, so the check and the deletes are one step.
 * KEYS: input, cancel mark, index entry, waiting set, BullMQ job hash. ARGV: job id, index value.
 * Returns 1 when it deleted, 0 when the job is queued.
 */
const FORGET_SCRIPT = `
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
`;

/**
 * Puts a job put back after its worker died into the waiting set again, but only while BullMQ
 * still has it waiting: read from the event stream, the `stalled` event may come after another
 * worker took the job (and removed its entry), and an entry added then would count a running or
 * finished job as waiting (queue depth, oldest-job age) until the sweep found it.
 * KEYS: waiting set, BullMQ wait list, BullMQ prioritised set. ARGV: score, job id.
 */
const REQUEUE_SCRIPT = `
if redis.call('LPOS', KEYS[2], ARGV[2]) or redis.call('ZSCORE', KEYS[3], ARGV[2]) then
  return redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
end
return 0
`;

/** Runs jobs on BullMQ workers through Redis. */
export class RedisDispatcher implements JobDispatcher {
  readonly #options: RedisDispatcherOptions;
  readonly #keys: RedisKeys;
  /** Commands; fails fast while Redis is away (see redisOptions). */
  readonly #redis: Redis;
  /** The connection QueueEvents duplicate for their blocking reads. */
  readonly #eventsConnection: Redis;
  /** Subscribed to the workers' model statuses. */
  readonly #subscriber: Redis;
  readonly #states: ModelStates;
  /** The cluster's usage, as the workers record it: what /v1/usage serves when scaled out. */
  readonly usage: RedisUsage;
  /** Per-key rate and concurrency limits, counted in Redis for every gateway at once. */
  readonly keyLimits: RedisKeyLimits;
  readonly #pools = new Map<string, PoolLink>();
  readonly #following = new Map<string, Followed>();
  /** Errors that refuse a job rather than end one that ran (see `rejected`). */
  readonly #refusals = new WeakSet<TandemError>();
  #draining = false;
  #closed = false;
  #positionTimer: ReturnType<typeof setInterval> | undefined;
  #reconcileTimer: ReturnType<typeof setInterval> | undefined;
  #reconciling = false;
  #positionsBusy = false;

  constructor(options: RedisDispatcherOptions) {
    this.#options = options;
    this.#keys = new RedisKeys(options.prefix);
    const onError = (error: Error): void => this.#log('warn', `redis: ${error.message}`);
    this.#redis = connectRedis(options.url, 'fail-fast', onError);
    this.#eventsConnection = connectRedis(options.url, 'wait', onError);
    this.#subscriber = connectRedis(options.url, 'wait', onError);
    this.#states = new ModelStates((status) => options.stateChanged?.(status));
    this.usage = new RedisUsage(this.#redis, this.#keys);
    this.keyLimits = new RedisKeyLimits(this.#redis, options.prefix, options.keyLeaseMs);
  }

  get draining(): boolean {
    return this.#draining;
  }

  model(name: string, version?: string): DispatchedModel {
    return this.#states.view(this.#options.catalog.host(name, version));
  }

  models(): DispatchedModel[] {
    return this.#options.catalog.hosts().map((host) => this.#states.view(host));
  }

  statuses(): ModelStatus[] {
    return this.models().map((model) => model.status());
  }

  /** The pools of every model in the repository. */
  pools(): string[] {
    const pools = new Set<string>();
    for (const host of this.#options.catalog.hosts()) {
      try {
        pools.add(checkPoolName(host.entry.config.pool));
      } catch {
        // Such a model is refused at submit; it has no queue to report.
      }
    }
    return [...pools].sort();
  }

  submit(request: JobRequest, listener?: ProgressListener): { job: Job } {
    if (this.#draining || this.#closed) {
      throw new TandemError('E_SHUTTING_DOWN', 'the server is shutting down', {
        retryAfterMs: 1000,
      });
    }
    const host = this.#options.catalog.host(request.model, request.version);
    if (host.failure !== undefined || host.signature === undefined) {
      throw new TandemError(
        'E_MODEL_LOAD_FAILED',
        `model ${host.label} failed to load: ${host.failure ?? 'no signature'}`,
      );
    }
    checkInputs(host.signature, request.inputs, request.outputs);
    const pool = this.#poolOf(host.entry.config.pool, host.label);
    const job = new Job(request, undefined, performance.now());
    job.listen(listener);
    const followed = this.#follow(job, pool, {
      model: { name: host.entry.name, version: host.entry.version },
    });
    // Only here, not in `adopt`: another gateway that resumes the job does not count it again.
    // Registered before the caller's own reactions, so the count is in before the client hears.
    void job.outcome.then((outcome) => {
      if (!outcome.ok && this.#refusals.has(outcome.error))
        this.#options.rejected?.(host.entry.name, outcome.error.code);
    });
    if (request.deadlineMs !== undefined)
      this.#armDeadline(followed, request.deadlineMs, `of ${request.deadlineMs} ms`);
    const data: InferJobData = {
      owner: request.owner,
      id: request.id,
      model: host.entry.name,
      version: host.entry.version,
      resultTtlMs: this.#options.resultTtlMs,
      ...(request.deadlineMs === undefined ? {} : { deadlineAt: Date.now() + request.deadlineMs }),
    };
    const maxQueue = host.entry.config.maxQueue ?? this.#options.maxQueue;
    this.#enqueue(followed, data, encodeJobInput(request, host.entry.version), maxQueue).catch(
      (error: unknown) => {
        // Only a job that is not in the queue gets here (see #enqueue): refused, as if submit had
        // thrown.
        job.fail(this.#refusal(queueUnavailable(error)));
      },
    );
    return { job };
  }

  warm(name: string, version?: string): { model: DispatchedModel; ready: Promise<ModelStatus> } {
    const host = this.#options.catalog.host(name, version);
    const model = this.#states.view(host);
    const ready = (async (): Promise<ModelStatus> => {
      if (this.#draining || this.#closed)
        throw new TandemError('E_SHUTTING_DOWN', 'the server is shutting down', {
          retryAfterMs: 1000,
        });
      if (host.failure !== undefined)
        throw new TandemError('E_MODEL_LOAD_FAILED', `model ${host.label} failed: ${host.failure}`);
      // A warm call is a job of its own at the highest priority: one worker of the pool loads the
      // model (and an autoscaler watching the queue wakes one up when there is none).
      const pool = this.#poolOf(host.entry.config.pool, host.label);
      const job = new Job(
        { id: `warm:${randomUUID()}`, owner: '', model: name, inputs: {}, priority: 10 },
        undefined,
        performance.now(),
      );
      const followed = this.#follow(job, pool);
      const link = this.#link(pool);
      try {
        await link.ready;
        const data: WarmJobData = { model: host.entry.name, version: host.entry.version };
        await link.queue.add(WARM_JOB, data, {
          jobId: followed.jobId,
          priority: bullPriority(10),
          ...this.#retention(),
        });
        followed.added = true;
      } catch (error) {
        job.fail(queueUnavailable(error));
      }
      const outcome = await job.outcome;
      if (!outcome.ok) throw outcome.error;
      const status = this.#warmStatuses.get(followed.jobId);
      this.#warmStatuses.delete(followed.jobId);
      return status ?? model.status();
    })();
    return { model, ready };
  }

  /** Statuses that warm jobs came back with, until their caller takes them. */
  readonly #warmStatuses = new Map<string, ModelStatus>();

  async adopt(owner: string, id: string): Promise<Job | undefined> {
    const reference = await this.#redis.get(this.#keys.index(owner, id)).catch((error: unknown) => {
      throw queueUnavailable(error);
    });
    if (reference === null) return undefined;
    const slash = reference.indexOf('/');
    if (slash <= 0) return undefined;
    const pool = reference.slice(0, slash);
    const jobId = reference.slice(slash + 1);
    const known = this.#following.get(jobId);
    if (known !== undefined) return known.job;
    const link = this.#link(checkPoolName(pool));
    await link.ready;
    // A coded, retryable answer when Redis fails here: the client may resume again. (Uncoded, it
    // was E_INTERNAL, on which a client falls back and runs the job a second time.)
    const bullJob = await link.queue.getJob(jobId).catch((error: unknown) => {
      throw queueUnavailable(error);
    });
    let data: InferJobData | undefined;
    try {
      data = bullJob === undefined ? undefined : parseInferJobData(bullJob.data);
    } catch {
      data = undefined;
    }
    const job = new Job(
      {
        id,
        owner,
        model: data?.model ?? '',
        ...(data === undefined ? {} : { version: data.version }),
        inputs: {},
        // Back from BullMQ's scale (1 first) to Tandem's (10 first).
        priority: bullJob === undefined ? 0 : bullPriority(0) - bullJob.priority,
      },
      undefined,
      performance.now(),
    );
    // Follow before asking for the state: an event that comes in between is not missed.
    const followed = this.#follow(job, pool, {
      jobId,
      model: data === undefined ? undefined : { name: data.model, version: data.version },
      queuedAt: bullJob?.timestamp ?? Date.now(),
      waiting: false,
      added: bullJob !== undefined,
    });
    // The deadline holds here too: the gateway that armed it may be gone with its timer, and a
    // job with no worker to take it (a pool scaled to zero) would otherwise keep its client
    // waiting past it, and its place in the queue, until some worker came to refuse it.
    const deadline = (): void => {
      if (data?.deadlineAt !== undefined)
        this.#armDeadline(followed, data.deadlineAt - Date.now(), 'set when it was submitted');
    };
    let state: string;
    try {
      state = bullJob === undefined ? 'unknown' : await bullJob.getState();
    } catch (error) {
      // Followed already: the reconcile pass reads its outcome once Redis answers again.
      this.#log('warn', `could not read the state of resumed job ${id}`, {
        reason: error instanceof Error ? error.message : String(error),
      });
      deadline();
      return job;
    }
    if (state === 'completed' || state === 'unknown') void this.#settleFromStore(followed);
    else if (state === 'failed') void this.#settleFailed(followed, bullJob?.failedReason ?? '');
    else {
      followed.waiting = state !== 'active';
      deadline();
    }
    return job;
  }

  handedOver(job: Job): void {
    this.#redis.del(this.#keys.index(job.request.owner, job.request.id)).catch((error: unknown) =>
      this.#log('warn', `could not forget resumed job ${job.request.id}`, {
        reason: error instanceof Error ? error.message : String(error),
      }),
    );
  }

  async start(): Promise<void> {
    this.#reconcileTimer = setInterval(() => {
      void this.#reconcile();
      // Stale waiting entries also count against maxQueue: removed on this clock too, not only
      // when something scrapes /metrics.
      void this.#pruneWaiting();
    }, RECONCILE_INTERVAL_MS);
    this.#reconcileTimer.unref();
    const listening = this.#states
      .listen(this.#subscriber, this.#keys.prefix)
      .catch((error: unknown) =>
        this.#log('warn', "could not follow the workers' model states", {
          reason: error instanceof Error ? error.message : String(error),
        }),
      );
    const connected = await redisReady(this.#redis, this.#options.connectTimeoutMs ?? 5000);
    // Once Redis answers, the subscription follows at once: wait for it, so no state change
    // of a worker is missed from the first job on.
    if (connected) await listening;
    else {
      this.#log('warn', 'redis is not reachable yet; jobs get E_QUEUE_UNAVAILABLE until it is');
      return;
    }
    await Promise.allSettled(this.pools().map((pool) => this.#link(pool).ready));
  }

  async drain(): Promise<void> {
    this.#draining = true;
    // Jobs submitted here run on workers whatever happens to this gateway; waiting for them lets
    // the clients connected here get their results before the sockets close.
    await Promise.all([...this.#following.values()].map(({ job }) => job.outcome));
  }

  async abandon(): Promise<void> {
    // Nothing to give up: the jobs stay queued or running in the cluster, and their clients
    // resume them through another gateway (or this one, restarted) by id.
    this.#draining = true;
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.#draining = true;
    this.#closed = true;
    clearInterval(this.#positionTimer);
    clearInterval(this.#reconcileTimer);
    this.keyLimits.close();
    for (const followed of this.#following.values()) followed.deadlineTimer?.clear();
    const links = [...this.#pools.values()];
    this.#pools.clear();
    const connections = [this.#redis, this.#eventsConnection, this.#subscriber];
    if (connections.some((connection) => connection.status !== 'ready')) {
      // Redis away: quit() and the links' set-up would wait for it to come back (a reconnecting
      // connection holds its commands), and closing would never end. Drop the connections; what
      // waited on them fails and is not waited for.
      for (const connection of connections) connection.disconnect();
      for (const link of links) {
        void link.queue.close().catch(() => undefined);
        void link.ready.then((events) => events.close()).catch(() => undefined);
      }
    } else {
      await Promise.allSettled(
        links.map(async (link) => {
          await link.queue.close();
          await (await link.ready).close();
        }),
      );
      await Promise.allSettled(connections.map((connection) => connection.quit()));
    }
    await this.#options.catalog.close();
  }

  /**
   * Exports the autoscaling signals per pool, read from Redis at each scrape: jobs waiting,
   * age of the oldest waiting job, jobs running, and workers connected.
   */
  registerMetrics(registry: Registry): void {
    let snapshot: Promise<PoolSnapshot[]> | undefined;
    // One Redis read per scrape, shared by the gauges below.
    const read = (): Promise<PoolSnapshot[]> => {
      snapshot ??= this.#snapshot().finally(() => {
        setTimeout(() => (snapshot = undefined), 100).unref();
      });
      return snapshot;
    };
    const gauge = (name: string, help: string, value: (pool: PoolSnapshot) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['pool'],
        registers: [registry],
        async collect() {
          this.reset();
          const pools = await read().catch(() => []);
          for (const pool of pools) this.set({ pool: pool.pool }, value(pool));
        },
      });
    };
    gauge(
      'tandem_pool_queue_depth',
      'Jobs waiting in a worker pool queue (scale-out): the autoscaling signal.',
      (pool) => pool.waiting,
    );
    gauge(
      'tandem_pool_oldest_wait_seconds',
      'Age of the oldest job waiting in a worker pool queue (0 when empty).',
      (pool) => pool.oldestWaitSeconds,
    );
    gauge(
      'tandem_pool_active_jobs',
      'Jobs running on the workers of a pool.',
      (pool) => pool.active,
    );
    gauge('tandem_pool_workers', 'Workers connected to a pool queue.', (pool) => pool.workers);
    const up = new Gauge({
      name: 'tandem_redis_up',
      help: '1 when the gateway reached Redis at this scrape.',
      registers: [registry],
      collect: async () => {
        up.set(
          await read().then(
            () => 1,
            () => 0,
          ),
        );
      },
    });
  }

  // ---- internals ------------------------------------------------------------------------------

  #log(level: 'info' | 'warn', message: string, details?: object): void {
    this.#options.log?.(level, message, details);
  }

  #poolOf(pool: string, label: string): string {
    try {
      return checkPoolName(pool);
    } catch (error) {
      throw new TandemError(
        'E_MODEL_LOAD_FAILED',
        `model ${label}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** Marks `error` as refusing its job (see `rejected`), and returns it. */
  #refusal(error: TandemError): TandemError {
    this.#refusals.add(error);
    return error;
  }

  #retention(): { removeOnComplete: { age: number }; removeOnFail: { age: number } } {
    const age = Math.max(1, Math.ceil(this.#options.resultTtlMs / 1000));
    return { removeOnComplete: { age }, removeOnFail: { age } };
  }

  /** The queue and event reader of a pool, created on first use. */
  #link(pool: string): PoolLink {
    const existing = this.#pools.get(pool);
    if (existing !== undefined) return existing;
    const queue = new Queue(pool, { connection: this.#redis, prefix: this.#keys.prefix });
    queue.on('error', (error) => this.#log('warn', `queue ${pool}: ${error.message}`));
    const ready = (async (): Promise<QueueEvents> => {
      // Read events from the stream's current end, named explicitly: with the default ('$') an
      // event written before the reader's first XREAD would be lost.
      const last = await this.#redis.xrevrange(this.#keys.events(pool), '+', '-', 'COUNT', 1);
      const events = new QueueEvents(pool, {
        connection: this.#eventsConnection,
        prefix: this.#keys.prefix,
        lastEventId: last[0]?.[0] ?? '0',
      });
      events.on('error', (error) => this.#log('warn', `events ${pool}: ${error.message}`));
      this.#listen(events);
      await events.waitUntilReady();
      return events;
    })();
    const link = { queue, ready };
    this.#pools.set(pool, link);
    // A pool whose reader could not start (Redis away) is retried on next use.
    ready.catch(() => {
      if (this.#pools.get(pool) === link) this.#pools.delete(pool);
      void queue.close().catch(() => undefined);
    });
    return link;
  }

  #listen(events: QueueEvents): void {
    events.on('active', ({ jobId }) => {
      const followed = this.#following.get(jobId);
      if (followed !== undefined) followed.waiting = false;
    });
    events.on('stalled', ({ jobId }) => {
      const followed = this.#following.get(jobId);
      if (followed === undefined) return;
      // Its worker died; BullMQ put it back in the queue for another one.
      followed.waiting = true;
      followed.position = -1;
      const { pool, queuedAt } = followed;
      this.#redis
        .eval(
          REQUEUE_SCRIPT,
          3,
          this.#keys.waiting(pool),
          this.#keys.wait(pool),
          this.#keys.prioritized(pool),
          queuedAt,
          jobId,
        )
        .catch(() => undefined);
    });
    events.on('progress', ({ jobId, data }) => {
      const followed = this.#following.get(jobId);
      if (followed === undefined) return;
      followed.waiting = false;
      let event: ProgressEvent;
      try {
        event = parseProgressEvent(data, { path: 'job progress', code: 'E_PROTOCOL' });
      } catch {
        return; // not ours to show
      }
      if ((FINAL_STAGES as readonly string[]).includes(event.stage)) return;
      followed.job.progress(toStageUpdate(event));
    });
    events.on('completed', ({ jobId }) => {
      const followed = this.#following.get(jobId);
      if (followed !== undefined) void this.#settleFromStore(followed);
    });
    events.on('failed', ({ jobId, failedReason }) => {
      const followed = this.#following.get(jobId);
      if (followed !== undefined) void this.#settleFailed(followed, failedReason);
    });
  }

  /**
   * Starts following a job's BullMQ counterpart (its events, position, cancel and deadline). By
   * default a new job, just queued under a fresh BullMQ id; `known` describes one already in Redis.
   */
  #follow(
    job: Job,
    pool: string,
    known: Partial<Pick<Followed, 'jobId' | 'model' | 'queuedAt' | 'waiting' | 'added'>> = {},
  ): Followed {
    const followed: Followed = {
      job,
      jobId: known.jobId ?? randomUUID(),
      pool,
      model: known.model,
      queuedAt: known.queuedAt ?? Date.now(),
      waiting: known.waiting ?? true,
      position: -1,
      etaSent: false,
      added: known.added ?? false,
      deadlineTimer: undefined,
    };
    this.#following.set(followed.jobId, followed);
    void followed.job.outcome.then(() => {
      followed.deadlineTimer?.clear();
      if (this.#following.get(followed.jobId) === followed) this.#following.delete(followed.jobId);
    });
    followed.job.setCanceller(() => {
      this.#stop(
        followed,
        new TandemError('E_CANCELLED', `job ${followed.job.request.id} was cancelled`),
      );
    });
    this.#positionTimer ??= setInterval(
      () => void this.#updatePositions(),
      Math.max(50, this.#options.progressIntervalMs),
    );
    this.#positionTimer.unref();
    return followed;
  }

  /**
   * Ends a job with `E_DEADLINE_EXCEEDED` after `deadlineMs` (at once when it is past) wherever
   * it is (`which` says which deadline, for the message): the worker checks the deadline again before it runs the job, and this fires while the
   * job waits in the queue (or runs), so the answer never comes later than the deadline.
   */
  #armDeadline(followed: Followed, deadlineMs: number, which: string): void {
    followed.deadlineTimer?.clear();
    // The worker checks the deadline again before it runs the job; this one fires while the job
    // waits in the queue (or runs), so the answer never comes later than the deadline.
    followed.deadlineTimer = setLongTimeout(() => {
      this.#stop(
        followed,
        this.#refusal(
          new TandemError(
            'E_DEADLINE_EXCEEDED',
            `job ${followed.job.request.id} passed its deadline ${which}`,
          ),
        ),
      );
    }, deadlineMs);
  }

  /**
   * Stores a job's input and adds it to its pool's queue. Rejects only while the job is not in
   * the queue, and then leaves nothing of it in Redis as far as Redis can be reached (a store
   * whose reply was lost may leave a waiting entry: the stale-entry sweep removes it). Once it
   * is in the queue nothing fails it here: it runs on a worker whatever this gateway hears, so it
   * is followed to its end like any other job.
   */
  async #enqueue(
    followed: Followed,
    data: InferJobData,
    input: Uint8Array,
    maxQueue: number,
  ): Promise<void> {
    const { job, jobId, pool } = followed;
    const link = this.#link(pool);
    await link.ready;
    // Input and index before the add: a worker may take the job the moment it is added, and a
    // client may resume it from then on. The waiting entry too, counted in the same step (maxQueue).
    const stored = await this.#redis
      .multi()
      .set(this.#keys.input(jobId), toBuffer(input), 'PX', INPUT_TTL_MS)
      .set(this.#keys.index(data.owner, data.id), `${pool}/${jobId}`, 'PX', INPUT_TTL_MS)
      .zadd(this.#keys.waiting(pool), followed.queuedAt, jobId)
      .zcard(this.#keys.waiting(pool))
      .exec();
    const failed = stored?.find(([error]) => error !== null)?.[0];
    if (failed !== undefined && failed !== null) throw failed;
    const waiting = stored?.[3]?.[1];
    if (typeof waiting === 'number' && waiting > maxQueue) {
      // Removed before the answer: by the time the client hears it, the refused job no longer
      // counts against maxQueue (nor, left behind, would it ever stop counting).
      await this.#forgetBounded(followed);
      // Counted across every gateway: the pool's queue is shared.
      job.fail(
        this.#refusal(
          new TandemError('E_BUSY', `the queue of pool ${pool} is full (${maxQueue} jobs)`, {
            retryAfterMs: 1000,
          }),
        ),
      );
      return;
    }
    if (settled(job)) {
      // Cancelled (or past its deadline) while its input was being stored.
      await this.#forgetBounded(followed);
      return;
    }
    try {
      await link.queue.add(INFER_JOB, data, {
        jobId,
        priority: bullPriority(job.priority),
        attempts: this.#options.maxAttempts,
        ...this.#retention(),
      });
    } catch (error) {
      // Not queued, unless Redis ran the add and only its reply was lost: what was stored goes,
      // but only if BullMQ does not hold the job (one script decides). Left behind, a waiting
      // entry would keep the oldest-job age up for good.
      if ((await this.#forgetBounded(followed)) !== 'queued') throw error;
    }
    followed.added = true;
    if (settled(job)) {
      this.#withdrawOrWarn(followed);
      return;
    }
    await this.#reportPosition(followed);
  }

  /**
   * Sends a waiting job's queue position when it changed. A read that fails leaves the position
   * unknown, nothing more: the job is queued all the same, and #updatePositions reads it again.
   */
  async #reportPosition(followed: Followed): Promise<void> {
    if (!followed.waiting || !followed.job.listening) return;
    const [position] = await this.#readPositions([followed]).catch(() => []);
    // The worker may have taken it while the position was read.
    if (position !== undefined && stillWaiting(followed)) this.#sendPosition(followed, position);
  }

  async #updatePositions(): Promise<void> {
    if (this.#positionsBusy) return;
    if (this.#following.size === 0) {
      clearInterval(this.#positionTimer);
      this.#positionTimer = undefined;
      return;
    }
    this.#positionsBusy = true;
    try {
      // Every queued job, including one whose first position read failed.
      const waiting = [...this.#following.values()].filter(
        (f) => f.added && f.waiting && f.job.listening,
      );
      if (waiting.length === 0) return;
      const positions = await this.#readPositions(waiting);
      waiting.forEach((followed, index) => {
        const position = positions[index];
        if (position !== undefined && followed.waiting) this.#sendPosition(followed, position);
      });
    } catch {
      // Redis away: positions resume with it.
    } finally {
      this.#positionsBusy = false;
    }
  }

  /**
   * The queue positions of jobs (0 = next), read in one transaction; undefined for a job in
   * neither list (taken by a worker, or not added yet). A worker takes from BullMQ's plain wait
   * list first, at its right end, where a job put back after its worker died goes; then from the
   * prioritised set in order (where every job of ours is added).
   */
  async #readPositions(jobs: readonly Followed[]): Promise<(number | undefined)[]> {
    const pools = [...new Set(jobs.map((f) => f.pool))];
    const transaction = this.#redis.multi();
    for (const pool of pools) transaction.llen(this.#keys.wait(pool));
    for (const { pool, jobId } of jobs)
      transaction.lpos(this.#keys.wait(pool), jobId).zrank(this.#keys.prioritized(pool), jobId);
    const replies = await transaction.exec();
    const value = (index: number): number | undefined => {
      const [error, reply] = replies?.[index] ?? [];
      return (error === null || error === undefined) && typeof reply === 'number'
        ? reply
        : undefined;
    };
    const waitLengths = new Map(pools.map((pool, index) => [pool, value(index)]));
    return jobs.map(({ pool }, index) => {
      const length = waitLengths.get(pool);
      if (length === undefined) return undefined;
      const listed = value(pools.length + 2 * index);
      if (listed !== undefined) return length - 1 - listed;
      const rank = value(pools.length + 2 * index + 1);
      return rank === undefined ? undefined : length + rank;
    });
  }

  /**
   * Sends a waiting job's queue position with its ETA, when either changed (or the ETA became
   * known): the ETA comes from what the live workers report of its model, as a single server's
   * comes from its own measurements, and is left out until they have measured what it needs.
   */
  #sendPosition(followed: Followed, position: number): void {
    const capacity =
      followed.model === undefined
        ? undefined
        : this.#states.capacity(followed.model.name, followed.model.version);
    const eta = capacity === undefined ? undefined : queuedEtaMs(position, capacity);
    if (position === followed.position && (eta !== undefined) === followed.etaSent) return;
    followed.position = position;
    followed.etaSent = eta !== undefined;
    followed.job.progress({
      stage: 'queued',
      queuePosition: position,
      ...(eta === undefined ? {} : { etaMs: eta }),
    });
  }

  /** Settles jobs whose end this gateway missed, from what Redis holds. */
  async #reconcile(): Promise<void> {
    if (this.#reconciling) return;
    const now = Date.now();
    const due = [...this.#following.values()].filter(
      (f) => f.added && !f.job.settled && now - f.queuedAt >= RECONCILE_INTERVAL_MS,
    );
    if (due.length === 0) return;
    this.#reconciling = true;
    try {
      const pipeline = this.#redis.pipeline();
      for (const { jobId, pool } of due) {
        pipeline
          .exists(this.#keys.outcome(jobId))
          .zscore(this.#keys.failed(pool), jobId)
          .hget(this.#keys.bullJob(pool, jobId), 'failedReason')
          .exists(this.#keys.bullJob(pool, jobId));
      }
      const replies = (await pipeline.exec()) ?? [];
      due.forEach((followed, index) => {
        const [outcome, failed, reason, exists] = replies
          .slice(index * 4, index * 4 + 4)
          .map(([error, value]) => (error === null ? value : undefined));
        if (outcome === 1) void this.#settleFromStore(followed);
        else if (typeof failed === 'string')
          void this.#settleFailed(followed, typeof reason === 'string' ? reason : '');
        else if (exists === 0) {
          followed.job.fail(
            new TandemError(
              'E_JOB_NOT_FOUND',
              `job ${followed.job.request.id} left the queue without an outcome`,
            ),
          );
        }
      });
    } catch {
      // Redis away: the next round checks again.
    } finally {
      this.#reconciling = false;
    }
  }

  /** Settles a job from the outcome its worker stored. */
  async #settleFromStore(followed: Followed): Promise<void> {
    const { job, jobId } = followed;
    for (let attempt = 1; !job.settled; attempt++) {
      try {
        // One transaction: the worker wrote both keys in one, with one TTL.
        const read = await this.#redis
          .multi()
          .getBuffer(this.#keys.outcome(jobId))
          .exists(this.#keys.refused(jobId))
          .exec();
        const failed = read?.find(([error]) => error !== null)?.[0];
        if (failed !== undefined && failed !== null) throw failed;
        const bytes = read?.[0]?.[1];
        if (!Buffer.isBuffer(bytes)) {
          job.fail(
            new TandemError(
              'E_JOB_NOT_FOUND',
              `the outcome of job ${job.request.id} expired before it was read`,
            ),
          );
          return;
        }
        const stored = decodeOutcome(bytes);
        if (stored.kind === 'model') {
          this.#warmStatuses.set(jobId, stored.status);
          job.succeed({
            id: job.request.id,
            model: stored.status.name,
            version: stored.status.version,
            outputs: {},
            backend: 'cpu',
            coldStart: false,
            timings: { queueMs: 0, loadMs: 0, warmupMs: 0, runMs: 0, totalMs: 0 },
          });
        } else if (stored.outcome.ok) {
          job.succeed({ ...stored.outcome.result, id: job.request.id });
        } else {
          // The worker refused it rather than ran it (see RedisKeys.refused).
          if (read?.[1]?.[1] === 1) this.#refusal(stored.outcome.error);
          job.fail(stored.outcome.error);
        }
        return;
      } catch (error) {
        if (error instanceof TandemError || attempt >= OUTCOME_READS) {
          job.fail(error instanceof TandemError ? error : queueUnavailable(error));
          return;
        }
        // Redis blinked between the completion event and this read: the outcome is still there.
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  /** Settles a job that BullMQ failed: no worker finished it within its attempts. */
  async #settleFailed(followed: Followed, reason: string): Promise<void> {
    const stored = await this.#redis.exists(this.#keys.outcome(followed.jobId)).catch(() => 0);
    if (stored === 1) return this.#settleFromStore(followed);
    // A job put back after its worker died, then failed by BullMQ when a worker took it again
    // (too many starts), never reaches a worker's processor, which is what removes the waiting
    // entry: removed here, before the client hears, or it holds the pool's oldest-job age and a
    // place of maxQueue. (Missed here, the sweep finds it; see #sweepWaiting.) Its input goes
    // too: no worker runs it again, and under noeviction it would hold memory for a day.
    await this.#redis
      .multi()
      .zrem(this.#keys.waiting(followed.pool), followed.jobId)
      .del(this.#keys.input(followed.jobId))
      .exec()
      .catch(() => undefined);
    followed.job.fail(
      new TandemError(
        'E_ATTEMPTS_EXHAUSTED',
        `job ${followed.job.request.id} did not finish within its ${this.#options.maxAttempts} attempts: ${reason}`,
      ),
    );
  }

  /** Ends a job early (cancel, deadline): answers now, then stops it wherever it is. */
  #stop(followed: Followed, error: TandemError): void {
    if (!followed.job.fail(error)) return;
    this.#withdrawOrWarn(followed);
  }

  /** {@link #withdraw} for a job that has its answer already: a failure is only logged. */
  #withdrawOrWarn(followed: Followed): void {
    this.#withdraw(followed).catch((cause: unknown) =>
      this.#log('warn', `could not withdraw job ${followed.jobId}`, {
        reason: cause instanceof Error ? cause.message : String(cause),
      }),
    );
  }

  /** Removes a job from its queue if it still waits; otherwise tells its worker to drop it. */
  async #withdraw(followed: Followed): Promise<void> {
    const { jobId, pool } = followed;
    const results = await this.#redis
      .multi()
      .set(this.#keys.cancelled(jobId), '1', 'PX', INPUT_TTL_MS)
      .publish(this.#keys.cancelChannel, jobId)
      .zrem(this.#keys.waiting(pool), jobId)
      .exec();
    // A worker takes a job off the waiting set when it starts it. Such a job is the worker's to
    // end (it heard the cancel): removing it here could race the worker's own finish and erase
    // the record of how it ended.
    if (results?.[2]?.[1] !== 1) return;
    const link = this.#pools.get(pool);
    // Taken by a worker since (locked): it stays, and that worker sees the cancelled mark.
    const removed = await link?.queue.remove(jobId).catch(() => 0);
    if (removed === 1) await this.#forget(followed);
  }

  /**
   * Deletes what a job that never ran left in Redis (see FORGET_SCRIPT); `queued` when BullMQ
   * holds the job, which then keeps all of it.
   */
  async #forget(followed: Followed): Promise<'forgotten' | 'queued'> {
    const { job, jobId, pool } = followed;
    const deleted = await this.#redis.eval(
      FORGET_SCRIPT,
      5,
      this.#keys.input(jobId),
      this.#keys.cancelled(jobId),
      this.#keys.index(job.request.owner, job.request.id),
      this.#keys.waiting(pool),
      this.#keys.bullJob(pool, jobId),
      jobId,
      `${pool}/${jobId}`,
    );
    return deleted === 1 ? 'forgotten' : 'queued';
  }

  /**
   * {@link #forget} retried a few times while Redis blinks (the command connection fails fast),
   * for a job not known to be queued; `unknown` when no attempt reached Redis. Bounded: the
   * client waits for this before it hears the refusal.
   */
  async #forgetBounded(followed: Followed): Promise<'forgotten' | 'queued' | 'unknown'> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#forget(followed);
      } catch (error) {
        if (attempt >= FORGET_ATTEMPTS) {
          this.#log('warn', `could not remove what job ${followed.jobId} left in Redis`, {
            reason: error instanceof Error ? error.message : String(error),
          });
          return 'unknown';
        }
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  /**
   * When the oldest job still waiting in `pool` was queued (epoch ms), if any: the first entry of
   * its waiting set, once stale entries are removed (see STALE_WAITING_ENTRY_MS).
   */
  async #oldestWaiting(pool: string, now: number): Promise<number | undefined> {
    await this.#sweepWaiting(pool, now);
    const [, score] = await this.#redis.zrange(this.#keys.waiting(pool), 0, 0, 'WITHSCORES');
    return score === undefined ? undefined : Number(score);
  }

  /**
   * Removes the waiting entries of `pool` older than STALE_WAITING_ENTRY_MS whose job BullMQ does
   * not hold, or holds as finished (at most STALE_ENTRIES_PER_SWEEP old entries are looked at,
   * oldest first). A job that has really waited that long (no worker yet: a pool scaled to zero)
   * is BullMQ's, and stays. A finished one is a job that BullMQ failed without running it (put
   * back after its worker died, then too many starts) while the gateway that would have removed
   * its entry was gone; BullMQ keeps such a job until a later one fails, maybe for good.
   */
  async #sweepWaiting(pool: string, now: number): Promise<void> {
    const key = this.#keys.waiting(pool);
    const old = await this.#redis.zrangebyscore(
      key,
      '-inf',
      now - STALE_WAITING_ENTRY_MS,
      'LIMIT',
      0,
      STALE_ENTRIES_PER_SWEEP,
    );
    if (old.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const jobId of old)
      pipeline.hmget(this.#keys.bullJob(pool, jobId), 'timestamp', 'finishedOn');
    const held = (await pipeline.exec()) ?? [];
    const stale = old.filter((_, index) => {
      const [error, fields] = held[index] ?? [];
      if ((error !== null && error !== undefined) || !Array.isArray(fields)) return false;
      const [timestamp, finishedOn] = fields as (string | null)[];
      return timestamp === null || finishedOn !== null;
    });
    if (stale.length === 0) return;
    await this.#redis.zrem(key, ...stale);
    this.#log('warn', `removed ${stale.length} stale waiting entries of pool ${pool}`, {
      jobIds: stale,
    });
  }

  /** Removes stale waiting entries of every pool (see STALE_WAITING_ENTRY_MS); never throws. */
  async #pruneWaiting(): Promise<void> {
    const now = Date.now();
    await Promise.allSettled(this.pools().map((pool) => this.#sweepWaiting(pool, now)));
  }

  async #snapshot(): Promise<PoolSnapshot[]> {
    const now = Date.now();
    return Promise.all(
      this.pools().map(async (pool) => {
        const link = this.#link(pool);
        const [counts, oldestAt, workers] = await Promise.all([
          link.queue.getJobCounts('wait', 'prioritized', 'delayed', 'active'),
          this.#oldestWaiting(pool, now),
          link.queue.getWorkersCount(),
        ]);
        return {
          pool,
          waiting: (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0),
          active: counts.active ?? 0,
          oldestWaitSeconds: oldestAt === undefined ? 0 : Math.max(0, now - oldestAt) / 1000,
          workers,
        };
      }),
    );
  }
}

/** One pool's autoscaling signals. */
interface PoolSnapshot {
  readonly pool: string;
  readonly waiting: number;
  readonly active: number;
  readonly oldestWaitSeconds: number;
  readonly workers: number;
}

/** A worker's progress event as an update of this gateway's own tracker (monotone, one clock). */
function toStageUpdate(event: ProgressEvent): StageUpdate {
  const stage = event.stage as StageUpdate['stage'];
  return {
    stage,
    ...(event.loaded === undefined ? {} : { loaded: event.loaded }),
    ...(event.total === undefined ? {} : { total: event.total }),
    ...(event.queuePosition === undefined ? {} : { queuePosition: event.queuePosition }),
    ...(event.etaMs === undefined ? {} : { etaMs: event.etaMs }),
  };
}

/** Whether a job has settled (a call, so checks after an await are not narrowed away). */
function settled(job: Job): boolean {
  return job.settled;
}

function stillWaiting(followed: Followed): boolean {
  return followed.waiting;
}

/** A Buffer over the same bytes (no copy). */
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
