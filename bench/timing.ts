// Timing helpers shared by the benches: warm-up, repeat until a minimum time, medians and
// percentiles, operations per second. All clocks are `process.hrtime.bigint()` (monotonic, ns).

import { readFileSync } from 'node:fs';

/** Options for {@link measureThroughput} and {@link measureLatency}. */
export interface TimingOptions {
  /** Time spent running the operation before measuring (JIT, caches, heap sizing). @default 300 */
  readonly warmupMs?: number;
  /** Keep taking samples until this much time has been measured. @default 1500 */
  readonly minTimeMs?: number;
  /** Take at least this many samples, however long they take. @default 5 */
  readonly minSamples?: number;
  /** Stop after this many samples even if `minTimeMs` has not passed. @default 100_000 */
  readonly maxSamples?: number;
}

/** The outcome of a timed operation. */
export interface TimingResult {
  /** Operations per second, from the median time per operation. */
  readonly opsPerSecond: number;
  /** Median time of one operation, in milliseconds. */
  readonly medianMs: number;
  /** Fastest and slowest sample, per operation, in milliseconds. */
  readonly minMs: number;
  readonly maxMs: number;
  /** Number of samples the median is taken over. */
  readonly samples: number;
  /** Total operations run while measuring (warm-up excluded). */
  readonly operations: number;
}

/** Throughput timing batches operations so each sample lasts at least this long (timer noise). */
const MIN_BATCH_NS = 20_000_000n;

/**
 * CPU time this process's main thread has run, in ms (Linux: /proc/thread-self's schedstat, in
 * ns), or undefined where it cannot be read. Unlike wall time it does not count time the thread
 * waited, for the hypervisor included, so it compares like with like on a busy shared machine.
 */
export function mainThreadCpuMs(): number | undefined {
  try {
    const ns = Number(
      readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0],
    );
    return Number.isFinite(ns) ? ns / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

/** Nanoseconds since an arbitrary, monotonic origin. */
export function now(): bigint {
  return process.hrtime.bigint();
}

/** Milliseconds between two {@link now} readings. */
export function elapsedMs(start: bigint, end: bigint = now()): number {
  return Number(end - start) / 1e6;
}

/** The `p`-th percentile (0..100) of `values`, by linear interpolation; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (Math.min(Math.max(p, 0), 100) / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const lowValue = sorted[low] ?? Number.NaN;
  const highValue = sorted[high] ?? Number.NaN;
  return lowValue + (highValue - lowValue) * (rank - low);
}

/** The median (p50) of `values`. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/**
 * Times a synchronous operation. Operations run in batches sized so a batch takes at least
 * ~20 ms, so cheap operations are not dominated by clock reads; the result is the median batch,
 * which keeps an occasional GC pause from moving the figure.
 */
export function measureThroughput(op: () => void, options: TimingOptions = {}): TimingResult {
  const warmupNs = msToNs(options.warmupMs ?? 300);
  const minTimeNs = msToNs(options.minTimeMs ?? 1500);
  const minSamples = options.minSamples ?? 5;
  const maxSamples = options.maxSamples ?? 100_000;

  // Warm up, and learn how long one operation takes to size the batches. At least one run, so
  // an operation slower than the warm-up still gets compiled before it is measured.
  let warmupRuns = 0;
  const warmupStart = now();
  do {
    op();
    warmupRuns++;
  } while (now() - warmupStart < warmupNs);
  const perOpNs = Number(now() - warmupStart) / warmupRuns;
  const batch = Math.max(1, Math.ceil(Number(MIN_BATCH_NS) / perOpNs));

  const perOpMs: number[] = [];
  let measuredNs = 0n;
  while ((measuredNs < minTimeNs || perOpMs.length < minSamples) && perOpMs.length < maxSamples) {
    const start = now();
    for (let i = 0; i < batch; i++) op();
    const took = now() - start;
    measuredNs += took;
    perOpMs.push(Number(took) / 1e6 / batch);
  }
  return summarise(perOpMs, perOpMs.length * batch);
}

/**
 * Times an asynchronous operation one call at a time, for latencies (round trips over a socket,
 * a queued job): each sample is one operation, so the median is the p50 latency.
 */
export async function measureLatency(
  op: () => Promise<unknown>,
  options: TimingOptions = {},
): Promise<TimingResult & { readonly p90Ms: number; readonly p99Ms: number }> {
  const warmupNs = msToNs(options.warmupMs ?? 300);
  const minTimeNs = msToNs(options.minTimeMs ?? 1500);
  const minSamples = options.minSamples ?? 5;
  const maxSamples = options.maxSamples ?? 100_000;

  const warmupStart = now();
  do {
    await op();
  } while (now() - warmupStart < warmupNs);

  const samples: number[] = [];
  let measuredNs = 0n;
  while ((measuredNs < minTimeNs || samples.length < minSamples) && samples.length < maxSamples) {
    const start = now();
    await op();
    const took = now() - start;
    measuredNs += took;
    samples.push(Number(took) / 1e6);
  }
  return {
    ...summarise(samples, samples.length),
    p90Ms: percentile(samples, 90),
    p99Ms: percentile(samples, 99),
  };
}

function summarise(perOpMs: readonly number[], operations: number): TimingResult {
  const medianMs = median(perOpMs);
  return {
    opsPerSecond: 1000 / medianMs,
    medianMs,
    // reduce, not Math.min(...values): a spread of 100k samples can overflow the stack.
    minMs: perOpMs.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY),
    maxMs: perOpMs.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY),
    samples: perOpMs.length,
    operations,
  };
}

function msToNs(ms: number): bigint {
  return BigInt(Math.round(ms * 1e6));
}

/**
 * The trial whose `key` is the median, so a figure reports one trial's own pair of values (they
 * then match the ratio shown) rather than two medians taken from different trials.
 */
export function medianBy<T>(trials: readonly T[], key: (trial: T) => number): T {
  if (trials.length === 0) throw new Error('medianBy of no trials');
  return [...trials].sort((a, b) => key(a) - key(b))[trials.length >> 1] as T;
}
