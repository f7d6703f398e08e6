// How long a queued job will take, from measured history. One formula for a single server's model
// host (its own instances and moving averages) and for a scaled-out gateway (the statuses the
// workers report), so a progress bar shows the same kind of ETA either way; and how long a job
// refused by a full queue should wait before it tries again.

import type { ModelEstimates } from '@tandem/shared';

/** What a queued job's ETA depends on besides its place in the queue. */
export interface QueueCapacity {
  /** The model's measured averages; a part that is needed but not measured leaves the ETA unknown. */
  readonly estimates: ModelEstimates;
  /** Instances that will take the queued jobs, one job a run each (ready or starting up). */
  readonly instances: number;
  /** Instances ready now; with none, a cold start comes before the first run. */
  readonly ready: number;
  /**
   * The instance starting up while none is ready, and how long it has been in its stage, in ms:
   * only what remains of its load and warm-up is waited for. Undefined when none is starting (a
   * whole cold start is ahead).
   */
  readonly starting?: { readonly stage: 'loading' | 'warming'; readonly elapsedMs: number };
}

/**
 * Estimated milliseconds until a job with `position` jobs ahead of it (0 = next) is done: the runs
 * ahead of it shared among the instances, its own run, and, while no instance is ready, what
 * remains of a cold start (load and warm-up). Undefined until every part it needs is measured:
 * an ETA is never made of a made-up constant.
 */
export function queuedEtaMs(position: number, capacity: QueueCapacity): number | undefined {
  const run = capacity.estimates.runMs;
  if (run === undefined) return undefined;
  const eta = (Math.floor(position / Math.max(1, capacity.instances)) + 1) * run;
  if (capacity.ready > 0) return eta;
  const cold = coldStartLeftMs(capacity);
  return cold === undefined ? undefined : eta + cold;
}

/**
 * What remains of the cold start ahead of a model's queue, in ms: a whole load and warm-up, or
 * the rest of the one under way. Undefined until both are measured.
 */
function coldStartLeftMs(capacity: QueueCapacity): number | undefined {
  const { loadMs: load, warmupMs: warmup } = capacity.estimates;
  if (load === undefined || warmup === undefined) return undefined;
  const starting = capacity.starting;
  if (starting === undefined) return load + warmup;
  if (starting.stage === 'loading') return Math.max(0, load - starting.elapsedMs) + warmup;
  return Math.max(0, warmup - starting.elapsedMs);
}

/** Least `retryAfterMs` of an `E_BUSY`: a retry sooner than this finds the queue as full. */
export const MIN_RETRY_AFTER_MS = 50;

/**
 * The wait an `E_BUSY` (a full queue) hints at while the model's cold start is not measured yet
 * (its first load ever): there is nothing to derive a wait from, and a load takes hundreds of
 * milliseconds or more. Every later hint comes from measurements.
 */
export const UNMEASURED_RETRY_AFTER_MS = 1000;

/**
 * The `retryAfterMs` of an `E_BUSY` refusing a job because `queued` jobs fill the queue: the time
 * a quarter of them takes to run, shared among the instances (a retry then finds room, and
 * retries from a burst of refusals spread over that time rather than all coming back at the
 * first free slot), plus, while no instance is ready, what remains of the cold start: nothing
 * leaves the queue before it ends. From measured times (a run's, else the warm-up run's); a
 * model never loaded yet gets {@link UNMEASURED_RETRY_AFTER_MS} for what it does not know.
 */
export function busyRetryAfterMs(queued: number, capacity: QueueCapacity): number {
  const run = capacity.estimates.runMs ?? capacity.estimates.warmupMs;
  let wait = run === undefined ? 0 : (queued * run) / Math.max(1, capacity.instances) / 4;
  if (capacity.ready === 0) wait += coldStartLeftMs(capacity) ?? UNMEASURED_RETRY_AFTER_MS;
  else if (run === undefined) wait = UNMEASURED_RETRY_AFTER_MS;
  return Math.max(MIN_RETRY_AFTER_MS, Math.ceil(wait));
}
