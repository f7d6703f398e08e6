// Jobs by owner and id, so a client that reconnects can `resume` and get its outcome. A job stays
// until its outcome is known to have reached a client (the gateway forgets it then) or, at most,
// `resultTtlMs` after it settled. Expiry is one sweep over jobs in settle order, not a timer per
// job: at thousands of jobs a second, a timer each costs more than the rest of the bookkeeping.

import type { Job } from './job.js';

/** Live and recently settled jobs, scoped by owner (API key id). */
export class JobRegistry {
  /** Jobs by owner, then id: two lookups on strings whose hashes V8 keeps, no key to build. */
  readonly #jobs = new Map<string, Map<string, Job>>();
  /** Settled jobs and their expiry times, in settle order (a Map keeps insertion order). */
  readonly #expiring = new Map<Job, number>();
  readonly #resultTtlMs: number;
  readonly #now: () => number;
  #size = 0;
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
    const { owner, id } = job.request;
    let jobs = this.#jobs.get(owner);
    if (jobs === undefined) {
      jobs = new Map();
      this.#jobs.set(owner, jobs);
    }
    const existing = jobs.get(id);
    if (existing !== undefined) {
      if (!existing.settled) return false;
      this.#expiring.delete(existing);
    } else {
      this.#size += 1;
    }
    jobs.set(id, job);
    void job.outcome.then(() => {
      if (jobs.get(id) !== job) return;
      this.#expiring.set(job, this.#now() + this.#resultTtlMs);
      this.#startSweeping();
    });
    return true;
  }

  /** The job with that id, live or settled within the TTL. */
  get(owner: string, id: string): Job | undefined {
    return this.#jobs.get(owner)?.get(id);
  }

  /** Forgets a job (its outcome reached a client). Returns false if it was not held. */
  delete(job: Job): boolean {
    const { owner, id } = job.request;
    const jobs = this.#jobs.get(owner);
    if (jobs?.get(id) !== job) return false;
    jobs.delete(id);
    this.#size -= 1;
    this.#expiring.delete(job);
    return true;
  }

  /** Number of jobs held. */
  get size(): number {
    return this.#size;
  }

  /** Forgets every settled job past its TTL. Runs on its own every so often while any wait. */
  sweep(): void {
    const now = this.#now();
    for (const [job, expiresAt] of this.#expiring) {
      // Same TTL for all, so expiry times rise in settle order: stop at the first live one.
      if (expiresAt > now) break;
      this.delete(job);
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
