import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TandemError } from '@tandem/shared';
import {
  ANONYMOUS,
  ApiKeys,
  hashApiKey,
  loadApiKeyFile,
  parseApiKeyFile,
  type ApiKeyRecord,
} from '../src/api-keys.js';
import { tempDir } from './server-fixtures.js';

const alice: ApiKeyRecord = { id: 'alice', sha256: hashApiKey('alice-secret') };
const bob: ApiKeyRecord = { id: 'bob', sha256: hashApiKey('bob-secret'), ratePerMinute: 6 };
const carol: ApiKeyRecord = { id: 'carol', sha256: hashApiKey('carol-secret'), maxConcurrent: 2 };

function errorOf(fn: () => unknown): TandemError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    return error as TandemError;
  }
  throw new Error('expected a TandemError');
}

describe('hashApiKey', () => {
  it('is the lower-case hex sha256 of the UTF-8 key', () => {
    expect(hashApiKey('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});

describe('ApiKeys.verify', () => {
  const keys = new ApiKeys([alice, bob, carol]);

  it('returns the record of a good key', () => {
    expect(keys.required).toBe(true);
    expect(keys.verify('alice-secret')).toBe(alice);
    expect(keys.verify('carol-secret')).toBe(carol);
  });

  it('returns undefined for a missing, empty or wrong key', () => {
    for (const key of [undefined, '', 'alice', 'alice-secret ', alice.sha256]) {
      expect(keys.verify(key), String(key)).toBeUndefined();
    }
  });

  it('lets anyone in as ANONYMOUS when no keys are configured', () => {
    const open = new ApiKeys([]);
    expect(open.required).toBe(false);
    expect(open.verify(undefined)).toBe(ANONYMOUS);
    expect(open.verify('anything')).toBe(ANONYMOUS);
    expect(ANONYMOUS.id).toBe('anonymous');
  });

  it('refuses records whose sha256 is not 64 hex digits, rather than failing on every verify', () => {
    for (const sha256 of ['alice-secret', 'ab', hashApiKey('x').toUpperCase().slice(1)]) {
      expect(errorOf(() => new ApiKeys([{ id: 'x', sha256 }])).code).toBe('E_INVALID_ARGUMENT');
    }
  });
});

describe('ApiKeys.acquire', () => {
  it('enforces the rate with a bucket of one minute of tokens that refills continuously', () => {
    const keys = new ApiKeys([bob]);
    const t0 = 1_000_000;
    for (let i = 0; i < 6; i++) keys.acquire(bob, t0)();
    const limited = errorOf(() => keys.acquire(bob, t0));
    expect(limited.code).toBe('E_RATE_LIMITED');
    expect(limited.retryable).toBe(true);
    // Six a minute: one token every 10 s.
    expect(limited.retryAfterMs).toBe(10_000);
    expect(errorOf(() => keys.acquire(bob, t0 + 4_000)).retryAfterMs).toBe(6_000);
    keys.acquire(bob, t0 + 10_000)();
    expect(errorOf(() => keys.acquire(bob, t0 + 10_000)).code).toBe('E_RATE_LIMITED');
    // A long pause refills up to the burst, never beyond it.
    for (let i = 0; i < 6; i++) keys.acquire(bob, t0 + 3_600_000)();
    expect(errorOf(() => keys.acquire(bob, t0 + 3_600_000)).code).toBe('E_RATE_LIMITED');
  });

  it('enforces the concurrency limit until a slot is released, and releases only once', () => {
    const keys = new ApiKeys([carol, alice]);
    const first = keys.acquire(carol);
    const second = keys.acquire(carol);
    const busy = errorOf(() => keys.acquire(carol));
    expect(busy.code).toBe('E_RATE_LIMITED');
    expect(busy.retryAfterMs).toBeGreaterThan(0);
    first();
    first(); // a second call must not free a slot it does not hold
    const third = keys.acquire(carol);
    expect(errorOf(() => keys.acquire(carol)).code).toBe('E_RATE_LIMITED');
    second();
    third();
    keys.acquire(carol);
    keys.acquire(carol);
    // Limits are per key: alice has none.
    for (let i = 0; i < 100; i++) keys.acquire(alice);
  });

  it('does not count a rate-limited attempt against the concurrency limit', () => {
    const both: ApiKeyRecord = { ...bob, id: 'both', ratePerMinute: 1, maxConcurrent: 1 };
    const keys = new ApiKeys([both]);
    const release = keys.acquire(both, 0);
    release();
    expect(errorOf(() => keys.acquire(both, 1)).code).toBe('E_RATE_LIMITED');
    keys.acquire(both, 60_001);
  });
});

describe('parseApiKeyFile / loadApiKeyFile', () => {
  const { dir, remove } = tempDir('api-keys');
  afterAll(remove);

  it('parses keys with their optional limits', () => {
    expect(
      parseApiKeyFile(
        {
          keys: [
            { id: 'alice', sha256: alice.sha256 },
            { id: 'bob', sha256: bob.sha256, ratePerMinute: 6, maxConcurrent: 2 },
          ],
        },
        'keys.json',
      ),
    ).toEqual([alice, { ...bob, maxConcurrent: 2 }]);
  });

  it('answers every malformed file with E_INVALID_ARGUMENT', () => {
    const bad: unknown[] = [
      null,
      [],
      {},
      { keys: {} },
      { keys: [null] },
      { keys: [{ sha256: alice.sha256 }] },
      { keys: [{ id: '', sha256: alice.sha256 }] },
      { keys: [{ id: 'a' }] },
      { keys: [{ id: 'a', sha256: 'alice-secret' }] },
      { keys: [{ id: 'a', sha256: alice.sha256.toUpperCase() }] },
      { keys: [{ id: 'a', sha256: alice.sha256, ratePerMinute: 0 }] },
      { keys: [{ id: 'a', sha256: alice.sha256, maxConcurrent: 1.5 }] },
      {
        keys: [
          { id: 'a', sha256: alice.sha256 },
          { id: 'a', sha256: bob.sha256 },
        ],
      },
    ];
    for (const value of bad) {
      expect(errorOf(() => parseApiKeyFile(value, 'keys.json')).code, JSON.stringify(value)).toBe(
        'E_INVALID_ARGUMENT',
      );
    }
  });

  it('loads a file, and answers a missing or non-JSON file with E_INVALID_ARGUMENT', () => {
    const good = join(dir, 'keys.json');
    writeFileSync(good, JSON.stringify({ keys: [alice] }));
    expect(loadApiKeyFile(good)).toEqual([alice]);
    const garbled = join(dir, 'garbled.json');
    writeFileSync(garbled, 'keys: alice');
    expect(errorOf(() => loadApiKeyFile(garbled)).code).toBe('E_INVALID_ARGUMENT');
    expect(errorOf(() => loadApiKeyFile(join(dir, 'missing.json'))).code).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});
