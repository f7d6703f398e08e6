// A timer for delays of any length. Node keeps a timer's delay in a signed 32-bit integer: a
// delay past 2^31 - 1 ms (about 24.8 days) fires after 1 ms instead, with only a process warning.
// Job deadlines come from clients (the WebSocket's `deadlineMs`, OIP's `timeout` in µs) and may
// be that long, meaning "no real deadline": a plain setTimeout failed such a job at once.

/** The longest delay one setTimeout keeps, in ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pending {@link setLongTimeout}. */
export interface LongTimeout {
  /** Stops it; the callback is not called. Calling it again does nothing. */
  clear(): void;
}

/**
 * Calls `callback` once, `delayMs` from now (any length, negative meaning now), through as many
 * timers as it takes. The timers are unref'd: a pending deadline keeps no process alive.
 */
export function setLongTimeout(callback: () => void, delayMs: number): LongTimeout {
  const dueAt = performance.now() + delayMs;
  let timer: ReturnType<typeof setTimeout>;
  const arm = (): void => {
    const leftMs = dueAt - performance.now();
    timer =
      leftMs > MAX_TIMER_MS
        ? setTimeout(arm, MAX_TIMER_MS)
        : setTimeout(callback, Math.max(0, leftMs));
    timer.unref();
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}
