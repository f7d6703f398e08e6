// API keys: a JSON file of sha256-hashed keys (the server never stores or logs a key itself), each
// with optional per-key limits. Keys are compared by hash in constant time.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  TandemError,
  at,
  expectArray,
  expectInteger,
  expectRecord,
  expectString,
  optional,
  type ParseContext,
} from '@tandem/shared';

/** One key as stored in the key file. */
export interface ApiKeyRecord {
  /** A name for the key: used as the job owner, in usage reports and metrics; never secret. */
  readonly id: string;
  /** Lower-case hex sha256 of the key. */
  readonly sha256: string;
  /**
   * Jobs this key may submit per minute, jobs refused after submission included (see
   * {@link ApiKeys.acquire}). @default unlimited
   */
  readonly ratePerMinute?: number;
  /** Jobs this key may have in flight (queued or running) at once. @default unlimited */
  readonly maxConcurrent?: number;
}

/** A key's stored hash: 64 lower-case hex digits. */
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** The hash stored in a key file for `key` (what `tandem hash-key` prints). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Parses a key file's JSON: `{ "keys": [{ "id", "sha256", "ratePerMinute"?, "maxConcurrent"? }] }`. */
export function parseApiKeyFile(value: unknown, path: string): ApiKeyRecord[] {
  const ctx: ParseContext = { path, code: 'E_INVALID_ARGUMENT' };
  const keys = expectArray(expectRecord(value, ctx).keys, at(ctx, 'keys'), 100_000);
  const ids = new Set<string>();
  return keys.map((item, index) => {
    const c = at(at(ctx, 'keys'), index);
    const record = expectRecord(item, c);
    const id = expectString(record.id, at(c, 'id'), 128);
    if (ids.has(id))
      throw new TandemError('E_INVALID_ARGUMENT', `${c.path}.id: duplicate id "${id}"`);
    ids.add(id);
    const sha256 = expectString(record.sha256, at(c, 'sha256'), 64);
    if (!SHA256_PATTERN.test(sha256)) {
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `${c.path}.sha256: expected 64 lower-case hex digits`,
      );
    }
    const out: { -readonly [K in keyof ApiKeyRecord]: ApiKeyRecord[K] } = { id, sha256 };
    const rate = optional(record.ratePerMinute, at(c, 'ratePerMinute'), (v, cc) =>
      expectInteger(v, cc, 1, 1e9),
    );
    const concurrent = optional(record.maxConcurrent, at(c, 'maxConcurrent'), (v, cc) =>
      expectInteger(v, cc, 1, 1e6),
    );
    if (rate !== undefined) out.ratePerMinute = rate;
    if (concurrent !== undefined) out.maxConcurrent = concurrent;
    return out;
  });
}

/** Reads and parses a key file. */
export function loadApiKeyFile(path: string): ApiKeyRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new TandemError('E_INVALID_ARGUMENT', `cannot read the API key file ${path}`, {
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TandemError('E_INVALID_ARGUMENT', `the API key file ${path} is not JSON`, {
      cause: error,
    });
  }
  return parseApiKeyFile(json, path);
}

/** The owner of jobs on a server without keys. */
export const ANONYMOUS: ApiKeyRecord = { id: 'anonymous', sha256: '0'.repeat(64) };

/**
 * Limits kept outside this process, for every gateway of a deployment at once (scale-out: in
 * Redis). Same contract as {@link ApiKeys.acquire}, asynchronously.
 */
export interface SharedKeyLimits {
  /** Takes a token and a slot of `record`'s limits, or rejects with `E_RATE_LIMITED` and takes neither. */
  acquire(record: ApiKeyRecord): Promise<() => void>;
}

/** Verifies keys and enforces per-key rate and concurrency limits. */
export class ApiKeys {
  readonly #records: readonly { record: ApiKeyRecord; digest: Buffer }[];
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #inflight = new Map<string, number>();
  #shared: SharedKeyLimits | undefined;

  /** Throws `E_INVALID_ARGUMENT` for a record whose sha256 is not 64 lower-case hex digits. */
  constructor(records: readonly ApiKeyRecord[]) {
    // Records given in code skip parseApiKeyFile: a malformed hash (say, the key itself) would
    // make timingSafeEqual throw on every request instead of failing once, here, at start-up.
    for (const record of records) {
      if (!SHA256_PATTERN.test(record.sha256)) {
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          `API key "${record.id}": sha256 must be 64 lower-case hex digits (see hashApiKey)`,
        );
      }
    }
    this.#records = records.map((record) => ({
      record,
      digest: Buffer.from(record.sha256, 'hex'),
    }));
  }

  /** Whether callers must present a key. */
  get required(): boolean {
    return this.#records.length > 0;
  }

  /**
   * The record for a presented key, ANONYMOUS when no keys are configured, or undefined when the
   * key is missing or wrong.
   */
  verify(key: string | undefined): ApiKeyRecord | undefined {
    if (!this.required) return ANONYMOUS;
    if (key === undefined || key.length === 0) return undefined;
    const digest = createHash('sha256').update(key, 'utf8').digest();
    let found: ApiKeyRecord | undefined;
    // Compare against every record so timing does not reveal which one matched.
    for (const { record, digest: stored } of this.#records) {
      if (timingSafeEqual(digest, stored)) found = record;
    }
    return found;
  }

  /**
   * Counts limits in `shared` from now on instead of in this process (a scaled-out gateway: every
   * gateway then counts against the same limits).
   */
  share(shared: SharedKeyLimits): void {
    this.#shared = shared;
  }

  /**
   * Takes one job's share of a key's limits: a rate token and a concurrency slot. Throws
   * `E_RATE_LIMITED` (with `retryAfterMs`) when the key has `maxConcurrent` jobs in flight or no
   * token left, and then takes neither. Returns the function that gives the slot back (once; later
   * calls do nothing): at once for a key without limits or with limits kept in this process, and as
   * a promise when they are shared (see {@link ApiKeys.share}; it rejects instead of throwing).
   *
   * The front doors call it before the dispatcher checks the job, so a job refused after it (an
   * unknown model, inputs that do not fit the model, a full queue) has spent its token: the rate
   * bounds requests, not successful jobs, as most APIs' rate limits do, and a flood of bad
   * requests is not free. The token is never given back. The slot is, by the caller: at once for
   * a refused job, when it ends for an accepted one. Limits are this object's, so per process: N
   * gateways behind a load balancer let a key through up to N times its limits, unless they share
   * them.
   */
  acquire(record: ApiKeyRecord, now = performance.now()): (() => void) | Promise<() => void> {
    if (record.maxConcurrent === undefined && record.ratePerMinute === undefined) return NOTHING;
    if (this.#shared !== undefined) return this.#shared.acquire(record);
    return this.#acquireHere(record, now);
  }

  #acquireHere(record: ApiKeyRecord, now: number): () => void {
    const inflight = this.#inflight.get(record.id) ?? 0;
    if (record.maxConcurrent !== undefined && inflight >= record.maxConcurrent) {
      throw new TandemError(
        'E_RATE_LIMITED',
        `key "${record.id}" already has ${inflight} jobs in flight (limit ${record.maxConcurrent})`,
        { retryAfterMs: 100 },
      );
    }
    if (record.ratePerMinute !== undefined) {
      const perMs = record.ratePerMinute / 60_000;
      const bucket = this.#buckets.get(record.id) ?? { tokens: record.ratePerMinute, at: now };
      bucket.tokens = Math.min(record.ratePerMinute, bucket.tokens + (now - bucket.at) * perMs);
      bucket.at = now;
      this.#buckets.set(record.id, bucket);
      if (bucket.tokens < 1) {
        throw new TandemError(
          'E_RATE_LIMITED',
          `key "${record.id}" is over ${record.ratePerMinute} jobs per minute`,
          { retryAfterMs: Math.ceil((1 - bucket.tokens) / perMs) },
        );
      }
      bucket.tokens -= 1;
    }
    this.#inflight.set(record.id, inflight + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inflight.set(record.id, (this.#inflight.get(record.id) ?? 1) - 1);
    };
  }
}

/** The release of a key without limits. */
const NOTHING = (): void => undefined;

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), if any. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
