// Builds a BenchFigure from the two measured values, so every bench derives the ratio, the
// target text and the pass/miss verdict the same way.

import type { Better, BenchFigure, TargetKind } from './bench-types.js';

/** What a bench supplies for one row; the rest is derived by {@link makeFigure}. */
export interface FigureInput {
  readonly bench: string;
  readonly figure: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline: string;
  readonly baselineValue: number;
  readonly better: Better;
  /** Omit for an informational row. */
  readonly target?: number;
  /** @default 'ratio' */
  readonly targetKind?: TargetKind;
}

/** Derives `ratio`, `targetText` and `pass` from the measured values and the target. */
export function makeFigure(input: FigureInput): BenchFigure {
  const ratio = input.value / input.baselineValue;
  if (input.target === undefined) return { ...input, ratio };
  const kind = input.targetKind ?? 'ratio';
  const op = input.better === 'lower' ? '≤' : '≥';
  const compared =
    kind === 'ratio' ? ratio : kind === 'delta' ? input.value - input.baselineValue : input.value;
  const pass = input.better === 'lower' ? compared <= input.target : compared >= input.target;
  const targetText =
    kind === 'ratio'
      ? `${op} ${input.target}×`
      : kind === 'absolute'
        ? `${op} ${input.target} ${input.unit}`
        : `${op} baseline ${input.target < 0 ? '−' : '+'} ${Math.abs(input.target)} ${input.unit}`;
  return { ...input, targetKind: kind, ratio, targetText, pass };
}
