// What gateways and workers agree on when scaled out over Redis: one BullMQ queue per worker pool,
// the keys kept beside BullMQ's own (job inputs and outcomes as binary frames, cancel marks, the
// owner/id index that `resume` reads, the waiting-since set behind the oldest-job metric), the
// pub/sub channels, how Tandem priorities map onto BullMQ's, and the Redis connection settings.

import { Redis, type RedisOptions } from 'ioredis';
import { PRIORITY_MAX, PRIORITY_MIN, TandemError } from '@tandem/shared';

/** Prefix of every Redis key and channel Tandem uses. @default 'tandem' */
export const DEFAULT_REDIS_PREFIX = 'tandem';

/** BullMQ job names: a model run, or a "wake up" call that only loads the model. */
export const INFER_JOB = 'infer';
export const WARM_JOB = 'warm';

/** Runs a job may start, counting restarts after a worker died mid-job. @default 2 */
export const DEFAULT_MAX_ATTEMPTS = 2;

/**
 * How long a job's input stays in Redis when nothing finishes it (a safety net against leaks
 * under `maxmemory-policy noeviction`), in ms: one day. A worker shortens it to `resultTtlMs`
 * once the job is done.
 */
export const INPUT_TTL_MS = 24 * 3600 * 1000;

/** Pool names become BullMQ queue names and metric labels. */
const POOL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Throws `E_INVALID_ARGUMENT` unless `pool` can name a queue (BullMQ forbids `:`). */
export function checkPoolName(pool: string): string {
  if (!POOL_PATTERN.test(pool)) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `pool "${pool}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  return pool;
}

/**
 * Tandem's priority (0..10, higher first, default 5) as a BullMQ priority (1 first, larger later;
 * 0 would mean "no priority", which BullMQ runs before every prioritised job). Every job carries
 * one, so 10 → 1 and 0 → 11.
 */
export function bullPriority(priority: number): number {
  const clamped = Math.min(PRIORITY_MAX, Math.max(PRIORITY_MIN, Math.round(priority)));
  return PRIORITY_MAX + 1 - clamped;
}

/** Key and channel names under one prefix. */
export class RedisKeys {
  readonly prefix: string;

  /** @param prefix BullMQ's key prefix; Tandem's own keys use `<prefix>-…` beside it. */
  constructor(prefix: string = DEFAULT_REDIS_PREFIX) {
    this.prefix = prefix;
  }

  /** A job's input: the `infer` message as one binary frame (tensors as raw bytes). */
  input(jobId: string): string {
    return `${this.prefix}-job:${jobId}:in`;
  }

  /** A job's outcome: a `result`, `error` or `model` message as one binary frame. */
  outcome(jobId: string): string {
    return `${this.prefix}-job:${jobId}:out`;
  }

  /**
   * Set with the outcome (same transaction, same TTL) when a worker refused the job rather than
   * ran it (a missed deadline, bad inputs, a model that failed to load): the gateway that
   * submitted it counts the refusal in its /metrics (a worker's own has no refusals). The outcome
   * frame stays the protocol's `error` message, which has no field for this.
   */
  refused(jobId: string): string {
    return `${this.prefix}-job:${jobId}:refused`;
  }

  /** Set when a job's usage is added, so a job run twice is billed once (see redis-usage.ts). */
  billed(jobId: string): string {
    return `${this.prefix}-job:${jobId}:billed`;
  }

  /** Set when a job is cancelled, so a worker that picks it up later skips it. */
  cancelled(jobId: string): string {
    return `${this.prefix}-job:${jobId}:cancel`;
  }

  /** Owner and client id → `<pool>/<jobId>`, for `resume` through any gateway. */
  index(owner: string, id: string): string {
    // Length-prefixed: an owner containing ':' cannot alias another owner's ids.
    return `${this.prefix}-id:${owner.length}:${owner}:${id}`;
  }

  /** Sorted set of a pool's waiting jobs scored by enqueue time (the oldest-job metric). */
  waiting(pool: string): string {
    return `${this.prefix}-waiting:${pool}`;
  }

  /**
   * BullMQ's list of a queue's jobs without a priority, taken from its right end before any
   * prioritised one: where a job goes back after its worker died.
   */
  wait(pool: string): string {
    return `${this.prefix}:${pool}:wait`;
  }

  /** BullMQ's sorted set of a queue's prioritised jobs, in the order they will run. */
  prioritized(pool: string): string {
    return `${this.prefix}:${pool}:prioritized`;
  }

  /** BullMQ's hash of one job. */
  bullJob(pool: string, jobId: string): string {
    return `${this.prefix}:${pool}:${jobId}`;
  }

  /** BullMQ's sorted set of a queue's failed jobs. */
  failed(pool: string): string {
    return `${this.prefix}:${pool}:failed`;
  }

  /** BullMQ's event stream of a queue. */
  events(pool: string): string {
    return `${this.prefix}:${pool}:events`;
  }

  /** Usage of one owner (API key id): counters per model version (see redis-usage.ts). */
  usage(owner: string): string {
    return `${this.prefix}-usage:${owner}`;
  }

  /** Set of the owners that have a usage hash. */
  get usageOwners(): string {
    return `${this.prefix}-usage-owners`;
  }

  /** Pub/sub channel on which gateways ask workers to cancel a job they hold. */
  get cancelChannel(): string {
    return `${this.prefix}-cancel`;
  }
}

/**
 * Options of an ioredis connection for `url`. Workers and event readers wait out a Redis restart
 * (BullMQ requires `maxRetriesPerRequest: null` for them); a gateway's command connection fails
 * fast instead (`enableOfflineQueue: false`), so a client hears `E_QUEUE_UNAVAILABLE` at once
 * rather than hanging while Redis is away. Both reconnect by themselves.
 */
export function redisOptions(role: 'wait' | 'fail-fast'): RedisOptions {
  return role === 'wait'
    ? { maxRetriesPerRequest: null }
    : { maxRetriesPerRequest: 1, enableOfflineQueue: false };
}

/** Opens an ioredis connection; errors are reported to `onError` (never thrown as events). */
export function connectRedis(
  url: string,
  role: 'wait' | 'fail-fast',
  onError: (error: Error) => void,
): Redis {
  const redis = new Redis(url, redisOptions(role));
  redis.on('error', onError);
  return redis;
}

/** Resolves once a connection is ready, or after `timeoutMs` (false then). */
export function redisReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}

/** Maps a Redis failure to the coded error a client hears. */
export function queueUnavailable(error: unknown): TandemError {
  if (error instanceof TandemError) return error;
  return new TandemError(
    'E_QUEUE_UNAVAILABLE',
    `the job queue cannot be reached: ${error instanceof Error ? error.message : String(error)}`,
    { retryAfterMs: 1000, cause: error },
  );
}
