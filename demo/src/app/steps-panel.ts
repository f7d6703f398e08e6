// The "where each step ran" panel: one row per model call with the side, backend, cold or warm,
// any fallback and its code, and where the time went. This is the demo's answer to "what ran
// where, and why".

import type { RunResult } from '@tandem/client';
import { formatMs, sideName } from './format.js';

/** One model call of an OCR run, as the panel shows it. */
export interface StepRecord {
  /** "Find text", "Read lines 1–6"… */
  readonly step: string;
  readonly model: string;
  readonly result: RunResult;
}

/** Renders the panel's rows (newest run only; earlier runs are replaced). */
export function renderSteps(body: HTMLTableSectionElement, steps: readonly StepRecord[]): void {
  if (steps.length === 0) {
    const row = body.ownerDocument.createElement('tr');
    row.className = 'empty';
    row.append(cell('No steps yet.', { colSpan: 9 }));
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...steps.map((step) => stepRow(body.ownerDocument, step)));
}

function stepRow(document: Document, { step, model, result }: StepRecord): HTMLTableRowElement {
  const row = document.createElement('tr');
  row.dataset.model = model;
  row.dataset.placement = result.placement;
  row.dataset.backend = result.backend;
  if (result.fallback !== undefined) row.dataset.fallback = result.fallback.code;

  const stepCell = cell(step);
  const modelName = document.createElement('small');
  modelName.textContent = model;
  stepCell.append(document.createElement('br'), modelName);

  const where = cell('');
  const badge = document.createElement('span');
  badge.className = `badge ${result.placement}`;
  badge.textContent = `${sideName(result.placement)} · ${result.backend}`;
  where.append(badge);
  const why = document.createElement('small');
  why.className = 'why';
  why.textContent = result.reason;
  where.append(document.createElement('br'), why);
  if (result.fallback !== undefined) {
    const fallback = document.createElement('small');
    fallback.className = 'fallback';
    fallback.textContent = `fell back: ${sideName(result.fallback.from)} failed with ${result.fallback.code}`;
    fallback.title = result.fallback.message;
    where.append(document.createElement('br'), fallback);
  }

  const start = cell(result.cold ? 'Cold' : 'Warm');
  start.className = result.cold ? 'cold' : 'warm';
  const t = result.timings;
  row.append(
    stepCell,
    where,
    start,
    cell(formatMs(t.downloadMs)),
    cell(formatMs(t.compileMs)),
    cell(formatMs(t.queueMs)),
    cell(formatMs(t.loadMs)),
    cell(formatMs(t.runMs)),
    cell(formatMs(t.totalMs), { className: 'total' }),
  );
  return row;
}

function cell(
  text: string,
  options: { colSpan?: number; className?: string } = {},
): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (options.colSpan !== undefined) td.colSpan = options.colSpan;
  if (options.className !== undefined) td.className = options.className;
  return td;
}
