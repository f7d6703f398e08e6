// Jobs by owner and id, so a client that reconnects can `resume` and get its outcome. A job stays
// until its outcome is known to have reached a client (the gateway forgets it then) or, at most,
// `resultTtlMs` after it settled. Expiry is one sweep over jobs in settle order, not a timer per
// job: at thousands of jobs a second, a timer each costs more than the rest of the bookkeeping.

import type { Job } from './job.js';

/** Live and recently settled jobs, scoped by owner (API key id). */
export class JobRegistry {
  readonly #jobs = new Map<string, Job>();
  /** Settled jobs' keys and expiry times, in settle order (a Map keeps insertion order). */
  readonly #expiring = new Map<string, number>();
  readonly #resultTtlMs: number;
  readonly #now: () => number;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  /**
   * @param resultTtlMs how long a settled job's outcome stays available to `resume`.
   * @param now the clock, in ms. @default performance.now
   */
  constructor(resultTtlMs: number, now: () => number = () => performance.now()) {
    this.#resultTtlMs = resultTtlMs;
    this.#now = now;
  }

  /** Registers a job; returns false when the owner already has a live job with that id. */
  add(job: Job): boolean {
    const key = keyOf(job.request.owner, job.request.id);
    const existing = this.#jobs.get(key);
    if (existing !== undefined && !existing.settled) return false;
    this.#jobs.set(key, job);
    this.#expiring.delete(key);
    void job.outcome.then(() => {
      if (this.#jobs.get(key) !== job) return;
      this.#expiring.set(key, this.#now() + this.#resultTtlMs);
      this.#startSweeping();
    });
    return true;
  }

  /** The job with that id, live or settled within the TTL. */
  get(owner: string, id: string): Job | undefined {
    return this.#jobs.get(keyOf(owner, id));
  }

  /** Forgets a job (its outcome reached a client). Returns false if it was not held. */
  delete(job: Job): boolean {
    const key = keyOf(job.request.owner, job.request.id);
    if (this.#jobs.get(key) !== job) return false;
    this.#jobs.delete(key);
    this.#expiring.delete(key);
    return true;
  }

  /** Number of jobs held. */
  get size(): number {
    return this.#jobs.size;
  }

  /** Forgets every settled job past its TTL. Runs on its own every so often while any wait. */
  sweep(): void {
    const now = this.#now();
    for (const [key, expiresAt] of this.#expiring) {
      // Same TTL for all, so expiry times rise in settle order: stop at the first live one.
      if (expiresAt > now) break;
      this.#expiring.delete(key);
      this.#jobs.delete(key);
    }
    if (this.#expiring.size === 0 && this.#sweeper !== undefined) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  #startSweeping(): void {
    if (this.#sweeper !== undefined) return;
    // A tenth of the TTL (at most a second): outcomes live at most 10% (or 1 s) past their TTL.
    this.#sweeper = setInterval(
      () => this.sweep(),
      Math.max(1, Math.min(1000, this.#resultTtlMs / 10)),
    );
    this.#sweeper.unref();
  }
}

function keyOf(owner: string, id: string): string {
  return `${owner}\u0000${id}`;
}
