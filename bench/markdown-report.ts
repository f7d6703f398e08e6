// Renders a bench run as Markdown: a heading naming when, on what code and on what machine it
// ran, one table of every figure with a PASS/MISS column, and a summary line.

import type { BenchFigure } from './bench-types.js';

/** Everything the report says about one run besides its figures. */
export interface RunContext {
  /** ISO 8601 start time of the run. */
  readonly date: string;
  /** Short commit hash, possibly marked as modified, or "uncommitted". */
  readonly commit: string;
  /** One-line machine description. */
  readonly machine: string;
  /** The filter the run was limited to, if any. */
  readonly filter?: string;
  /** Per bench, the share of CPU time the hypervisor stole while it ran (see stealShare). */
  readonly steal?: readonly { readonly bench: string; readonly share: number }[];
}

/** A bench that threw instead of reporting figures. */
export interface BenchFailure {
  readonly bench: string;
  readonly message: string;
}

/** The whole section appended to docs/benchmarks.md for one run. */
export function formatRun(
  context: RunContext,
  figures: readonly BenchFigure[],
  failures: readonly BenchFailure[],
): string {
  const lines = [
    `## ${context.date} · ${context.commit}`,
    '',
    `Machine: ${context.machine}` +
      (context.filter === undefined ? '' : `. Only benches matching "${context.filter}".`),
    '',
    ...(context.steal === undefined || context.steal.length === 0
      ? []
      : [
          'CPU time stolen by the hypervisor while each bench ran: ' +
            context.steal
              .map(({ bench, share }) => `${bench} ${(share * 100).toFixed(0)}%`)
              .join(', ') +
            '.',
          '',
        ]),
    formatTable(figures),
    '',
    formatSummary(figures, failures),
  ];
  for (const failure of failures) lines.push('', `- ${failure.bench} failed: ${failure.message}`);
  return lines.join('\n') + '\n';
}

/** One Markdown table, one row per figure. */
export function formatTable(figures: readonly BenchFigure[]): string {
  const header = [
    'Bench',
    'Figure',
    'Tandem',
    'Baseline',
    'Baseline value',
    'Ratio',
    'Target',
    'Result',
  ];
  const rows = figures.map((f) => [
    f.bench,
    f.figure,
    formatValue(f.value, f.unit),
    f.baseline,
    formatValue(f.baselineValue, f.unit),
    `${formatNumber(f.ratio)}×`,
    f.targetText ?? '—',
    f.pass === undefined ? 'info' : f.pass ? 'PASS' : '**MISS**',
  ]);
  const cells = [header, ...rows].map((row) => row.map(escapeCell));
  // Padded to column widths so the table also reads well in a terminal.
  const widths = header.map((_, col) => Math.max(...cells.map((row) => (row[col] ?? '').length)));
  const line = (row: readonly string[]): string =>
    `| ${row.map((cell, col) => cell.padEnd(widths[col] ?? 0)).join(' | ')} |`;
  const [head = [], ...body] = cells;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

/** e.g. "6 figures with a target: 5 PASS, 1 MISS; 2 informational." */
export function formatSummary(
  figures: readonly BenchFigure[],
  failures: readonly BenchFailure[] = [],
): string {
  const targeted = figures.filter((f) => f.pass !== undefined);
  const passed = targeted.filter((f) => f.pass === true).length;
  const missed = targeted.length - passed;
  const info = figures.length - targeted.length;
  const failed = failures.length > 0 ? ` ${failures.length} bench(es) FAILED.` : '';
  return (
    `${targeted.length} figures with a target: ${passed} PASS, ${missed} MISS; ` +
    `${info} informational.${failed}`
  );
}

/** Integers with thousands separators; other values to three significant digits. */
function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) || Math.abs(value) >= 1000) {
    return Math.round(value).toLocaleString('en-US');
  }
  return value.toPrecision(3);
}

function formatValue(value: number, unit: string): string {
  return `${formatNumber(value)} ${unit}`;
}

/** A pipe would end the cell early. */
function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|');
}
