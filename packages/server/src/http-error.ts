// How the server's HTTP side states a TandemError: the body (the Open Inference Protocol's `error`
// message, plus Tandem's code and retryability) and the Retry-After header. One place, because
// three writers use it: fastify's error handler, and two that answer on the raw socket before
// fastify sees a request (the gateway refusing a WebSocket upgrade, and the server refusing a
// request that is not valid HTTP or did not arrive in time); a client reads them all alike.

import { STATUS_CODES } from 'node:http';
import { ERROR_CODES, type ErrorCode, type TandemError } from '@tandem/shared';

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

/**
 * A whole HTTP/1.1 response stating `error`, for a raw socket that is closed after it: the status
 * of the error's code (unless `status` is given), the same body and Retry-After as every other
 * error answer, and `Connection: close`.
 */
export function rawHttpErrorResponse(error: TandemError, status?: number): string {
  const code = status ?? ERROR_CODES[error.code].httpStatus;
  const body = JSON.stringify(httpErrorBody(error));
  const retryAfter = retryAfterHeader(error);
  return `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Error'}\r\nConnection: close\r\nContent-Type: application/json\r\n${retryAfter === undefined ? '' : `Retry-After: ${retryAfter}\r\n`}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}
