import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs, streamUrl } from '../src/websocket-remote.js';

describe('backoffDelayMs', () => {
  it('grows exponentially up to the cap, with full jitter in between', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const delay = backoffDelayMs(attempt, 250, 10_000, () => r);
          expect(delay).toBeGreaterThanOrEqual(250);
          expect(delay).toBeLessThanOrEqual(Math.min(10_000, 250 * 2 ** attempt));
        },
      ),
    );
    expect(backoffDelayMs(3, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelayMs(30, 100, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelayMs(5, 100, 10_000, () => 0)).toBe(100);
  });
});

describe('streamUrl', () => {
  it('maps http(s) base URLs to the ws(s) stream endpoint and keeps ws URLs', () => {
    expect(streamUrl('http://127.0.0.1:8080')).toBe('ws://127.0.0.1:8080/v1/stream');
    expect(streamUrl('https://api.example.com/tandem/')).toBe(
      'wss://api.example.com/tandem/v1/stream',
    );
    expect(streamUrl('wss://api.example.com/v1/stream')).toBe('wss://api.example.com/v1/stream');
  });
});
