// How the server's HTTP side states a TandemError: the body (the Open Inference Protocol's `error`
// message, plus Tandem's code and retryability) and the Retry-After header. One place, because two
// writers use it: fastify's error handler, and the gateway refusing a WebSocket upgrade on the raw
// socket before fastify sees the request; a client reads both alike.

import type { ErrorCode, TandemError } from '@tandem/shared';

/** The JSON body of every HTTP error answer. */
export interface HttpErrorBody {
  /** The message: the field KServe and Triton clients read. */
  readonly error: string;
  /** The Tandem error code. */
  readonly code: ErrorCode;
  /** Whether the same request can succeed later. */
  readonly retryable: boolean;
  /** How long to wait before trying again, in ms, when the server knows. */
  readonly retryAfterMs?: number;
}

/** The body of an HTTP error answer for `error`. */
export function httpErrorBody(error: TandemError): HttpErrorBody {
  return {
    error: error.message,
    code: error.code,
    retryable: error.retryable,
    ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
  };
}

/**
 * The Retry-After header value for `error` (whole seconds, at least 1, since the header has no
 * finer unit), or undefined when it carries no retryAfterMs.
 */
export function retryAfterHeader(error: TandemError): string | undefined {
  if (error.retryAfterMs === undefined) return undefined;
  return String(Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
}
