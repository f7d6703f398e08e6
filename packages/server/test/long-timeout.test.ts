// setLongTimeout: a delay past what one setTimeout keeps (2^31 - 1 ms) fires when due, not after
// 1 ms as a plain setTimeout does; clear() stops it at any stage.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_TIMER_MS, setLongTimeout } from '../src/long-timeout.js';

describe('long-timeout', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires a delay of 3e9 ms (35 days) when due, and only then', () => {
    const fired = vi.fn();
    setLongTimeout(fired, 3e9);
    vi.advanceTimersByTime(1000);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(MAX_TIMER_MS);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(3e9 - MAX_TIMER_MS - 1001);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('fires short and negative delays as setTimeout does', () => {
    const short = vi.fn();
    const past = vi.fn();
    setLongTimeout(short, 20);
    setLongTimeout(past, -5);
    vi.advanceTimersByTime(0);
    expect(past).toHaveBeenCalledTimes(1);
    expect(short).not.toHaveBeenCalled();
    vi.advanceTimersByTime(20);
    expect(short).toHaveBeenCalledTimes(1);
  });

  it('is stopped by clear(), before or after it re-arms', () => {
    const early = vi.fn();
    const late = vi.fn();
    setLongTimeout(early, 3e9).clear();
    const timer = setLongTimeout(late, 3e9);
    vi.advanceTimersByTime(MAX_TIMER_MS + 1);
    timer.clear();
    timer.clear();
    vi.advanceTimersByTime(3e9);
    expect(early).not.toHaveBeenCalled();
    expect(late).not.toHaveBeenCalled();
  });
});
