// The pure logic behind <tandem-progress>: turns a job's progress events, its result or its error
// into what the element shows (a value that never goes backwards, the stage in words, an ETA, where
// it runs). No DOM here, and the clock is injected, so it is unit tested in Node with a fake clock.

import {
  DEFAULT_LOCAL_PLAN,
  DEFAULT_REMOTE_PLAN,
  MAX_UNFINISHED_FRACTION,
  type Backend,
  type PlannedStage,
  type ProgressEvent,
  type ProgressStage,
  type Where,
} from '@tandem/shared';
import type { Fallback, RunTimings } from './run-result.js';

/** What the element is showing: nothing yet, a job under way, or how it ended. */
export type ProgressState = 'idle' | 'running' | 'done' | 'error' | 'cancelled';

/**
 * How the bar's value is known: `measured` (bytes or queue positions reported by the job),
 * `eta` (moving with the server's ETA between reports), `estimate` (a stage of unknown length:
 * a curve that moves quickly at first, then slows, and never reaches the stage's end).
 */
export type ProgressMode = 'measured' | 'eta' | 'estimate';

/** The parts of a `RunResult` the element shows; a RunResult itself fits. */
export interface ProgressResult {
  readonly placement: Where;
  readonly backend: Backend;
  readonly fallback?: Fallback;
  readonly timings?: Pick<RunTimings, 'totalMs'>;
}

/** An error as the element shows it: a TandemError's code and message. */
export interface ProgressError {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
}

/** Everything the element renders at one moment. */
export interface ProgressView {
  readonly state: ProgressState;
  /** The stage of the last event, if any. */
  readonly stage: ProgressStage | undefined;
  /** The bar's value in 0..100: never decreases, and is 100 only when the job is done. */
  readonly value: number;
  /** `value` as a whole percent (rounded down), for `aria-valuenow`. */
  readonly percent: number;
  readonly mode: ProgressMode;
  /** The stage in words: "Downloading model 12.3 / 44.0 MB", "In queue: 3 ahead", "Done in 1.4 s". */
  readonly label: string;
  /** The words for `aria-valuetext`: the label and the percent. */
  readonly valueText: string;
  /** A short sentence for a polite live region; changes only when the stage or state does. */
  readonly announcement: string;
  /** Time left in words ("about 4 s left"), or '' when unknown. */
  readonly eta: string;
  /** Where it runs ("On this device", "On the server · CUDA"), or '' before the first event. */
  readonly where: string;
  /** The error, in the `error` state. */
  readonly error: ProgressError | undefined;
  /** True while the value or the ETA moves with time alone: redraw every frame until false. */
  readonly animating: boolean;
}

/** Options of {@link ProgressViewModel}. */
export interface ProgressViewModelOptions {
  /** The clock, in milliseconds. @default performance.now */
  readonly now?: () => number;
  /**
   * Time constant of the curve that fills a stage of unknown length: after this long, about 63% of
   * the stage's share of the bar is shown; it slows after that and never completes the stage.
   * @default 2000
   */
  readonly unknownStageTimeConstantMs?: number;
}

/** How the value moves between events. */
type Regime =
  | { readonly kind: 'measured' }
  | { readonly kind: 'eta'; readonly etaMs: number }
  | { readonly kind: 'estimate'; readonly ceiling: number };

/**
 * Turns progress events into a {@link ProgressView}. The displayed value is anchored at the last
 * event and, where the job reports nothing countable, advances with time: toward the end of the
 * job along the server's ETA, or along `1 - exp(-t/τ)` within the stage's expected share of what
 * is left. It is capped below the end until `done`, and it never goes backwards, even when a later
 * event reports a lower fraction.
 */
export class ProgressViewModel {
  readonly #now: () => number;
  readonly #tauMs: number;

  #state: ProgressState = 'idle';
  #event: ProgressEvent | undefined;
  /** The highest fraction shown so far, in [0, 1]. */
  #shown = 0;
  #anchorValue = 0;
  #anchorAt = 0;
  #regime: Regime = { kind: 'measured' };
  #announcement = '';
  #downloaded = false;
  /** First download event of the job, for the byte rate. */
  #downloadStart: { readonly at: number; readonly loaded: number } | undefined;
  #lastEventAt = 0;
  #result: ProgressResult | undefined;
  #error: ProgressError | undefined;
  #totalMs: number | undefined;

  /** Creates a view model showing nothing yet (`idle`). */
  constructor(options: ProgressViewModelOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#tauMs = Math.max(1, options.unknownStageTimeConstantMs ?? 2000);
  }

  /** The current state. */
  get state(): ProgressState {
    return this.#state;
  }

  /** The result given to {@link showResult}, if any. */
  get result(): ProgressResult | undefined {
    return this.#result;
  }

  /** Forgets the job: back to `idle` and 0. */
  reset(): void {
    this.#state = 'idle';
    this.#event = undefined;
    this.#shown = 0;
    this.#anchorValue = 0;
    this.#anchorAt = 0;
    this.#regime = { kind: 'measured' };
    this.#announcement = '';
    this.#downloaded = false;
    this.#downloadStart = undefined;
    this.#lastEventAt = 0;
    this.#result = undefined;
    this.#error = undefined;
    this.#totalMs = undefined;
  }

  /**
   * Takes one progress event. A final stage (`done`, `error`, `cancelled`) ends the job; after
   * that, events are ignored until {@link reset}, or until an event of another job arrives.
   */
  update(event: ProgressEvent): void {
    const previous = this.#event;
    if (this.#isFinal() && previous !== undefined && event.jobId !== previous.jobId) this.reset();
    if (this.#isFinal()) return;
    const t = this.#now();
    switch (event.stage) {
      case 'done':
        this.#event = event;
        this.#finish('done', event.elapsedMs);
        return;
      case 'cancelled':
        this.#event = event;
        this.#finish('cancelled', undefined);
        return;
      case 'error':
        this.#event = event;
        this.#finish('error', undefined);
        return;
      default:
        break;
    }
    const current = this.#valueAt(t);
    const stageChanged = this.#event?.stage !== event.stage || this.#state !== 'running';
    const reported = clamp(event.fraction, 0, MAX_UNFINISHED_FRACTION);
    const regime = this.#regimeFor(event);
    this.#state = 'running';
    this.#event = event;
    this.#lastEventAt = t;
    if (event.stage === 'download') {
      this.#downloaded = true;
      if (this.#downloadStart === undefined && event.loaded !== undefined)
        this.#downloadStart = { at: t, loaded: event.loaded };
    }
    if (stageChanged) this.#announcement = announce(event, this.#downloaded);
    // A stage that keeps an estimated curve keeps its anchor, so more events of the same stage
    // (with nothing new to count) do not restart the curve at full speed.
    if (
      !stageChanged &&
      regime.kind === 'estimate' &&
      this.#regime.kind === 'estimate' &&
      reported <= current
    ) {
      return;
    }
    this.#anchorValue = Math.max(current, reported);
    this.#shown = this.#anchorValue;
    this.#anchorAt = t;
    this.#regime =
      regime.kind === 'estimate'
        ? {
            kind: 'estimate',
            ceiling:
              this.#anchorValue +
              (MAX_UNFINISHED_FRACTION - this.#anchorValue) * shareOfRest(event.stage, event.where),
          }
        : regime;
  }

  /** The job finished: the bar fills, and the result says where and on what it ran. */
  showResult(result: ProgressResult): void {
    if (this.#state === 'error' || this.#state === 'cancelled') return;
    this.#result = result;
    this.#finish('done', result.timings?.totalMs ?? this.#totalMs);
  }

  /**
   * The job failed. An error with code `E_CANCELLED` shows as `cancelled`; anything that is not a
   * coded error shows as `E_INTERNAL`.
   */
  showError(error: unknown): void {
    if (this.#isFinal()) return;
    const described = describeError(error);
    this.#error = described;
    this.#finish(described.code === 'E_CANCELLED' ? 'cancelled' : 'error', undefined);
  }

  /** What to show now. Reading it advances the time-based value (which only ever grows). */
  view(): ProgressView {
    const t = this.#now();
    const fraction = this.#valueAt(t);
    const value = this.#state === 'done' ? 100 : Math.min(fraction * 100, 99.999);
    const percent = this.#state === 'done' ? 100 : Math.min(99, Math.floor(value));
    const label = this.#label();
    const mode: ProgressMode =
      this.#state === 'running'
        ? this.#regime.kind
        : this.#state === 'idle'
          ? 'estimate'
          : 'measured';
    return {
      state: this.#state,
      stage: this.#event?.stage,
      value,
      percent,
      mode,
      label,
      valueText: this.#state === 'idle' ? label : `${label}, ${percent}%`,
      announcement: this.#announcement,
      eta: this.#etaText(t),
      where: this.#whereText(),
      error: this.#state === 'error' || this.#state === 'cancelled' ? this.#error : undefined,
      animating: this.#state === 'running' && this.#regime.kind !== 'measured',
    };
  }

  // ---- internals ------------------------------------------------------------------------------

  #isFinal(): boolean {
    return this.#state === 'done' || this.#state === 'error' || this.#state === 'cancelled';
  }

  #finish(state: 'done' | 'error' | 'cancelled', totalMs: number | undefined): void {
    if (state !== 'done') this.#valueAt(this.#now()); // freeze where the bar was
    this.#state = state;
    if (state === 'done') {
      this.#shown = 1;
      if (totalMs !== undefined) this.#totalMs = totalMs;
    }
    const error = state === 'error' ? this.#error : undefined;
    this.#announcement =
      error === undefined
        ? this.#label()
        : `${this.#label()}: ${error.code}${error.message === '' ? '' : `. ${error.message}`}`;
  }

  #regimeFor(event: ProgressEvent): Regime {
    if (event.total !== undefined && event.total > 0 && event.loaded !== undefined)
      return { kind: 'measured' };
    // The server's ETA; 0 while running means it has no estimate yet.
    if (event.etaMs !== undefined && event.etaMs > 0) return { kind: 'eta', etaMs: event.etaMs };
    if (event.stage === 'queued' && event.queuePosition !== undefined) return { kind: 'measured' };
    return { kind: 'estimate', ceiling: MAX_UNFINISHED_FRACTION };
  }

  /** The value at time t in [0, 1], never below anything shown before. */
  #valueAt(t: number): number {
    if (this.#state === 'done') return 1;
    if (this.#state !== 'running') return this.#shown;
    const dt = Math.max(0, t - this.#anchorAt);
    const from = this.#anchorValue;
    let value = from;
    switch (this.#regime.kind) {
      case 'measured':
        break;
      case 'eta':
        value = from + (MAX_UNFINISHED_FRACTION - from) * followEta(dt / this.#regime.etaMs);
        break;
      case 'estimate':
        value = from + (this.#regime.ceiling - from) * (1 - Math.exp(-dt / this.#tauMs));
        break;
    }
    this.#shown = Math.max(this.#shown, clamp(value, 0, MAX_UNFINISHED_FRACTION));
    return this.#shown;
  }

  #label(): string {
    const event = this.#event;
    switch (this.#state) {
      case 'idle':
        return 'Not started';
      case 'done':
        return this.#totalMs === undefined ? 'Done' : `Done in ${formatDuration(this.#totalMs)}`;
      case 'cancelled':
        return 'Cancelled';
      case 'error':
        return 'Failed';
      case 'running':
        return event === undefined ? 'Starting…' : stageLabel(event, this.#downloaded);
    }
  }

  #etaText(t: number): string {
    const event = this.#event;
    if (this.#state !== 'running' || event === undefined) return '';
    if (this.#regime.kind === 'eta') {
      return formatEta(this.#regime.etaMs - (t - this.#anchorAt));
    }
    const start = this.#downloadStart;
    if (
      event.stage === 'download' &&
      start !== undefined &&
      event.loaded !== undefined &&
      event.total !== undefined &&
      event.loaded > start.loaded &&
      this.#lastEventAt > start.at
    ) {
      const bytesPerMs = (event.loaded - start.loaded) / (this.#lastEventAt - start.at);
      const left = (event.total - event.loaded) / bytesPerMs - (t - this.#lastEventAt);
      return `${formatEta(left)} · ${formatBytes(bytesPerMs * 1000)}/s`;
    }
    return '';
  }

  #whereText(): string {
    const result = this.#result;
    if (result !== undefined) {
      const place = placeWords(result.placement);
      const fallback =
        result.fallback === undefined
          ? ''
          : ` (after ${result.fallback.from === 'local' ? 'this device' : 'the server'} failed: ${result.fallback.code})`;
      return `${place} · ${backendName(result.backend)}${fallback}`;
    }
    const where = this.#event?.where;
    return where === undefined || this.#state === 'idle' ? '' : placeWords(where);
  }
}

// ---- words ------------------------------------------------------------------------------------

/** The stage of a running job in words. */
function stageLabel(event: ProgressEvent, downloaded: boolean): string {
  const remote = event.where === 'remote';
  switch (event.stage) {
    case 'resolve':
      return 'Getting ready…';
    case 'download':
      return event.loaded === undefined
        ? 'Downloading model…'
        : `Downloading model ${formatByteProgress(event.loaded, event.total)}`;
    case 'cache':
      return downloaded ? 'Saving model for next time…' : 'Reading model from this device…';
    case 'compile':
      // Bytes here are onnxruntime-web's runtime, downloaded by a first load.
      return event.loaded === undefined
        ? 'Preparing model…'
        : `Downloading runtime ${formatByteProgress(event.loaded, event.total)}`;
    case 'queued':
      if (event.queuePosition === undefined) return 'In queue…';
      return event.queuePosition === 0 ? 'Next in queue' : `In queue: ${event.queuePosition} ahead`;
    case 'loading':
      return 'Waking the server…';
    case 'warmup':
      return remote ? 'Warming up the server…' : 'Warming up…';
    case 'running':
      return 'Running…';
    case 'done':
      return 'Done';
    case 'error':
      return 'Failed';
    case 'cancelled':
      return 'Cancelled';
  }
}

/** A stage's announcement: its words without numbers that change within the stage. */
function announce(event: ProgressEvent, downloaded: boolean): string {
  if (event.stage === 'download') return 'Downloading model';
  if (event.stage === 'queued') return 'In queue';
  return stageLabel(event, downloaded).replace(/…$/, '');
}

function placeWords(where: Where): string {
  return where === 'local' ? 'On this device' : 'On the server';
}

const BACKEND_NAMES: Readonly<Record<Backend, string>> = {
  wasm: 'WebAssembly',
  webgpu: 'WebGPU',
  webnn: 'WebNN',
  cpu: 'CPU',
  cuda: 'CUDA',
  tensorrt: 'TensorRT',
  coreml: 'Core ML',
  dml: 'DirectML',
};

/** A backend's name for people ("WebGPU", "CUDA"). */
export function backendName(backend: Backend): string {
  return (BACKEND_NAMES as Readonly<Record<string, string>>)[backend] ?? backend;
}

const BYTE_UNITS = [
  { unit: 'GB', size: 1e9, digits: 1 },
  { unit: 'MB', size: 1e6, digits: 1 },
  { unit: 'kB', size: 1e3, digits: 0 },
] as const;

/** Bytes in words, decimal units: "44.0 MB", "600 kB", "12 B". */
export function formatBytes(bytes: number): string {
  const scale = BYTE_UNITS.find((u) => bytes >= u.size);
  return scale === undefined
    ? `${Math.round(bytes)} B`
    : `${(bytes / scale.size).toFixed(scale.digits)} ${scale.unit}`;
}

/** Loaded of total in the total's unit: "12.3 / 44.0 MB"; just the loaded bytes without a total. */
export function formatByteProgress(loaded: number, total: number | undefined): string {
  if (total === undefined || total <= 0) return formatBytes(loaded);
  const scale = BYTE_UNITS.find((u) => total >= u.size);
  if (scale === undefined) return `${Math.round(loaded)} / ${Math.round(total)} B`;
  const digits = scale.digits;
  return `${(loaded / scale.size).toFixed(digits)} / ${(total / scale.size).toFixed(digits)} ${scale.unit}`;
}

/** A duration in words: "0.4 s", "1.4 s", "12 s", "2 min 5 s", "1 h 3 min". */
export function formatDuration(ms: number): string {
  const safe = Math.max(0, ms);
  if (safe < 9_950) return `${(safe / 1000).toFixed(1)} s`;
  const seconds = Math.round(safe / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) {
    const rest = seconds % 60;
    return rest === 0
      ? `${Math.floor(seconds / 60)} min`
      : `${Math.floor(seconds / 60)} min ${rest} s`;
  }
  const minutes = Math.round(seconds / 60);
  const rest = minutes % 60;
  return rest === 0 ? `${Math.floor(minutes / 60)} h` : `${Math.floor(minutes / 60)} h ${rest} min`;
}

/** Time left in words: "about 4 s left", "less than a second left", "almost done". */
export function formatEta(ms: number): string {
  if (!Number.isFinite(ms)) return '';
  if (ms <= 0) return 'almost done';
  if (ms < 1000) return 'less than a second left';
  const seconds = Math.ceil(ms / 1000);
  if (seconds < 60) return `about ${seconds} s left`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `about ${minutes} min left` : `about ${formatDuration(ms)} left`;
}

/** The fields the element shows of any thrown value. */
export function describeError(error: unknown): ProgressError {
  if (typeof error === 'object' && error !== null) {
    const { code, message, retryable, retryAfterMs } = error as Record<string, unknown>;
    if (typeof code === 'string' && code !== '') {
      return {
        code,
        message: typeof message === 'string' ? message : '',
        retryable: retryable === true,
        ...(typeof retryAfterMs === 'number' && retryAfterMs >= 0 ? { retryAfterMs } : {}),
      };
    }
  }
  return {
    code: 'E_INTERNAL',
    message: error instanceof Error ? error.message : String(error),
    retryable: false,
  };
}

// ---- curves -----------------------------------------------------------------------------------

/**
 * Share of the rest of the bar a stage of unknown length may fill, from the default plans: its
 * weight against its own and every later stage's. The last stage may fill all of the rest.
 */
function shareOfRest(stage: ProgressStage, where: Where): number {
  const plan: readonly PlannedStage[] =
    where === 'local' ? DEFAULT_LOCAL_PLAN : DEFAULT_REMOTE_PLAN;
  const index = plan.findIndex((step) => step.stage === stage);
  if (index < 0) return 0.5;
  const rest = plan.slice(index).reduce((sum, step) => sum + step.weight, 0);
  return rest > 0 ? (plan[index]?.weight ?? 0) / rest : 0;
}

/**
 * Share of the rest of the bar shown at `p` = elapsed / ETA: linear (the ETA's pace) up to 0.8, then
 * an exponential with the same slope that approaches 1 and never reaches it, so a late job slows
 * down instead of stopping or finishing early.
 */
function followEta(p: number): number {
  if (p <= 0.8) return Math.max(0, p);
  return 0.8 + 0.2 * (1 - Math.exp(-(p - 0.8) / 0.2));
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
