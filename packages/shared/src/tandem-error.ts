// The one error class. It crosses worker and socket boundaries as a plain object
// (SerializedError) and comes back as a TandemError with its code, retryability and retry hint intact.

import { ERROR_CODES, isErrorCode, type ErrorCode } from './error-codes.js';

/** The wire form of a {@link TandemError}: what `toJSON()` gives and `fromSerialized()` takes. */
export interface SerializedError {
  /** One of {@link ERROR_CODES}; an unknown code decodes as `E_PROTOCOL`. */
  readonly code: ErrorCode;
  /** For people, and may change; never parse it. Cut to 4096 characters when decoded. */
  readonly message: string;
  /** Whether the same call can succeed later; absent, `fromSerialized` uses the code's default. */
  readonly retryable: boolean;
  /** How long to wait before trying again, in ms; absent when the sender does not know. */
  readonly retryAfterMs?: number;
}

/** Options for {@link TandemError}. */
export interface TandemErrorOptions {
  /** Overrides the code's default retryability from {@link ERROR_CODES}. */
  readonly retryable?: boolean;
  /** How long the caller should wait before trying again, in milliseconds. */
  readonly retryAfterMs?: number;
  /** The underlying error, kept for logs; never sent over the wire. */
  readonly cause?: unknown;
}

/** Longest message kept when an error is decoded from the wire, in UTF-16 code units. */
const MAX_WIRE_MESSAGE_CHARS = 4096;

/**
 * The only error Tandem throws across a boundary. Test `code`, not `message`: messages are for people
 * and may change; codes are the contract (see docs/errors.md).
 */
export class TandemError extends Error {
  /** The error code, one of {@link ERROR_CODES}. */
  readonly code: ErrorCode;
  /** Whether the same call can succeed if tried again later. */
  readonly retryable: boolean;
  /** How long to wait before trying again, in milliseconds, when the sender knows. */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: TandemErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TandemError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The wire form: code, message, retryable and retryAfterMs. The cause stays behind. */
  toJSON(): SerializedError {
    return this.retryAfterMs === undefined
      ? { code: this.code, message: this.message, retryable: this.retryable }
      : {
          code: this.code,
          message: this.message,
          retryable: this.retryable,
          retryAfterMs: this.retryAfterMs,
        };
  }

  /**
   * Rebuilds a TandemError from its wire form. Accepts `unknown` because it parses what a socket
   * or worker sent: anything that is not a well-formed SerializedError becomes `E_PROTOCOL`.
   */
  static fromSerialized(value: unknown): TandemError {
    if (typeof value !== 'object' || value === null) {
      return new TandemError('E_PROTOCOL', 'serialized error is not an object');
    }
    const record = value as Record<string, unknown>;
    const { code, message, retryable, retryAfterMs } = record;
    if (!isErrorCode(code)) {
      return new TandemError('E_PROTOCOL', 'serialized error has an unknown code');
    }
    if (typeof message !== 'string') {
      return new TandemError('E_PROTOCOL', 'serialized error has no message');
    }
    if (retryable !== undefined && typeof retryable !== 'boolean') {
      return new TandemError('E_PROTOCOL', 'serialized error has a non-boolean retryable');
    }
    if (retryAfterMs !== undefined && !isNonNegativeFinite(retryAfterMs)) {
      return new TandemError('E_PROTOCOL', 'serialized error has an invalid retryAfterMs');
    }
    const options: { retryable?: boolean; retryAfterMs?: number } = {};
    if (retryable !== undefined) options.retryable = retryable;
    if (retryAfterMs !== undefined) options.retryAfterMs = retryAfterMs;
    return new TandemError(code, message.slice(0, MAX_WIRE_MESSAGE_CHARS), options);
  }

  /**
   * Wraps anything thrown into a TandemError: a TandemError is returned as is, anything else becomes
   * `fallbackCode` (default `E_INTERNAL`) with the original kept as `cause`.
   */
  static from(error: unknown, fallbackCode: ErrorCode = 'E_INTERNAL'): TandemError {
    if (error instanceof TandemError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new TandemError(fallbackCode, message, { cause: error });
  }
}

/** True when `error` is a TandemError, optionally with the given code. */
export function isTandemError(error: unknown, code?: ErrorCode): error is TandemError {
  return error instanceof TandemError && (code === undefined || error.code === code);
}

function isNonNegativeFinite(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}
