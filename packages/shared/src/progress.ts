// The progress model: one event type for local jobs, remote jobs and the progress bar, and a tracker
// that turns a stream of stage updates into events whose overall `fraction` never goes backwards and
// reaches 1 only when the job is done.

import {
  at,
  expectInteger,
  expectNumber,
  expectOneOf,
  expectRecord,
  expectString,
  optional,
  type ParseContext,
} from './assert.js';
import { TandemError } from './tandem-error.js';

/** Where a job runs: on this device, or on a server. */
export type Where = 'local' | 'remote';

/** The stages of a local job, in order. */
export const LOCAL_STAGES = [
  'resolve',
  'download',
  'cache',
  'compile',
  'warmup',
  'running',
] as const;
/** The stages of a remote job, in order. */
export const REMOTE_STAGES = ['queued', 'loading', 'warmup', 'running'] as const;
/** The stages that end a job. */
export const FINAL_STAGES = ['done', 'error', 'cancelled'] as const;

/** A stage a job can be in; see docs/protocol.md for what each means. */
export type ProgressStage =
  (typeof LOCAL_STAGES)[number] | (typeof REMOTE_STAGES)[number] | (typeof FINAL_STAGES)[number];

/** Every stage, local ones first. */
export const PROGRESS_STAGES: readonly ProgressStage[] = [
  ...LOCAL_STAGES,
  'queued',
  'loading',
  ...FINAL_STAGES,
];

/** One progress report about one job. */
export interface ProgressEvent {
  /** The job this is about; on the WebSocket, its `infer` id. */
  readonly jobId: string;
  /** The model's name (without a version). */
  readonly model: string;
  /** Where the job runs: this decides which stages it goes through. */
  readonly where: Where;
  /** The stage the job is in; `done`, `error` or `cancelled` ends it. */
  readonly stage: ProgressStage;
  /** Bytes (download) or items done in this stage, when countable. */
  readonly loaded?: number;
  /** Bytes or items this stage has in all, when known (byte totals come from the manifest). */
  readonly total?: number;
  /** The whole job's progress estimate in [0, 1]: never decreases, 1 only at `done`. */
  readonly fraction: number;
  /** Jobs ahead of this one in the server queue (0 = next). */
  readonly queuePosition?: number;
  /** Estimated milliseconds until the job is done, from measured history. Absent when unknown. */
  readonly etaMs?: number;
  /** Milliseconds since the job started. */
  readonly elapsedMs: number;
}

/** What a runtime reports when a job enters or advances within a stage. */
export interface StageUpdate {
  /** The stage the job is in; a new one restarts the stage's clock. Final stages go to `finish`. */
  readonly stage: Exclude<ProgressStage, 'done' | 'error' | 'cancelled'>;
  /** Bytes or items done in this stage; with `total`, this sets the progress within the stage. */
  readonly loaded?: number;
  /** Bytes or items this stage has in all, when known. */
  readonly total?: number;
  /** Jobs ahead of this one in the server queue (0 = next), passed on to the event. */
  readonly queuePosition?: number;
  /** Estimated milliseconds until the whole job is done, measured by whoever sent the update. */
  readonly etaMs?: number;
  /** Expected duration of this stage in milliseconds (from measured history), when known. */
  readonly stageExpectedMs?: number;
}

/** One step of a job's plan and its share of the progress bar (any positive unit, e.g. ms). */
export interface PlannedStage {
  /** A stage the job will go through; a stage left out of the plan gets no share of the bar. */
  readonly stage: StageUpdate['stage'];
  /** Its share relative to the other stages' weights; measured ms move the bar at an even speed. */
  readonly weight: number;
}

/** Options for {@link createProgressTracker}. */
export interface ProgressTrackerOptions {
  /** Copied into every event. */
  readonly jobId: string;
  /** Copied into every event. */
  readonly model: string;
  /** Copied into every event; also picks the stage order and the default plan. */
  readonly where: Where;
  /**
   * The stages this job will go through with their shares of the bar. Pass measured durations
   * when they are known so the bar moves at an even speed.
   * @default DEFAULT_LOCAL_PLAN or DEFAULT_REMOTE_PLAN, by `where`
   */
  readonly plan?: readonly PlannedStage[];
  /** The clock, in milliseconds. @default Date.now */
  readonly now?: () => number;
  /**
   * When the job started, on the `now` clock (`elapsedMs` counts from it), for a tracker made
   * after the job began. @default now() when the tracker is made
   */
  readonly startedAt?: number;
}

/** Makes progress events for one job; see {@link createProgressTracker}. */
export interface ProgressTracker {
  /** Records a stage update and returns the event to publish. */
  update(update: StageUpdate): ProgressEvent;
  /** Re-evaluates time-based progress within the current stage (call from a UI timer). */
  tick(): ProgressEvent;
  /** Ends the job. Only `done` brings `fraction` to 1; later updates are ignored. */
  finish(stage: 'done' | 'error' | 'cancelled'): ProgressEvent;
  /** The last event produced, if any. */
  readonly last: ProgressEvent | undefined;
}

/** Default shares of a local job: download dominates a cold start. */
export const DEFAULT_LOCAL_PLAN: readonly PlannedStage[] = [
  { stage: 'resolve', weight: 1 },
  { stage: 'download', weight: 60 },
  { stage: 'cache', weight: 4 },
  { stage: 'compile', weight: 20 },
  { stage: 'warmup', weight: 5 },
  { stage: 'running', weight: 10 },
];

/** Default shares of a remote job. */
export const DEFAULT_REMOTE_PLAN: readonly PlannedStage[] = [
  { stage: 'queued', weight: 15 },
  { stage: 'loading', weight: 40 },
  { stage: 'warmup', weight: 10 },
  { stage: 'running', weight: 35 },
];

/** The highest fraction a running job can show: the bar never reaches the end before `done`. */
export const MAX_UNFINISHED_FRACTION = 0.99;
/** Within a stage of unknown length, time-based progress stops short of the stage's end. */
const MAX_IN_STAGE = 0.95;
/** Time constant of the ease-out curve used when a stage's length is unknown, in ms. */
const UNKNOWN_STAGE_TIME_CONSTANT_MS = 2000;

/**
 * Creates a tracker that turns stage updates into {@link ProgressEvent}s with a monotone `fraction`.
 * Within a stage, progress comes from `loaded/total` when known, else from time against
 * `stageExpectedMs`, else from an ease-out curve that slows down and never completes the stage.
 */
export function createProgressTracker(options: ProgressTrackerOptions): ProgressTracker {
  const now = options.now ?? Date.now;
  const plan =
    options.plan ?? (options.where === 'local' ? DEFAULT_LOCAL_PLAN : DEFAULT_REMOTE_PLAN);
  const order: readonly string[] = options.where === 'local' ? LOCAL_STAGES : REMOTE_STAGES;
  const totalWeight = plan.reduce((sum, step) => sum + Math.max(0, step.weight), 0);
  const startedAt = options.startedAt ?? now();

  let current: StageUpdate | undefined;
  let stageStartedAt = startedAt;
  let updatedAt = startedAt;
  let best = 0;
  let finished = false;
  let last: ProgressEvent | undefined;

  /** [start, width] of a stage within [0, 1]. Unplanned stages get zero width at their place. */
  function span(stage: string): [number, number] {
    if (totalWeight <= 0) return [0, 0];
    let start = 0;
    const rank = order.indexOf(stage);
    for (const step of plan) {
      const weight = Math.max(0, step.weight) / totalWeight;
      if (step.stage === stage) return [start, weight];
      const stepRank = order.indexOf(step.stage);
      if (rank >= 0 && stepRank >= 0 && stepRank > rank) break;
      start += weight;
    }
    return [start, 0];
  }

  function inStage(update: StageUpdate, t: number): number {
    if (update.total !== undefined && update.total > 0 && update.loaded !== undefined) {
      return clamp(update.loaded / update.total, 0, 1);
    }
    const elapsed = Math.max(0, t - stageStartedAt);
    if (update.stageExpectedMs !== undefined && update.stageExpectedMs > 0) {
      return Math.min(MAX_IN_STAGE, elapsed / update.stageExpectedMs);
    }
    return MAX_IN_STAGE * (1 - Math.exp(-elapsed / UNKNOWN_STAGE_TIME_CONSTANT_MS));
  }

  function emit(update: StageUpdate): ProgressEvent {
    const t = now();
    const [start, width] = span(update.stage);
    const estimate = clamp(start + width * inStage(update, t), 0, MAX_UNFINISHED_FRACTION);
    best = Math.max(best, estimate);
    const event: Mutable<ProgressEvent> = {
      jobId: options.jobId,
      model: options.model,
      where: options.where,
      stage: update.stage,
      fraction: best,
      elapsedMs: Math.max(0, t - startedAt),
    };
    if (update.loaded !== undefined) event.loaded = update.loaded;
    if (update.total !== undefined) event.total = update.total;
    if (update.queuePosition !== undefined) event.queuePosition = update.queuePosition;
    if (update.etaMs !== undefined) event.etaMs = Math.max(0, update.etaMs - (t - updatedAt));
    last = event;
    return event;
  }

  return {
    update(update) {
      if (finished && last) return last;
      const t = now();
      if (current?.stage !== update.stage) stageStartedAt = t;
      current = update;
      updatedAt = t;
      return emit(update);
    },
    tick() {
      if (last && (finished || !current)) return last;
      return emit(current ?? { stage: order[0] as StageUpdate['stage'] });
    },
    finish(stage) {
      if (finished && last) return last;
      finished = true;
      const t = now();
      if (stage === 'done') best = 1;
      const event: Mutable<ProgressEvent> = {
        jobId: options.jobId,
        model: options.model,
        where: options.where,
        stage,
        fraction: best,
        elapsedMs: Math.max(0, t - startedAt),
      };
      if (stage === 'done') event.etaMs = 0;
      last = event;
      return event;
    },
    get last() {
      return last;
    },
  };
}

/** Parses a progress event that arrived from a socket or worker. */
export function parseProgressEvent(value: unknown, ctx: ParseContext): ProgressEvent {
  const record = expectRecord(value, ctx);
  const event: Mutable<ProgressEvent> = {
    jobId: expectString(record.jobId, at(ctx, 'jobId'), MAX_ID_CHARS),
    model: expectString(record.model, at(ctx, 'model'), MAX_NAME_CHARS),
    where: expectOneOf(record.where, at(ctx, 'where'), ['local', 'remote'] as const),
    stage: expectOneOf(record.stage, at(ctx, 'stage'), PROGRESS_STAGES),
    fraction: expectNumber(record.fraction, at(ctx, 'fraction'), 0, 1),
    elapsedMs: expectNumber(record.elapsedMs, at(ctx, 'elapsedMs'), 0, Number.MAX_SAFE_INTEGER),
  };
  const loaded = optional(record.loaded, at(ctx, 'loaded'), nonNegativeInteger);
  const total = optional(record.total, at(ctx, 'total'), nonNegativeInteger);
  const queuePosition = optional(
    record.queuePosition,
    at(ctx, 'queuePosition'),
    nonNegativeInteger,
  );
  const etaMs = optional(record.etaMs, at(ctx, 'etaMs'), nonNegativeNumber);
  if (loaded !== undefined) event.loaded = loaded;
  if (total !== undefined) event.total = total;
  if (queuePosition !== undefined) event.queuePosition = queuePosition;
  if (etaMs !== undefined) event.etaMs = etaMs;
  if (event.fraction === 1 && event.stage !== 'done') {
    throw new TandemError(ctx.code ?? 'E_PROTOCOL', `${ctx.path}.fraction: 1 only at done`);
  }
  return event;
}

/** Longest job id accepted, in characters. */
export const MAX_ID_CHARS = 128;
/** Longest model name or version accepted, in characters. */
export const MAX_NAME_CHARS = 256;

function nonNegativeInteger(value: unknown, ctx: ParseContext): number {
  return expectInteger(value, ctx, 0, Number.MAX_SAFE_INTEGER);
}

function nonNegativeNumber(value: unknown, ctx: ParseContext): number {
  return expectNumber(value, ctx, 0, Number.MAX_SAFE_INTEGER);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
