// Per-key limits shared by gateways, in a real redis-server: two limiters on one Redis stand for
// two gateways.

import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TandemError } from '@tandem/shared';
import { rejectionCode, startRedis, type RedisProcess } from '@tandem/test-support';
import type { ApiKeyRecord } from '../src/api-keys.js';
import { RedisKeyLimits } from '../src/redis-key-limits.js';
import { connectRedis, redisReady } from '../src/redis-queues.js';
import { pollUntil } from './redis-fixtures.js';

const sha256 = '0'.repeat(64);

describe('RedisKeyLimits', () => {
  let redis: RedisProcess;
  const connections: Redis[] = [];
  const limiters: RedisKeyLimits[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    for (const limiter of limiters) limiter.close();
    for (const connection of connections) connection.disconnect();
    await redis.stop();
  });

  /** A limiter with its own connection, as each gateway has. */
  const gateway = async (leaseMs?: number): Promise<RedisKeyLimits> => {
    const connection = connectRedis(redis.url, 'fail-fast', () => undefined);
    connections.push(connection);
    expect(await redisReady(connection, 10_000)).toBe(true);
    const limiter = new RedisKeyLimits(connection, 'limits-test', leaseMs);
    limiters.push(limiter);
    return limiter;
  };
  const failure = (promise: Promise<unknown>): Promise<TandemError> =>
    promise.then(
      () => {
        throw new Error('expected a refusal');
      },
      (error: unknown) => error as TandemError,
    );

  it('counts one key across gateways: in-flight jobs, then a slot given back through either', async () => {
    const [a, b] = [await gateway(), await gateway()];
    const key: ApiKeyRecord = { id: 'carol', sha256, maxConcurrent: 2 };
    const first = await a.acquire(key);
    const second = await b.acquire(key);
    const busy = await failure(a.acquire(key));
    expect(busy.code).toBe('E_RATE_LIMITED');
    expect(busy.retryAfterMs).toBeGreaterThan(0);
    expect(await rejectionCode(b.acquire(key))).toBe('E_RATE_LIMITED');
    // A release goes out on its gateway's connection, unawaited: the next acquire through the
    // same gateway comes after it; through the other, it may overtake it.
    first();
    first(); // a second call must not free a slot it does not hold
    const third = await a.acquire(key);
    expect(await rejectionCode(a.acquire(key))).toBe('E_RATE_LIMITED');
    // Other keys have their own count.
    await a.acquire({ id: 'carol:2', sha256, maxConcurrent: 1 });
    second();
    third();
    await pollUntil(
      async () => ((await rejectionCode(a.acquire(key))) === 'ok' ? true : undefined),
      'a free slot',
    );
  });

  it('spends one bucket of tokens per key across gateways, and says when the next comes', async () => {
    const [a, b] = [await gateway(), await gateway()];
    // Three a minute: the next token 20 s after the bucket runs dry.
    const key: ApiKeyRecord = { id: 'bob', sha256, ratePerMinute: 3 };
    await a.acquire(key);
    await b.acquire(key);
    await a.acquire(key);
    for (const limiter of [a, b]) {
      const limited = await failure(limiter.acquire(key));
      expect(limited.code).toBe('E_RATE_LIMITED');
      expect(limited.retryAfterMs).toBeGreaterThan(15_000);
      expect(limited.retryAfterMs).toBeLessThanOrEqual(20_000);
    }
  });

  it('takes neither a token nor a slot when it refuses', async () => {
    const a = await gateway();
    const key: ApiKeyRecord = { id: 'dave', sha256, ratePerMinute: 2, maxConcurrent: 1 };
    const held = await a.acquire(key);
    // Refused for concurrency: had it spent a token, the bucket (2 a minute) would be empty now.
    expect(await rejectionCode(a.acquire(key))).toBe('E_RATE_LIMITED');
    held();
    const again = await a.acquire(key);
    again();
    // The bucket is empty now: refused for the rate, and no slot taken.
    const limited = await failure(a.acquire(key));
    expect(limited.retryAfterMs).toBeGreaterThan(1000);
    const slots = connections.at(-1) as Redis;
    expect(await slots.zcard('limits-test-limits:slots:4:dave')).toBe(0);
  });

  it("frees a dead gateway's slots when their lease runs out, and keeps a live one's renewed", async () => {
    const [dying, living] = [await gateway(600), await gateway(600)];
    const key: ApiKeyRecord = { id: 'erin', sha256, maxConcurrent: 2 };
    await dying.acquire(key);
    await living.acquire(key);
    const heldSince = performance.now();
    // The dying gateway stops renewing (its process is gone); the living one goes on.
    dying.close();
    const started = performance.now();
    await pollUntil(
      async () => ((await rejectionCode(living.acquire(key))) === 'ok' ? true : undefined),
      "the dead gateway's slot",
      10_000,
    );
    expect(performance.now() - started).toBeGreaterThan(300);
    // What is tested is a lease's length: wait out three of them since the living gateway took
    // its first slot. Renewed all along, it still holds both: the key is full.
    await pollUntil(
      () => (performance.now() - heldSince > 1800 ? true : undefined),
      'three leases to pass',
    );
    expect(await rejectionCode(living.acquire(key))).toBe('E_RATE_LIMITED');
  });

  it("keeps a gateway's slots when another gateway with a shorter lease uses the same key", async () => {
    // A rolling change of --key-lease-ms: the short-lease gateway must not expire the set early.
    const [long, short] = [await gateway(3000), await gateway(200)];
    const key: ApiKeyRecord = { id: 'gina', sha256, maxConcurrent: 2 };
    await long.acquire(key);
    const heldSince = performance.now();
    (await short.acquire(key))();
    await pollUntil(
      () => (performance.now() - heldSince > 1000 ? true : undefined),
      'twice the short lease, and more',
    );
    const second = await short.acquire(key);
    expect(await rejectionCode(short.acquire(key))).toBe('E_RATE_LIMITED');
    second();
  });

  it('refuses with the retryable E_QUEUE_UNAVAILABLE while Redis cannot be reached', async () => {
    const away = connectRedis('redis://127.0.0.1:1', 'fail-fast', () => undefined);
    connections.push(away);
    const limiter = new RedisKeyLimits(away, 'limits-test');
    limiters.push(limiter);
    expect(await rejectionCode(limiter.acquire({ id: 'x', sha256, maxConcurrent: 1 }))).toBe(
      'E_QUEUE_UNAVAILABLE',
    );
  });
});
