// Per-second billing view: compute-seconds, jobs and cold starts per API key and model, as served
// at /v1/usage. A batched run's time is split evenly among its jobs.

import type { Job } from './job.js';

/** Usage of one model by one key. */
export interface UsageRow {
  readonly key: string;
  readonly model: string;
  readonly version: string;
  readonly computeSeconds: number;
  readonly jobs: number;
  readonly coldStarts: number;
}

/** Accumulates usage since the server started. */
export class UsageLedger {
  readonly #rows = new Map<string, { -readonly [K in keyof UsageRow]: UsageRow[K] }>();

  /** Records one run (possibly a batch of several jobs) of `runMs` milliseconds. */
  recordRun(model: string, version: string, runMs: number, jobs: readonly Job[]): void {
    const share = runMs / 1000 / Math.max(1, jobs.length);
    for (const job of jobs) {
      const key = job.request.owner;
      const id = `${key}\u0000${model}\u0000${version}`;
      const row = this.#rows.get(id) ?? {
        key,
        model,
        version,
        computeSeconds: 0,
        jobs: 0,
        coldStarts: 0,
      };
      row.computeSeconds += share;
      row.jobs += 1;
      if (job.coldStart) row.coldStarts += 1;
      this.#rows.set(id, row);
    }
  }

  /** Every row, optionally only one key's. */
  rows(key?: string): UsageRow[] {
    const rows = [...this.#rows.values()].map((row) => ({ ...row }));
    return key === undefined ? rows : rows.filter((row) => row.key === key);
  }
}
