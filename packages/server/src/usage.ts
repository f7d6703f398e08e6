// Per-second billing view: compute-seconds, jobs and cold starts per API key and model, as served
// at /v1/usage. A batched run's time is split evenly among its jobs.

import type { Job } from './job.js';

/** Usage of one model by one key. */
export interface UsageRow {
  /** The API key's id (`anonymous` on a server without keys). */
  readonly key: string;
  /** The model's name. */
  readonly model: string;
  /** The model's version. */
  readonly version: string;
  /** Run time of the key's jobs, in seconds; a batched run's time is split evenly among its jobs. */
  readonly computeSeconds: number;
  /** Jobs that ran (a job refused before its run is not counted). */
  readonly jobs: number;
  /** Of those, jobs that waited for their model to load. */
  readonly coldStarts: number;
}

/**
 * Where `/v1/usage` reads: a server's own {@link UsageLedger}, or, scaled out, the totals the
 * workers keep in Redis (the same on every gateway).
 */
export interface UsageSource {
  /** Every row, or only those of one key. */
  rows(key?: string): UsageRow[] | Promise<UsageRow[]>;
}

type MutableRow = { -readonly [K in keyof UsageRow]: UsageRow[K] };

/** Accumulates usage since the server started. */
export class UsageLedger implements UsageSource {
  /** Rows by key, then model, then version: lookups on strings V8 keeps hashed, no key to build. */
  readonly #rows = new Map<string, Map<string, Map<string, MutableRow>>>();

  /** Records one run (possibly a batch of several jobs) of `runMs` milliseconds. */
  recordRun(model: string, version: string, runMs: number, jobs: readonly Job[]): void {
    const share = runMs / 1000 / Math.max(1, jobs.length);
    for (const job of jobs) {
      const row = this.#row(job.request.owner, model, version);
      row.computeSeconds += share;
      row.jobs += 1;
      if (job.coldStart) row.coldStarts += 1;
    }
  }

  /** Every row, optionally only one key's. */
  rows(key?: string): UsageRow[] {
    const rows: UsageRow[] = [];
    for (const [owner, models] of this.#rows) {
      if (key !== undefined && owner !== key) continue;
      for (const versions of models.values())
        for (const row of versions.values()) rows.push({ ...row });
    }
    return rows;
  }

  #row(key: string, model: string, version: string): MutableRow {
    let models = this.#rows.get(key);
    if (models === undefined)
      this.#rows.set(key, (models = new Map<string, Map<string, MutableRow>>()));
    let versions = models.get(model);
    if (versions === undefined) models.set(model, (versions = new Map<string, MutableRow>()));
    let row = versions.get(version);
    if (row === undefined) {
      row = { key, model, version, computeSeconds: 0, jobs: 0, coldStarts: 0 };
      versions.set(version, row);
    }
    return row;
  }
}
