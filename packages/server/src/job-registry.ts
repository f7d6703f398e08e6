// Jobs by owner and id, kept for `resultTtlMs` after they settle, so a client that reconnects can
// `resume` and get its outcome. A resumed outcome is handed over once and then forgotten.

import type { Job } from './job.js';

/** Live and recently settled jobs, scoped by owner (API key id). */
export class JobRegistry {
  readonly #jobs = new Map<string, Job>();
  readonly #resultTtlMs: number;

  /** @param resultTtlMs how long a settled job's outcome stays available to `resume`. */
  constructor(resultTtlMs: number) {
    this.#resultTtlMs = resultTtlMs;
  }

  /** Registers a job; returns false when the owner already has a live job with that id. */
  add(job: Job): boolean {
    const key = keyOf(job.request.owner, job.request.id);
    const existing = this.#jobs.get(key);
    if (existing !== undefined && !existing.settled) return false;
    this.#jobs.set(key, job);
    void job.outcome.then(() => {
      const timer = setTimeout(() => {
        if (this.#jobs.get(key) === job) this.#jobs.delete(key);
      }, this.#resultTtlMs);
      timer.unref();
    });
    return true;
  }

  /** The job with that id, live or settled within the TTL. */
  get(owner: string, id: string): Job | undefined {
    return this.#jobs.get(keyOf(owner, id));
  }

  /** Forgets a job (after its outcome was handed to a resumed connection). */
  delete(job: Job): void {
    const key = keyOf(job.request.owner, job.request.id);
    if (this.#jobs.get(key) === job) this.#jobs.delete(key);
  }

  /** Number of jobs held. */
  get size(): number {
    return this.#jobs.size;
  }
}

function keyOf(owner: string, id: string): string {
  return `${owner}\u0000${id}`;
}
