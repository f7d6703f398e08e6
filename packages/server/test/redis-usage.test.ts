// The cluster's usage in Redis: what a worker adds with a job's outcome, read back as rows, against
// a real redis-server.

import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rejectionCode, startRedis, type RedisProcess } from '@tandem/test-support';
import { RedisKeys, connectRedis, redisReady } from '../src/redis-queues.js';
import { RedisUsage, addUsage, parseUsageHash, type JobUsage } from '../src/redis-usage.js';

describe('parseUsageHash', () => {
  it('reads counters per model version, whatever characters the names hold', () => {
    const names = JSON.stringify(['a model\nwith "quotes"', 'v 1']);
    expect(
      parseUsageHash('alice', {
        [`computeSeconds ${names}`]: '1.5',
        [`jobs ${names}`]: '3',
        [`coldStarts ${names}`]: '1',
        [`jobs ${JSON.stringify(['b', '2'])}`]: '7',
      }),
    ).toEqual([
      {
        key: 'alice',
        model: 'a model\nwith "quotes"',
        version: 'v 1',
        computeSeconds: 1.5,
        jobs: 3,
        coldStarts: 1,
      },
      { key: 'alice', model: 'b', version: '2', computeSeconds: 0, jobs: 7, coldStarts: 0 },
    ]);
  });

  it('ignores fields it does not know (another version of Tandem may add some)', () => {
    expect(
      parseUsageHash('bob', {
        'energyJoules ["m","1"]': '5',
        'jobs not-json': '1',
        'jobs ["only-one"]': '1',
        'jobs [1,2]': '1',
        nospace: '1',
        'jobs ["m","1"]': 'NaN',
      }),
    ).toEqual([
      { key: 'bob', model: 'm', version: '1', computeSeconds: 0, jobs: 0, coldStarts: 0 },
    ]);
  });
});

describe('RedisUsage', () => {
  let redis: RedisProcess;
  let connection: Redis;
  const keys = new RedisKeys('usage-test');

  beforeAll(async () => {
    redis = await startRedis();
    connection = connectRedis(redis.url, 'fail-fast', () => undefined);
    expect(await redisReady(connection, 10_000)).toBe(true);
  });

  afterAll(async () => {
    connection.disconnect();
    await redis.stop();
  });

  let jobs = 0;
  const record = async (usage: JobUsage, jobId = `job-${jobs++}`): Promise<void> => {
    const tx = connection.multi();
    addUsage(tx, keys, jobId, usage);
    await tx.exec();
  };

  it('adds jobs up per owner and model version; one owner reads only its own rows', async () => {
    const usage = new RedisUsage(connection, keys);
    expect(await usage.rows()).toEqual([]);
    await record({
      owner: 'carol',
      model: 'det',
      version: '1',
      computeSeconds: 0.25,
      coldStart: true,
    });
    await record({
      owner: 'carol',
      model: 'det',
      version: '1',
      computeSeconds: 0.5,
      coldStart: false,
    });
    await record({
      owner: 'alice',
      model: 'rec',
      version: '2',
      computeSeconds: 0.125,
      coldStart: false,
    });
    const carol = {
      key: 'carol',
      model: 'det',
      version: '1',
      computeSeconds: 0.75,
      jobs: 2,
      coldStarts: 1,
    };
    const alice = {
      key: 'alice',
      model: 'rec',
      version: '2',
      computeSeconds: 0.125,
      jobs: 1,
      coldStarts: 0,
    };
    expect(await usage.rows()).toEqual([alice, carol]);
    expect(await usage.rows('carol')).toEqual([carol]);
    expect(await usage.rows('nobody')).toEqual([]);
  });

  it('bills a job once however many times its outcome is stored (a job a second worker re-ran)', async () => {
    const usage = new RedisUsage(connection, keys);
    const job = { owner: 'frank', model: 'det', version: '1', computeSeconds: 2, coldStart: true };
    await record(job, 'rerun');
    await record({ ...job, computeSeconds: 3, coldStart: false }, 'rerun');
    expect(await usage.rows('frank')).toEqual([
      { key: 'frank', model: 'det', version: '1', computeSeconds: 2, jobs: 1, coldStarts: 1 },
    ]);
  });

  it('rejects with the retryable E_QUEUE_UNAVAILABLE while Redis is away', async () => {
    const away = connectRedis('redis://127.0.0.1:1', 'fail-fast', () => undefined);
    try {
      expect(await rejectionCode(new RedisUsage(away, keys).rows())).toBe('E_QUEUE_UNAVAILABLE');
    } finally {
      away.disconnect();
    }
  });
});
