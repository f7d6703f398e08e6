// Call options checked where a call enters the library, as its inputs are (tensor-inputs.ts). A
// value the protocol does not carry (priority 11 or 2.5, a negative or NaN deadline, an empty
// output name) used to reach the server, whose decoder refuses the whole frame as malformed with
// an `error` addressed to no job: the call then waited for ever. An unknown placement failed with
// E_INTERNAL from inside the router, and an unknown `where` of warm() did nothing and resolved.

import {
  MAX_LIST_ITEMS,
  MAX_NAME_CHARS,
  PLACEMENTS,
  PRIORITY_MAX,
  PRIORITY_MIN,
  TandemError,
} from '@tandem/shared';

/** Throws `E_INVALID_ARGUMENT` unless `placement` is undefined or one of {@link PLACEMENTS}. */
export function checkPlacement(placement: unknown, what = 'placement'): void {
  if (placement === undefined || (PLACEMENTS as readonly unknown[]).includes(placement)) return;
  throw invalid(`${what} must be one of ${PLACEMENTS.join(', ')}, not ${show(placement)}`);
}

/**
 * Throws `E_INVALID_ARGUMENT` naming the first of a call's options the protocol cannot carry:
 * `placement`, `priority` (an integer from 0 to 10), `deadlineMs` (a number of ms, 0 or more) and
 * `outputs` (at most 1024 names, each 1 to 256 characters).
 */
export function checkRunOptions(options: {
  readonly placement?: unknown;
  readonly priority?: unknown;
  readonly deadlineMs?: unknown;
  readonly outputs?: unknown;
}): void {
  checkPlacement(options.placement);
  const { priority, deadlineMs, outputs } = options;
  if (
    priority !== undefined &&
    !(
      Number.isInteger(priority) &&
      Number(priority) >= PRIORITY_MIN &&
      Number(priority) <= PRIORITY_MAX
    )
  ) {
    throw invalid(
      `priority must be an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}, not ${show(priority)}`,
    );
  }
  if (
    deadlineMs !== undefined &&
    !(typeof deadlineMs === 'number' && deadlineMs >= 0 && deadlineMs <= Number.MAX_SAFE_INTEGER)
  ) {
    throw invalid(`deadlineMs must be a number of ms, 0 or more, not ${show(deadlineMs)}`);
  }
  if (outputs === undefined) return;
  if (!Array.isArray(outputs) || outputs.length > MAX_LIST_ITEMS) {
    throw invalid(`outputs must be an array of at most ${MAX_LIST_ITEMS} output names`);
  }
  for (const name of outputs as unknown[]) {
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_CHARS) {
      throw invalid(
        `outputs must hold output names of 1 to ${MAX_NAME_CHARS} characters, not ${show(name)}`,
      );
    }
  }
}

/** Throws `E_INVALID_ARGUMENT` unless `model` is a model name: 1 to 256 characters. */
export function checkModelName(model: unknown): void {
  if (typeof model === 'string' && model.length > 0 && model.length <= MAX_NAME_CHARS) return;
  throw invalid(
    `a model name is a string of 1 to ${MAX_NAME_CHARS} characters, not ${show(model)}`,
  );
}

/** Throws `E_INVALID_ARGUMENT` unless `where` (of `warm()`) is undefined, local, remote or both. */
export function checkWarmWhere(where: unknown): void {
  if (where === undefined || where === 'local' || where === 'remote' || where === 'both') return;
  throw invalid(`where must be 'local', 'remote' or 'both', not ${show(where)}`);
}

function invalid(message: string): TandemError {
  return new TandemError('E_INVALID_ARGUMENT', message);
}

/** A value as a message shows it: strings quoted, the rest as JSON would not lose (NaN, -1). */
function show(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : String(value);
}
