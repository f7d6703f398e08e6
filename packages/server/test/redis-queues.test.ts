// Names and mappings shared by gateways and workers on Redis: priorities, pool names, keys.

import { describe, expect, it } from 'vitest';
import { PRIORITY_MAX, PRIORITY_MIN } from '@tandem/shared';
import { errorCode } from '@tandem/test-support';
import { RedisKeys, bullPriority, checkPoolName } from '../src/redis-queues.js';

describe('redis-queues', () => {
  it('maps Tandem priorities (higher first) onto BullMQ priorities (1 first), never 0', () => {
    expect(bullPriority(PRIORITY_MAX)).toBe(1);
    expect(bullPriority(PRIORITY_MIN)).toBe(11);
    for (let p = PRIORITY_MIN; p < PRIORITY_MAX; p++) {
      // A higher Tandem priority must run earlier: a smaller BullMQ number.
      expect(bullPriority(p + 1)).toBeLessThan(bullPriority(p));
    }
    expect(bullPriority(99)).toBe(1);
    expect(bullPriority(-3)).toBe(11);
  });

  it('accepts pool names that can name a BullMQ queue and refuses others with a code', () => {
    expect(checkPoolName('gpu')).toBe('gpu');
    expect(checkPoolName('cpu-a.1_b')).toBe('cpu-a.1_b');
    for (const bad of ['', 'a:b', '-x', 'with space', 'x'.repeat(65)])
      expect(
        errorCode(() => checkPoolName(bad)),
        bad,
      ).toBe('E_INVALID_ARGUMENT');
  });

  it('keeps owners apart in the resume index even when names contain separators', () => {
    const keys = new RedisKeys('t');
    expect(keys.index('a:b', 'c')).not.toBe(keys.index('a', 'b:c'));
    expect(keys.input('j')).not.toBe(keys.outcome('j'));
    expect(keys.prioritized('gpu')).toBe('t:gpu:prioritized');
  });
});
