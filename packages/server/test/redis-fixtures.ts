// Fixtures of the scale-out tests: a real redis-server, a temporary model repository, gateways
// (`tandem serve --redis`) and workers (`tandem worker`) as real processes of the built CLI, BullMQ
// queues opened on the same Redis to look at jobs, and a bounded poll for conditions that no event
// announces (a job becoming active on a worker, a metric after a reconnect).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  startCli,
  startRedis,
  startWorkerCli,
  type CliProcess,
  type RedisOptions,
  type RedisProcess,
} from '@tandem/test-support';

/**
 * Lock and stall-check settings that notice a killed worker within about a second, for the tests
 * that kill workers. Others keep the defaults: on a loaded machine a lock this short can lapse
 * while its worker is merely slow.
 */
export const FAST_FAILOVER = ['--lock-ms', '800', '--stalled-interval-ms', '400'] as const;

/** A Redis, a model repository, and the gateways and workers started on them. */
export class Cluster {
  readonly redis: RedisProcess;
  readonly modelsDir: string;
  readonly #processes = new Set<CliProcess>();
  readonly #queues = new Map<string, Queue>();
  readonly #connections: Redis[] = [];

  private constructor(redis: RedisProcess, modelsDir: string) {
    this.redis = redis;
    this.modelsDir = modelsDir;
  }

  /** Writes models (`setup`), then starts redis-server. */
  static async start(
    setup: (modelsDir: string) => Promise<void>,
    redisOptions: RedisOptions = {},
  ): Promise<Cluster> {
    const modelsDir = await mkdtemp(join(tmpdir(), 'tandem-scale-out-'));
    try {
      await setup(modelsDir);
      return new Cluster(await startRedis(redisOptions), modelsDir);
    } catch (error) {
      await rm(modelsDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Starts a gateway on a free port. */
  async gateway(extra: readonly string[] = []): Promise<CliProcess> {
    const gateway = await startCli([
      'serve',
      '--port',
      '0',
      '--models',
      this.modelsDir,
      '--no-catalog',
      '--quiet',
      '--redis',
      this.redis.url,
      ...extra,
    ]);
    this.#processes.add(gateway);
    return gateway;
  }

  /**
   * Starts a worker (default pool unless `--pool` is among `extra`), with the CLI's lock and
   * stall-check defaults unless `extra` sets them (see FAST_FAILOVER).
   */
  async worker(extra: readonly string[] = []): Promise<CliProcess> {
    const worker = await startWorkerCli([
      '--redis',
      this.redis.url,
      '--models',
      this.modelsDir,
      '--no-catalog',
      '--quiet',
      ...extra,
    ]);
    this.#processes.add(worker);
    return worker;
  }

  /** A BullMQ queue of a pool, to look at its jobs. */
  queue(pool = 'default'): Queue {
    let queue = this.#queues.get(pool);
    if (queue === undefined) {
      const connection = new Redis(this.redis.url, { maxRetriesPerRequest: null });
      connection.on('error', () => undefined);
      this.#connections.push(connection);
      queue = new Queue(pool, { connection, prefix: 'tandem' });
      this.#queues.set(pool, queue);
    }
    return queue;
  }

  /** Kills every process still running, then Redis, and removes the model directory. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#processes].map((process) => process.stop('SIGKILL')));
    await Promise.allSettled([...this.#queues.values()].map((queue) => queue.close()));
    await Promise.allSettled(this.#connections.map((connection) => connection.quit()));
    await this.redis.stop();
    await rm(this.modelsDir, { recursive: true, force: true });
  }
}

/** The process id in a worker's name (`<hostname>:<pid>`, BullMQ's `processedBy`). */
export function pidOfWorker(name: string | undefined): number | undefined {
  const pid = Number(name?.slice(name.lastIndexOf(':') + 1));
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Calls `probe` until it returns something other than undefined; fails after `timeoutMs`. For
 * conditions that no event announces; the interval is short and the timeout only a guard.
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  what: string | (() => string),
  timeoutMs = 30_000,
): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > end)
      throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
