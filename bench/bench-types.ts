// The contract between the harness (run.ts) and each `*.bench.ts` file: a bench measures Tandem
// and a baseline in the same run and reports rows of figures; the harness only prints them.

/** Which direction is an improvement for a figure: fewer bytes and milliseconds, more ops. */
export type Better = 'lower' | 'higher';

/**
 * How a target is read.
 * - `ratio`: compares `value / baselineValue` with `target` ("≤ 0.76×", "≥ 3×").
 * - `delta`: compares `value - baselineValue` with `target`, in the figure's unit
 *   ("≤ baseline + 1.0 ms"), for overheads that a ratio would hide or exaggerate.
 * - `absolute`: compares `value` itself with `target`, in the figure's unit ("≤ 1 ms"), for
 *   budgets; the baseline is shown for scale.
 */
export type TargetKind = 'ratio' | 'delta' | 'absolute';

/** One row of the report: one quantity, measured for Tandem and for a baseline in the same run. */
export interface BenchFigure {
  /** Name of the bench that produced the row. */
  readonly bench: string;
  /** What was measured, e.g. "wire bytes, 1×3×224×224 float32". */
  readonly figure: string;
  /** Tandem's value, in `unit`. */
  readonly value: number;
  /** Unit of `value` and `baselineValue`, e.g. "B", "ops/s", "ms". */
  readonly unit: string;
  /** What Tandem is compared with, e.g. "JSON + base64". */
  readonly baseline: string;
  /** The baseline's value, in `unit`, measured in the same run. */
  readonly baselineValue: number;
  /** `value / baselineValue`. */
  readonly ratio: number;
  /** Whether a lower or a higher value is better. */
  readonly better: Better;
  /** The goal, read according to `targetKind`; absent for informational rows. */
  readonly target?: number;
  /** How `target` is read. @default 'ratio' */
  readonly targetKind?: TargetKind;
  /** The target as a reader sees it, e.g. "≥ 3×" or "≤ baseline + 1.0 ms". */
  readonly targetText?: string;
  /** Whether the target is met; absent when there is no target. */
  readonly pass?: boolean;
}

/** What a `*.bench.ts` file exports, as its default export or as `bench`. */
export interface Bench {
  /** Short name, shown in the table's first column. */
  readonly name: string;
  /** Measures everything (Tandem and baselines) and returns the rows. */
  run(): Promise<BenchFigure[]>;
}
