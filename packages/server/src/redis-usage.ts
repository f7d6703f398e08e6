// Usage when scaled out. Workers run the jobs, so a gateway's own ledger would stay empty; instead
// each worker adds a job's share of compute to Redis in the same transaction that stores the job's
// outcome (a job is counted exactly once, and a run lost with a dead worker is not billed), and
// every gateway reads the totals back for /v1/usage: the whole cluster's usage, whichever gateway
// a job came in through, kept across gateway and worker restarts (for as long as Redis keeps it).

import type { ChainableCommander, Redis } from 'ioredis';
import { queueUnavailable, type RedisKeys } from './redis-queues.js';
import type { UsageRow, UsageSource } from './usage.js';

/** One finished job's usage, as a worker records it. */
export interface JobUsage {
  /** The job's owner (API key id). */
  readonly owner: string;
  /** The model's name. */
  readonly model: string;
  /** The version that ran. */
  readonly version: string;
  /** The job's share of its run's time (a batch's time split evenly), in seconds. */
  readonly computeSeconds: number;
  /** Whether the job waited for its model to load. */
  readonly coldStart: boolean;
}

/** The counters of a usage row, as hash fields. */
const METRICS = ['computeSeconds', 'jobs', 'coldStarts'] as const;
type Metric = (typeof METRICS)[number];

/** A hash field: the counter, then model and version as JSON (names may hold any character). */
function field(metric: Metric, model: string, version: string): string {
  return `${metric} ${JSON.stringify([model, version])}`;
}

/**
 * KEYS: the job's billed mark, the owner's usage hash, the set of owners. ARGV: the mark's TTL in
 * ms, the owner, the compute field and its seconds, the jobs field, the cold-starts field ('' for
 * a warm job). Adds nothing when the mark exists: the job was billed already.
 */
const ADD_USAGE_SCRIPT = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[6], 1) end
redis.call('SADD', KEYS[3], ARGV[2])
return 1
`;

/** How long a job's billed mark is kept: longer than any job is re-run after a lost lock, in ms. */
const BILLED_TTL_MS = 24 * 3600 * 1000;

/**
 * Adds a job's usage to a transaction (or pipeline) that is about to run, once per job id: a job
 * run twice (its worker lost its lock, stalled past it, and another worker ran the job again)
 * stores its outcome twice but is billed once.
 */
export function addUsage(
  tx: ChainableCommander,
  keys: RedisKeys,
  jobId: string,
  usage: JobUsage,
): void {
  const { model, version } = usage;
  tx.eval(
    ADD_USAGE_SCRIPT,
    3,
    keys.billed(jobId),
    keys.usage(usage.owner),
    keys.usageOwners,
    BILLED_TTL_MS,
    usage.owner,
    field('computeSeconds', model, version),
    usage.computeSeconds,
    field('jobs', model, version),
    usage.coldStart ? field('coldStarts', model, version) : '',
  );
}

/** The cluster's usage rows from Redis (what every gateway's /v1/usage serves). */
export class RedisUsage implements UsageSource {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;

  /** Reads through `redis` (a gateway's command connection) under `keys`' prefix. */
  constructor(redis: Redis, keys: RedisKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /**
   * Every row, or one key's, ordered by key, model and version. Rejects with the retryable
   * `E_QUEUE_UNAVAILABLE` while Redis cannot be reached.
   */
  async rows(key?: string): Promise<UsageRow[]> {
    try {
      return await this.#read(key);
    } catch (error) {
      throw queueUnavailable(error);
    }
  }

  async #read(key: string | undefined): Promise<UsageRow[]> {
    const owners =
      key === undefined ? (await this.#redis.smembers(this.#keys.usageOwners)).sort() : [key];
    const pipeline = this.#redis.pipeline();
    for (const owner of owners) pipeline.hgetall(this.#keys.usage(owner));
    const replies = owners.length === 0 ? [] : ((await pipeline.exec()) ?? []);
    const rows: UsageRow[] = [];
    owners.forEach((owner, index) => {
      const [error, hash] = replies[index] ?? [null, {}];
      if (error !== null) throw error;
      rows.push(...parseUsageHash(owner, hash as Record<string, string>));
    });
    return rows;
  }
}

/** One owner's rows from its usage hash; fields it does not recognise are ignored. */
export function parseUsageHash(owner: string, hash: Record<string, string>): UsageRow[] {
  const rows = new Map<string, { -readonly [K in keyof UsageRow]: UsageRow[K] }>();
  for (const [name, value] of Object.entries(hash)) {
    const space = name.indexOf(' ');
    const metric = name.slice(0, space) as Metric;
    if (space < 0 || !METRICS.includes(metric)) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(name.slice(space + 1));
    } catch {
      continue;
    }
    if (!Array.isArray(parsed) || parsed.length !== 2) continue;
    const [model, version] = parsed as unknown[];
    if (typeof model !== 'string' || typeof version !== 'string') continue;
    const id = JSON.stringify([model, version]);
    let row = rows.get(id);
    if (row === undefined) {
      row = { key: owner, model, version, computeSeconds: 0, jobs: 0, coldStarts: 0 };
      rows.set(id, row);
    }
    const count = Number(value);
    row[metric] = Number.isFinite(count) ? count : 0;
  }
  return [...rows.values()].sort(
    (a, b) => compare(a.model, b.model) || compare(a.version, b.version),
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
