// Per-key limits shared by every gateway of a scaled-out deployment. In one process the limits are
// counters in memory (api-keys.ts); behind a load balancer, N gateways counting on their own would
// let a key through N times its limits. Here one Lua script per job checks and takes both, in
// Redis, atomically: a token from the key's bucket (`ratePerMinute`, refilled by Redis's own clock,
// so the gateways' clocks do not matter) and a concurrency slot (`maxConcurrent`). A slot is a
// lease in a sorted set: the gateway that took it renews it while the job is in flight and removes
// it when the job ends, and a gateway that dies loses its slots when their leases run out, rather
// than holding them forever.

import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { TandemError } from '@tandem/shared';
import type { ApiKeyRecord, SharedKeyLimits } from './api-keys.js';
import { queueUnavailable } from './redis-queues.js';

/** How long a concurrency slot outlives a gateway that stopped renewing it, in ms. @default 30000 */
export const DEFAULT_KEY_LEASE_MS = 30_000;

/**
 * KEYS: the key's slot set, the key's token bucket. ARGV: maxConcurrent (0: none), ratePerMinute
 * (0: none), the slot's member, the lease in ms. Returns {0} when both were taken, {1, in flight}
 * when the key has maxConcurrent jobs in flight, {2, retry after ms} when its bucket is empty;
 * neither is taken on a refusal.
 */
const ACQUIRE_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local lease = tonumber(ARGV[4])
if max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local inflight = redis.call('ZCARD', KEYS[1])
  if inflight >= max then return {1, inflight} end
end
if rate > 0 then
  local perMs = rate / 60000
  local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or rate
  local at = tonumber(bucket[2]) or now
  tokens = math.min(rate, tokens + math.max(0, now - at) * perMs)
  if tokens < 1 then
    return {2, math.ceil((1 - tokens) / perMs)}
  end
  tokens = tokens - 1
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', tostring(now))
  -- A full bucket is the same as none: let it go once it would have refilled.
  redis.call('PEXPIRE', KEYS[2], math.ceil((rate - tokens) / perMs) + 1000)
end
if max > 0 then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  -- Only ever later: a gateway with a shorter lease must not cut another's slots short.
  if redis.call('PTTL', KEYS[1]) < lease * 2 then redis.call('PEXPIRE', KEYS[1], lease * 2) end
end
return {0}
`;

/** Renews leases that exist (XX: a slot already given back or expired is not revived). */
const RENEW_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[i - 1], 'XX', now + lease, ARGV[i])
  if redis.call('PTTL', KEYS[i - 1]) < lease * 2 then redis.call('PEXPIRE', KEYS[i - 1], lease * 2) end
end
return 0
`;

/** Per-key rate and concurrency limits in Redis, one count for every gateway. */
export class RedisKeyLimits implements SharedKeyLimits {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #leaseMs: number;
  /** Slots this gateway holds: member → the key's slot set. */
  readonly #held = new Map<string, string>();
  readonly #renewTimer: ReturnType<typeof setInterval>;
  readonly #gateway = randomUUID();
  #next = 0;

  /**
   * @param redis a gateway's command connection (fails fast while Redis is away)
   * @param prefix Tandem's key prefix (`<prefix>-limits:…` keys)
   * @param leaseMs how long a slot outlives a gateway that stopped renewing it
   */
  constructor(redis: Redis, prefix: string, leaseMs = DEFAULT_KEY_LEASE_MS) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#leaseMs = leaseMs;
    // Renewed three times per lease, so one or two missed renewals (a slow Redis) lose nothing.
    this.#renewTimer = setInterval(() => void this.#renew(), Math.max(10, leaseMs / 3));
    this.#renewTimer.unref();
  }

  /**
   * Takes a token and a slot for one job of `record`'s key, or throws `E_RATE_LIMITED` (with
   * `retryAfterMs`) and takes neither, or `E_QUEUE_UNAVAILABLE` while Redis cannot be reached.
   * Resolves with the function that gives the slot back (once).
   */
  async acquire(record: ApiKeyRecord): Promise<() => void> {
    const slots = this.#key('slots', record.id);
    const member = `${this.#gateway}:${this.#next++}`;
    let reply: unknown;
    try {
      reply = await this.#redis.eval(
        ACQUIRE_SCRIPT,
        2,
        slots,
        this.#key('bucket', record.id),
        record.maxConcurrent ?? 0,
        record.ratePerMinute ?? 0,
        member,
        this.#leaseMs,
      );
    } catch (error) {
      throw queueUnavailable(error);
    }
    const [verdict, value] = reply as [number, number?];
    if (verdict === 1) {
      throw new TandemError(
        'E_RATE_LIMITED',
        `key "${record.id}" already has ${value ?? '?'} jobs in flight across the cluster (limit ${record.maxConcurrent ?? '?'})`,
        { retryAfterMs: 100 },
      );
    }
    if (verdict === 2) {
      throw new TandemError(
        'E_RATE_LIMITED',
        `key "${record.id}" is over ${record.ratePerMinute ?? '?'} jobs per minute`,
        { retryAfterMs: Math.max(1, value ?? 1000) },
      );
    }
    if (record.maxConcurrent === undefined) return () => undefined;
    this.#held.set(member, slots);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held.delete(member);
      // Not awaited: a slot Redis could not remove now runs out with its lease.
      this.#redis.zrem(slots, member).catch(() => undefined);
    };
  }

  /** Stops renewing; the slots still held run out with their leases. */
  close(): void {
    clearInterval(this.#renewTimer);
  }

  async #renew(): Promise<void> {
    if (this.#held.size === 0) return;
    const members = [...this.#held.keys()];
    const sets = members.map((member) => this.#held.get(member) as string);
    try {
      await this.#redis.eval(RENEW_SCRIPT, sets.length, ...sets, this.#leaseMs, ...members);
    } catch {
      // Redis away: the next renewal tries again, well within the lease.
    }
  }

  #key(kind: 'slots' | 'bucket', id: string): string {
    // Length-prefixed: an id containing ':' cannot alias another key's entries.
    return `${this.#prefix}-limits:${kind}:${id.length}:${id}`;
  }
}
