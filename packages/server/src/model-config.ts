// model.json: optional per-model settings beside model.onnx. Everything has a default, so any ONNX
// file dropped into the repository is served as it is; the signature comes from the model itself.

import {
  at,
  expectArray,
  expectInteger,
  expectNumber,
  expectRecord,
  expectString,
  optional,
  parsePlacementHints,
  parseTensorSpecs,
  type ParseContext,
  type PlacementHints,
  type TensorSpec,
} from '@tandem/shared';

/** Per-model settings, after defaults. */
export interface ModelConfig {
  /** Declared inputs, overriding what the file declares (for models with vague shapes). */
  readonly inputs?: readonly TensorSpec[];
  /** Declared outputs, overriding what the file declares. */
  readonly outputs?: readonly TensorSpec[];
  /** Most jobs merged into one run along the batch dimension; 1 disables batching. @default 1 */
  readonly maxBatch: number;
  /** Longest a job waits for others to fill a batch, in milliseconds. @default 2 */
  readonly maxDelayMs: number;
  /** Instances kept loaded even when idle (keep-warm). @default 0 */
  readonly minReady: number;
  /** Most instances the autoscaler may run at once. @default 1 */
  readonly maxInstances: number;
  /** Idle time after which an instance is unloaded (scale to zero), in ms. Server default when absent. */
  readonly idleTimeoutMs?: number;
  /** Jobs that may wait in this model's queue. Server default when absent. */
  readonly maxQueue?: number;
  /** Shapes for the warm-up run, per input name; symbolic dims default to 1. */
  readonly warmupDims?: Readonly<Record<string, readonly number[]>>;
  /** Values for the warm-up run, per input name (every element); zeros otherwise. */
  readonly warmupValues?: Readonly<Record<string, number>>;
  /**
   * onnxruntime intra-op threads for this model; 0 = the server's `session.intraOpNumThreads`
   * (`--intra-op-threads`). @default 0
   */
  readonly intraOpNumThreads: number;
  /** The worker pool that runs this model when scaled out. @default 'default' */
  readonly pool: string;
  /** Hints passed on to clients in manifests. */
  readonly placement?: PlacementHints;
}

/** The settings of a model with no model.json. */
export const DEFAULT_MODEL_CONFIG: ModelConfig = {
  maxBatch: 1,
  maxDelayMs: 2,
  minReady: 0,
  maxInstances: 1,
  intraOpNumThreads: 0,
  pool: 'default',
};

/** Parses a model.json (already JSON-parsed). Failures are `E_INVALID_ARGUMENT` naming the field. */
export function parseModelConfig(value: unknown, path: string): ModelConfig {
  const ctx: ParseContext = { path, code: 'E_INVALID_ARGUMENT' };
  const record = expectRecord(value, ctx);
  const int = (key: string, min: number, max: number): number | undefined =>
    optional(record[key], at(ctx, key), (v, c) => expectInteger(v, c, min, max));
  const config: { -readonly [K in keyof ModelConfig]: ModelConfig[K] } = {
    ...DEFAULT_MODEL_CONFIG,
  };
  const inputs = optional(record.inputs, at(ctx, 'inputs'), parseTensorSpecs);
  const outputs = optional(record.outputs, at(ctx, 'outputs'), parseTensorSpecs);
  if (inputs !== undefined) config.inputs = inputs;
  if (outputs !== undefined) config.outputs = outputs;
  config.maxBatch = int('maxBatch', 1, 4096) ?? config.maxBatch;
  config.maxDelayMs = int('maxDelayMs', 0, 60_000) ?? config.maxDelayMs;
  config.minReady = int('minReady', 0, 64) ?? config.minReady;
  config.maxInstances = int('maxInstances', 1, 64) ?? config.maxInstances;
  config.intraOpNumThreads = int('intraOpNumThreads', 0, 1024) ?? config.intraOpNumThreads;
  const idle = int('idleTimeoutMs', 1, 7 * 24 * 3600 * 1000);
  if (idle !== undefined) config.idleTimeoutMs = idle;
  // At least 1: every job passes through the queue, so 0 would make the model refuse them all.
  const maxQueue = int('maxQueue', 1, 1_000_000);
  if (maxQueue !== undefined) config.maxQueue = maxQueue;
  if (config.minReady > config.maxInstances) config.maxInstances = config.minReady;
  const pool = optional(record.pool, at(ctx, 'pool'), (v, c) => expectString(v, c, 64));
  if (pool !== undefined) config.pool = pool;
  if (record.warmupDims !== undefined) {
    const dims = expectRecord(record.warmupDims, at(ctx, 'warmupDims'));
    const out: Record<string, number[]> = {};
    for (const [name, shape] of Object.entries(dims)) {
      out[name] = expectArray(shape, at(ctx, `warmupDims.${name}`), 32).map((d, i) =>
        expectInteger(d, at(ctx, `warmupDims.${name}[${i}]`), 0, 1 << 20),
      );
    }
    config.warmupDims = out;
  }
  if (record.warmupValues !== undefined) {
    const values = expectRecord(record.warmupValues, at(ctx, 'warmupValues'));
    const out: Record<string, number> = {};
    for (const [name, value] of Object.entries(values)) {
      out[name] = expectNumber(value, at(ctx, `warmupValues.${name}`), -1e300, 1e300);
    }
    config.warmupValues = out;
  }
  const placement = optional(record.placement, at(ctx, 'placement'), parsePlacementHints);
  if (placement !== undefined) config.placement = placement;
  return config;
}
