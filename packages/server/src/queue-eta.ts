// How long a queued job will take, from measured history. One formula for a single server's model
// host (its own instances and moving averages) and for a scaled-out gateway (the statuses the
// workers report), so a progress bar shows the same kind of ETA either way.

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
  let eta = (Math.floor(position / Math.max(1, capacity.instances)) + 1) * run;
  if (capacity.ready === 0) {
    const { loadMs: load, warmupMs: warmup } = capacity.estimates;
    if (load === undefined || warmup === undefined) return undefined;
    const starting = capacity.starting;
    if (starting === undefined) eta += load + warmup;
    else if (starting.stage === 'loading') eta += Math.max(0, load - starting.elapsedMs) + warmup;
    else eta += Math.max(0, warmup - starting.elapsedMs);
  }
  return eta;
}
