// A scale-out worker (`tandem worker`): takes jobs of one pool from its BullMQ queue and runs them
// through the same ModelManager/ModelHost as the in-process server, so cold start, warm-up, idle
// unload and progress behave alike. Inputs and outcomes travel as binary frames in keys beside the
// BullMQ job (redis-job-codec.ts); progress goes out as BullMQ job progress; a gateway's cancel
// arrives on a pub/sub channel. A job refused rather than run (bad inputs, a missed deadline, a
// model that failed to load) is marked beside its outcome: the gateway that submitted the job
// counts the refusal (a worker's optional /metrics has lifecycle and run metrics, no refusals). A job that ran adds its usage (compute-seconds,
// cold start) to Redis in the transaction that stores its outcome (redis-usage.ts), which every
// gateway's /v1/usage reads. A worker that dies mid-job stops renewing its lock: BullMQ's stalled-job check on another worker puts the job back, and a job that has
// started `maxAttempts` times fails instead of looping. With `idleExitMs` the worker exits when
// idle, so an autoscaler can run it as a run-to-completion job and scale to zero.

import { hostname } from 'node:os';
import { Worker, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { FINAL_STAGES, TandemError, type ProgressEvent } from '@tandem/shared';
import { resolveCatalog } from './default-catalog.js';
import type { Job, JobOutcome } from './job.js';
import { serveMetrics, type MetricsEndpoint } from './metrics-endpoint.js';
import { ServerMetrics } from './metrics.js';
import { DEFAULT_MANAGER_SETTINGS, ModelManager } from './model-manager.js';
import { ModelRepository, checkModelsDir, type ModelEntry } from './model-repository.js';
import type { SessionSettings } from './onnx-session.js';
import {
  decodeJobInput,
  encodeJobOutcome,
  encodeModelOutcome,
  parseInferJobData,
  parseWarmJobData,
  type InferJobData,
  type JobSummary,
} from './redis-job-codec.js';
import { modelChannel, publishModelStates } from './redis-model-states.js';
import { addUsage, type JobUsage } from './redis-usage.js';
import {
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REDIS_PREFIX,
  RedisKeys,
  WARM_JOB,
  checkPoolName,
  connectRedis,
} from './redis-queues.js';

/** Options of {@link startRedisWorker}. Units are in the names. */
export interface RedisWorkerOptions {
  /** Redis URL, e.g. redis://redis:6379. */
  readonly redisUrl: string;
  /** Model repository directory (the same models the gateways see); it must exist. */
  readonly modelsDir?: string;
  /** The built-in catalog, your own entries, or none (match the gateways). @default true */
  readonly catalog?: boolean | readonly ModelEntry[];
  /** The pool whose queue this worker takes jobs from. @default 'default' */
  readonly pool?: string;
  /** Jobs taken at once; 1 per device is the rule for GPUs ("prefetch 1"). @default 1 */
  readonly concurrency?: number;
  /** Exit after this long with no job (scale to zero); undefined never exits on its own. */
  readonly idleExitMs?: number;
  /** Times a job may start, restarts after a worker died counted. @default 2 */
  readonly maxAttempts?: number;
  /**
   * How long a job's lock lasts without renewal, in ms: a dead worker's job is noticed this long
   * (plus up to `stalledIntervalMs`) after its last renewal. @default 10000
   */
  readonly lockDurationMs?: number;
  /** How often this worker looks for stalled jobs (of any worker), in ms. @default 5000 */
  readonly stalledIntervalMs?: number;
  /** Prefix of every Redis key (match the gateways). @default 'tandem' */
  readonly redisPrefix?: string;
  /** Idle time before a model instance is unloaded, in ms. @default 300000 */
  readonly idleTimeoutMs?: number;
  /** Bytes of model files loaded at once before idle models are evicted. @default Infinity */
  readonly memoryBudgetBytes?: number;
  /** onnxruntime-node session settings (execution providers, threads). */
  readonly session?: SessionSettings;
  /** This worker's name, stored on every job it processes. @default '<hostname>:<pid>' */
  readonly name?: string;
  /**
   * Serve `/metrics` (Prometheus: model lifecycle, runs, cold starts, instances, queue, process)
   * and `/health` on this port; 0 picks a free one. Undefined: no HTTP endpoint.
   */
  readonly metricsPort?: number;
  /** Interface of the metrics endpoint (0.0.0.0 in a container). @default '127.0.0.1' */
  readonly metricsHost?: string;
  /** Where log lines go. @default nowhere */
  readonly log?: (level: 'info' | 'warn', message: string, details?: object) => void;
  /**
   * Aborting it while the worker starts (waiting for a Redis that cannot be reached, say) drops
   * what was opened and rejects with `E_SHUTTING_DOWN`; once started, use `close()`.
   * @default none
   */
  readonly signal?: AbortSignal;
}

/** A running worker. */
export interface RedisWorker {
  /** Its name, as stored on the jobs it processes (BullMQ's `processedBy`). */
  readonly name: string;
  /** The pool whose queue it takes jobs from. */
  readonly pool: string;
  /** The models it runs. */
  readonly manager: ModelManager;
  /** Base URL of its `/metrics` and `/health` endpoint, when `metricsPort` was given. */
  readonly metricsUrl: string | undefined;
  /** Resolves when the worker has stopped, with why: idle for `idleExitMs`, or closed. */
  readonly stopped: Promise<'idle' | 'closed'>;
  /** Stops taking jobs, lets the running ones finish, releases models and connections. */
  close(): Promise<void>;
}

/** How long a job's outcome is kept when the job data does not say (matches the gateway's). */
const DEFAULT_RESULT_TTL_MS = 60_000;

/** Connects to Redis and starts taking jobs; resolves once the worker is listening. */
export async function startRedisWorker(options: RedisWorkerOptions): Promise<RedisWorker> {
  const pool = checkPoolName(options.pool ?? 'default');
  const name = options.name ?? `${hostname()}:${process.pid}`;
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const concurrency = options.concurrency ?? 1;
  const lockDurationMs = options.lockDurationMs ?? 10_000;
  for (const [key, value] of Object.entries({ maxAttempts, concurrency })) {
    if (!Number.isInteger(value) || value < 1)
      throw new TandemError('E_INVALID_ARGUMENT', `option ${key} must be an integer >= 1`);
  }
  if (options.modelsDir !== undefined) checkModelsDir(options.modelsDir);
  const keys = new RedisKeys(options.redisPrefix ?? DEFAULT_REDIS_PREFIX);
  const log = options.log ?? (() => undefined);
  const onRedisError = (error: Error): void => log('warn', `redis: ${error.message}`);
  const catalog = resolveCatalog(options.catalog);
  const redis = connectRedis(options.redisUrl, 'wait', onRedisError);
  const subscriber = connectRedis(options.redisUrl, 'wait', onRedisError);
  let states: ReturnType<typeof publishModelStates> | undefined;
  /** Jobs accepted here that a model host then refused (see HostObserver.rejected). */
  const refusedJobs = new WeakSet<Job>();
  /** What each job that ran here used, stored with its outcome (see redis-usage.ts). */
  const usageOf = new WeakMap<Job, JobUsage>();
  let metrics: ServerMetrics | undefined;
  const manager = new ModelManager(
    new ModelRepository({ dir: options.modelsDir, catalog }),
    {
      ...DEFAULT_MANAGER_SETTINGS,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_MANAGER_SETTINGS.idleTimeoutMs,
      // The BullMQ concurrency bounds what reaches the local queue.
      maxQueue: Math.max(DEFAULT_MANAGER_SETTINGS.maxQueue, concurrency),
      // No main-thread sessions: this thread renews the BullMQ locks of running jobs, and the
      // probe that qualifies a model for inline runs would block it for two runs of the model.
      // Next to a Redis round trip the worker-thread hop costs little.
      inlineMaxRunMs: 0,
      memoryBudgetBytes: options.memoryBudgetBytes ?? DEFAULT_MANAGER_SETTINGS.memoryBudgetBytes,
      session: options.session ?? DEFAULT_MANAGER_SETTINGS.session,
    },
    {
      // Gateways show clients what the workers have loaded.
      stateChanged: (host) => states?.changed(host.status()),
      loaded: (host, loadMs, warmupMs) => {
        metrics?.modelLoaded(host, loadMs, warmupMs);
        log('info', `model ${host.label} ready`, { loadMs, warmupMs });
      },
      coldStart: (host) => metrics?.coldStart(host),
      // A batch's run time is split evenly among its jobs, as a single server's ledger does.
      ran: (host, runMs, jobs) => {
        metrics?.modelRan(host, runMs, jobs.length);
        const computeSeconds = runMs / 1000 / Math.max(1, jobs.length);
        for (const job of jobs) {
          usageOf.set(job, {
            owner: job.request.owner,
            model: host.entry.name,
            version: host.entry.version,
            computeSeconds: (usageOf.get(job)?.computeSeconds ?? 0) + computeSeconds,
            coldStart: job.coldStart,
          });
        }
      },
      // The same refusals a single server counts: its hosts say which accepted jobs they refused.
      rejected: (_host, _code, job) => {
        if (job !== undefined) refusedJobs.add(job);
      },
      log: (level, message, details) => log(level, message, details),
    },
  );
  let endpoint: MetricsEndpoint | undefined;
  // Refusals are counted by the gateway a job came through; a worker has no front door.
  if (options.metricsPort !== undefined) metrics = new ServerMetrics(manager, { frontDoor: false });
  states = publishModelStates(redis, modelChannel(keys.prefix, name), () =>
    manager
      .hosts()
      .filter((host) => host.entry.config.pool === pool)
      .map((host) => host.status()),
  );
  /** Jobs this worker runs, by BullMQ job id, so a cancel can find them. */
  const active = new Map<string, Job>();

  subscriber.on('message', (_channel: string, jobId: string) => active.get(jobId)?.cancel());
  // Start-up waits for Redis as long as it takes (ioredis retries for ever); a shutdown that
  // comes meanwhile must not wait with it: it drops the connections (nothing is held yet).
  let bullWorker: Worker<unknown, JobSummary> | undefined;
  const untilAborted = async <T>(step: Promise<T>): Promise<T> => {
    const signal = options.signal;
    if (signal === undefined) return step;
    let onAbort!: () => void;
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () =>
        reject(new TandemError('E_SHUTTING_DOWN', 'shut down while waiting for Redis to start'));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([step, aborted]);
    } catch (error) {
      if (signal.aborted) {
        states.stop();
        redis.disconnect();
        subscriber.disconnect();
        void bullWorker?.close(true).catch(() => undefined);
        await manager.close();
      }
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };
  await untilAborted(subscriber.subscribe(keys.cancelChannel));

  let running = 0;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let resolveStopped!: (why: 'idle' | 'closed') => void;
  const stopped = new Promise<'idle' | 'closed'>((resolve) => (resolveStopped = resolve));
  let stopping: Promise<void> | undefined;

  const processJob = async (bullJob: BullJob): Promise<JobSummary> => {
    running += 1;
    clearTimeout(idleTimer);
    try {
      const jobId = bullJob.id ?? '';
      return bullJob.name === WARM_JOB
        ? await warm(redis, keys, manager, bullJob, jobId, name)
        : await infer(
            redis,
            keys,
            { manager, active, refusedJobs, usageOf },
            pool,
            bullJob,
            jobId,
            name,
          );
    } finally {
      running -= 1;
      if (running === 0) armIdle();
    }
  };

  const worker = new Worker<unknown, JobSummary>(pool, processJob, {
    connection: redis,
    prefix: keys.prefix,
    name,
    concurrency,
    lockDuration: lockDurationMs,
    stalledInterval: options.stalledIntervalMs ?? 5000,
    // A job restarted after its worker died counts as an attempt: a poison job that kills every
    // worker it touches ends after maxAttempts starts, with a clear error, instead of looping.
    maxStalledCount: maxAttempts - 1,
    maxStartedAttempts: maxAttempts,
    autorun: false,
  });
  bullWorker = worker;
  worker.on('error', (error) => log('warn', `worker: ${error.message}`));
  worker.on('failed', (job, error) =>
    log('warn', `job ${job?.id ?? '?'} failed`, { reason: error.message }),
  );

  const stop = (why: 'idle' | 'closed'): Promise<void> => {
    stopping ??= (async () => {
      clearTimeout(idleTimer);
      // While Redis cannot be reached, the outcome of a job in hand cannot be stored and the
      // connections cannot quit: both wait for Redis to come back, and the process would never
      // exit (an idle worker included). Past a lock's length away, the job is no longer this
      // worker's anyway (its lock has lapsed; another worker runs it again once Redis is back),
      // so the worker stops waiting then, drops its connections and exits without it.
      const away = redisAway(redis, lockDurationMs);
      const gaveUp = await Promise.race([
        worker.close().then(
          () => false,
          () => false,
        ),
        away.promise.then(() => true),
      ]);
      away.cancel();
      if (gaveUp) {
        log('warn', `redis unreachable for ${lockDurationMs} ms while closing; leaving its jobs`);
        // Pending commands fail now instead of waiting; the worker's close may then end on its own.
        redis.disconnect();
        subscriber.disconnect();
        void worker.close(true).catch(() => undefined);
      }
      // Waits for a run still in flight (ending its thread mid-run would abort the process).
      await manager.close();
      states.stop();
      // quit() waits for Redis to answer, for ever while it is away: an idle worker's close can
      // end before `away` fires (nothing in hand), and its quit then held the process.
      const quitOrDrop = async (connection: Redis): Promise<void> => {
        if (gaveUp || connection.status !== 'ready') {
          connection.disconnect();
          return;
        }
        const gone = redisAway(connection, lockDurationMs);
        const dropped = await Promise.race([
          connection.quit().then(
            () => false,
            () => true,
          ),
          gone.promise.then(() => true),
        ]);
        gone.cancel();
        if (dropped) connection.disconnect();
      };
      await Promise.allSettled([quitOrDrop(subscriber), quitOrDrop(redis), endpoint?.close()]);
      resolveStopped(why);
    })();
    return stopping;
  };
  const armIdle = (): void => {
    if (options.idleExitMs === undefined || stopping !== undefined) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (running === 0) void stop('idle');
    }, options.idleExitMs);
  };

  // Keep-warm (model.json minReady) holds here as in-process: such models load before any job.
  manager.start();
  let takingJobs = true;
  void worker
    .run()
    .catch((error: unknown) =>
      log('warn', `worker stopped: ${error instanceof Error ? error.message : String(error)}`),
    )
    .finally(() => {
      // Ended without close(): the process lives on but takes no job (liveness says so).
      if (stopping === undefined) takingJobs = false;
    });
  await untilAborted(worker.waitUntilReady());
  if (metrics !== undefined && options.metricsPort !== undefined) {
    // Last, so that no failure before it leaves the port open.
    try {
      endpoint = await serveMetrics(
        metrics.registry,
        options.metricsHost ?? '127.0.0.1',
        options.metricsPort,
        () => takingJobs,
      );
    } catch (error) {
      await stop('closed');
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `cannot serve metrics on port ${options.metricsPort}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  }
  armIdle();
  return {
    name,
    pool,
    manager,
    metricsUrl: endpoint?.url,
    stopped,
    close: () => stop('closed'),
  };
}

/** What runs jobs on a worker, and what it knows of them. */
interface Runner {
  readonly manager: ModelManager;
  /** Jobs running, by BullMQ job id, so a cancel can find them. */
  readonly active: Map<string, Job>;
  /** Jobs a model host refused after accepting them. */
  readonly refusedJobs: WeakSet<Job>;
  /** What the jobs that ran used (filled as each run ends). */
  readonly usageOf: WeakMap<Job, JobUsage>;
}

/** How a job ended on this worker: its outcome, and whether it was refused rather than run. */
interface Ended {
  readonly outcome: JobOutcome;
  readonly refused: boolean;
  /** Set when the job ran (whatever its outcome): its share of compute, billed once. */
  readonly usage?: JobUsage;
}

/** Runs one `infer` job and stores its outcome; never throws for the job's own failures. */
async function infer(
  redis: Redis,
  keys: RedisKeys,
  runner: Runner,
  pool: string,
  bullJob: BullJob,
  jobId: string,
  worker: string,
): Promise<JobSummary> {
  let data: InferJobData | undefined;
  let ended: Ended;
  try {
    data = parseInferJobData(bullJob.data);
    const results = await redis
      .pipeline()
      .zrem(keys.waiting(pool), jobId)
      .exists(keys.cancelled(jobId))
      .getBuffer(keys.input(jobId))
      .exec();
    const cancelled = results?.[1]?.[1] === 1;
    const input = results?.[2]?.[1];
    // A cancel is no refusal, as in a single server; a lost input is an accepted job the cluster
    // lost, not one it refused.
    ended = cancelled
      ? notRun(new TandemError('E_CANCELLED', `job ${data.id} was cancelled`))
      : Buffer.isBuffer(input)
        ? await run(redis, keys, runner, bullJob, jobId, data, input)
        : notRun(new TandemError('E_JOB_NOT_FOUND', `the input of job ${data.id} expired`));
  } catch (error) {
    ended = notRun(TandemError.from(error, 'E_PROTOCOL'));
  }
  const { outcome } = ended;
  const ttlMs = data?.resultTtlMs ?? DEFAULT_RESULT_TTL_MS;
  const frame = encodeJobOutcome(data?.id ?? jobId, outcome);
  const store = redis
    .multi()
    .set(keys.outcome(jobId), toBuffer(frame), 'PX', ttlMs)
    .pexpire(keys.input(jobId), ttlMs)
    .del(keys.cancelled(jobId));
  // In the outcome's transaction: a gateway that reads the outcome reads the mark with it.
  if (ended.refused) store.set(keys.refused(jobId), '1', 'PX', ttlMs);
  if (data !== undefined) store.pexpire(keys.index(data.owner, data.id), ttlMs);
  if (ended.usage !== undefined) addUsage(store, keys, jobId, ended.usage);
  await store.exec();
  return outcome.ok ? { ok: true, worker } : { ok: false, code: outcome.error.code, worker };
}

/**
 * Runs a job through the model manager. Refused: whatever its submit throws (as a single server's
 * front doors count it), a deadline passed in the queue, and what a model host refused after
 * accepting the job; not a run that failed (`E_RUNTIME`) or a cancel.
 */
async function run(
  redis: Redis,
  keys: RedisKeys,
  runner: Runner,
  bullJob: BullJob,
  jobId: string,
  data: InferJobData,
  input: Buffer,
): Promise<Ended> {
  const message = decodeJobInput(input);
  let deadlineMs: number | undefined;
  if (data.deadlineAt !== undefined) {
    deadlineMs = data.deadlineAt - Date.now();
    if (deadlineMs <= 0) {
      return refusal(
        new TandemError('E_DEADLINE_EXCEEDED', `job ${data.id} passed its deadline in the queue`),
      );
    }
  }
  let job: Job;
  try {
    ({ job } = runner.manager.submit(
      {
        id: data.id,
        owner: data.owner,
        model: message.model,
        version: data.version,
        inputs: message.inputs,
        ...(message.outputs === undefined ? {} : { outputs: message.outputs }),
        priority: message.priority ?? 0,
        ...(deadlineMs === undefined ? {} : { deadlineMs }),
      },
      (event: ProgressEvent) => {
        // The gateway turns the outcome into the final event itself.
        if ((FINAL_STAGES as readonly string[]).includes(event.stage)) return;
        bullJob.updateProgress({ ...event }).catch(() => undefined);
      },
    ));
  } catch (error) {
    return refusal(TandemError.from(error));
  }
  runner.active.set(jobId, job);
  // A cancel published between the check before the run and now found no job here: look again.
  void redis.exists(keys.cancelled(jobId)).then(
    (found) => {
      if (found === 1) job.cancel();
    },
    () => undefined,
  );
  try {
    const outcome = await job.outcome;
    // A host reports a refusal as it fails the job, before the outcome's reactions run; a run
    // reports its time the same way.
    const usage = runner.usageOf.get(job);
    const refused = runner.refusedJobs.has(job);
    return usage === undefined ? { outcome, refused } : { outcome, refused, usage };
  } finally {
    runner.active.delete(jobId);
  }
}

/** Loads a model for a gateway's `warm` call and stores its status (or the load error). */
async function warm(
  redis: Redis,
  keys: RedisKeys,
  manager: ModelManager,
  bullJob: BullJob,
  jobId: string,
  worker: string,
): Promise<JobSummary> {
  let frame: Uint8Array;
  let summary: JobSummary;
  try {
    const data = parseWarmJobData(bullJob.data);
    const status = await manager.warm(data.model, data.version).ready;
    frame = encodeModelOutcome(status);
    summary = { ok: true, worker };
  } catch (error) {
    const coded = TandemError.from(error);
    frame = encodeJobOutcome(jobId, failure(coded));
    summary = { ok: false, code: coded.code, worker };
  }
  await redis.set(keys.outcome(jobId), toBuffer(frame), 'PX', DEFAULT_RESULT_TTL_MS);
  return summary;
}

/**
 * Resolves once `redis` has been unreachable (not `ready`) for `ms` in a row; `cancel` stops
 * watching.
 */
function redisAway(redis: Redis, ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let resolveAway!: () => void;
  const promise = new Promise<void>((resolve) => (resolveAway = resolve));
  const lost = (): void => {
    timer ??= setTimeout(resolveAway, ms);
  };
  const back = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  redis.on('close', lost);
  redis.on('ready', back);
  if (redis.status !== 'ready') lost();
  return {
    promise,
    cancel() {
      back();
      redis.off('close', lost);
      redis.off('ready', back);
    },
  };
}

function failure(error: TandemError): JobOutcome {
  return { ok: false, error };
}

function notRun(error: TandemError): Ended {
  return { outcome: failure(error), refused: false };
}

function refusal(error: TandemError): Ended {
  return { outcome: failure(error), refused: true };
}

/** A Buffer over the same bytes (no copy). */
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
