// Small assertion functions that parse `unknown` values at a boundary (socket, worker, file) into
// trusted types. Each failure is a TandemError naming the path of the bad field.

import type { ErrorCode } from './error-codes.js';
import { TandemError } from './tandem-error.js';

/** Where a parsed value came from, for error messages, and which code a failure carries. */
export interface ParseContext {
  /** Dotted path of the value being parsed, e.g. `infer.inputs[0].dims`. */
  readonly path: string;
  /** The code a failure is reported with. @default 'E_PROTOCOL' */
  readonly code?: ErrorCode;
}

/** Longest string field accepted by default, in UTF-16 code units. */
export const DEFAULT_MAX_STRING_CHARS = 1024;

function fail(ctx: ParseContext, expected: string): never {
  throw new TandemError(ctx.code ?? 'E_PROTOCOL', `${ctx.path}: expected ${expected}`);
}

/**
 * A child field's context. Its path is built only when read (by an error): a decoder checks
 * dozens of fields a message, and building every path up front cost more than the checks.
 */
class FieldContext implements ParseContext {
  readonly code?: ErrorCode;
  readonly #parent: ParseContext;
  readonly #key: string | number;

  constructor(parent: ParseContext, key: string | number) {
    this.#parent = parent;
    this.#key = key;
    if (parent.code !== undefined) this.code = parent.code;
  }

  get path(): string {
    const base = this.#parent.path;
    return typeof this.#key === 'number' ? `${base}[${this.#key}]` : `${base}.${this.#key}`;
  }
}

/** Narrows the context to a child field. */
export function at(ctx: ParseContext, key: string | number): ParseContext {
  return new FieldContext(ctx, key);
}

/** A plain object (not null, not an array). */
export function expectRecord(value: unknown, ctx: ParseContext): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(ctx, 'an object');
  return value as Record<string, unknown>;
}

/** A string of at most `maxChars` UTF-16 code units, and at least one unless `allowEmpty`. */
export function expectString(
  value: unknown,
  ctx: ParseContext,
  maxChars: number = DEFAULT_MAX_STRING_CHARS,
  allowEmpty = false,
): string {
  if (typeof value !== 'string') fail(ctx, 'a string');
  if (!allowEmpty && value.length === 0) fail(ctx, 'a non-empty string');
  if (value.length > maxChars) fail(ctx, `a string of at most ${maxChars} characters`);
  return value;
}

/** An integer in `[min, max]`. */
export function expectInteger(value: unknown, ctx: ParseContext, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(ctx, `an integer in [${min}, ${max}]`);
  }
  return value;
}

/** A finite number in `[min, max]`. */
export function expectNumber(value: unknown, ctx: ParseContext, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    fail(ctx, `a number in [${min}, ${max}]`);
  }
  return value;
}

/** A boolean. */
export function expectBoolean(value: unknown, ctx: ParseContext): boolean {
  if (typeof value !== 'boolean') fail(ctx, 'a boolean');
  return value;
}

/** An array of at most `maxLength` items. */
export function expectArray(value: unknown, ctx: ParseContext, maxLength: number): unknown[] {
  if (!Array.isArray(value)) fail(ctx, 'an array');
  if (value.length > maxLength) fail(ctx, `an array of at most ${maxLength} items`);
  return value;
}

/** One of the given string literals. */
export function expectOneOf<T extends string>(
  value: unknown,
  ctx: ParseContext,
  options: readonly T[],
): T {
  if (typeof value !== 'string' || !(options as readonly string[]).includes(value)) {
    fail(ctx, `one of ${options.join(', ')}`);
  }
  return value as T;
}

/** Parses `value` with `parse` unless it is undefined. */
export function optional<T>(
  value: unknown,
  ctx: ParseContext,
  parse: (value: unknown, ctx: ParseContext) => T,
): T | undefined {
  return value === undefined ? undefined : parse(value, ctx);
}
