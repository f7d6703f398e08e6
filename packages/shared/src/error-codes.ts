// The one table of error codes. Every TandemError carries one of these; docs/errors.md has a row
// per code (a test keeps the two in step). `httpStatus` is what the server's HTTP side answers with,
// `retryable` says whether trying the same call again later can succeed.

/** What is known about one error code. */
export interface ErrorCodeInfo {
  /** Whether the same call can succeed if tried again later (possibly after `retryAfterMs`). */
  readonly retryable: boolean;
  /** The HTTP status the server answers with for this code. */
  readonly httpStatus: number;
  /** One line: what went wrong. */
  readonly meaning: string;
}

/**
 * Every error code Tandem uses, with its default retryability and HTTP status.
 * Client, server, worker and wire all speak these codes; nothing else is ever thrown across a boundary.
 */
export const ERROR_CODES = {
  E_PROTOCOL: {
    retryable: false,
    httpStatus: 400,
    meaning:
      'A frame or message is malformed: truncated, inconsistent lengths, bad JSON, bad field.',
  },
  E_PROTOCOL_VERSION: {
    retryable: false,
    httpStatus: 400,
    meaning: 'The peer speaks a protocol version this side does not support.',
  },
  E_UNKNOWN_MESSAGE: {
    retryable: false,
    httpStatus: 400,
    meaning: 'A message type this side does not know, or one sent in the wrong direction.',
  },
  E_UNKNOWN_DTYPE: {
    retryable: false,
    httpStatus: 400,
    meaning: 'A tensor names a data type that is not one of the supported ONNX types.',
  },
  E_PAYLOAD_TOO_LARGE: {
    retryable: false,
    httpStatus: 413,
    meaning:
      "A frame or request body is larger than its receiver takes (maxPayloadBytes, a socket's cap).",
  },
  E_REQUEST_TIMEOUT: {
    retryable: true,
    httpStatus: 408,
    meaning:
      "An HTTP request did not arrive in full within the server's requestTimeoutMs (a body sent too slowly, or not at all).",
  },
  E_UNSUPPORTED_ENCODING: {
    retryable: false,
    httpStatus: 415,
    meaning:
      'A request body comes with a Content-Encoding the server does not decode (it takes gzip and deflate).',
  },
  E_UNAUTHORIZED: {
    retryable: false,
    httpStatus: 401,
    meaning: 'The API key is missing or not valid.',
  },
  E_FORBIDDEN_ORIGIN: {
    retryable: false,
    httpStatus: 403,
    meaning: 'The page Origin is not on the server allowlist.',
  },
  E_RATE_LIMITED: {
    retryable: true,
    httpStatus: 429,
    meaning:
      'The API key is over its request rate or concurrency limit (scaled out: across all gateways).',
  },
  E_MODEL_NOT_FOUND: {
    retryable: false,
    httpStatus: 404,
    meaning: 'No model (or no such version) with that name.',
  },
  E_ROUTE_NOT_FOUND: {
    retryable: false,
    httpStatus: 404,
    meaning: 'No HTTP route on this server answers that method and path.',
  },
  E_MODEL_LOAD_FAILED: {
    retryable: false,
    httpStatus: 500,
    meaning: 'The model file could not be loaded (corrupt, truncated, not ONNX, unsupported).',
  },
  E_INPUT_MISSING: {
    retryable: false,
    httpStatus: 400,
    meaning: 'A required model input was not given, or an unknown input name was given.',
  },
  E_INPUT_DTYPE: {
    retryable: false,
    httpStatus: 400,
    meaning: 'An input tensor has a data type the model does not accept.',
  },
  E_INPUT_SHAPE: {
    retryable: false,
    httpStatus: 400,
    meaning:
      'An input tensor has the wrong rank, dims, element count or byte length for the model.',
  },
  E_OUTPUT_NOT_FOUND: {
    retryable: false,
    httpStatus: 400,
    meaning: 'A requested output name is not an output of the model.',
  },
  E_BUSY: {
    retryable: true,
    httpStatus: 503,
    meaning: 'The queue for this model is full; try again after retryAfterMs.',
  },
  E_DEADLINE_EXCEEDED: {
    retryable: false,
    httpStatus: 504,
    meaning: 'The job could not start or finish before its deadline; it was not run late.',
  },
  E_CANCELLED: {
    retryable: false,
    httpStatus: 499,
    meaning:
      'The job was cancelled by the caller (`cancel()`, an aborted signal, or `tandem.close()`).',
  },
  E_SHUTTING_DOWN: {
    retryable: true,
    httpStatus: 503,
    meaning: 'The server is draining for shutdown and takes no new work.',
  },
  E_JOB_NOT_FOUND: {
    retryable: false,
    httpStatus: 404,
    meaning:
      'No job with that id is known (never submitted, already received, or its result expired).',
  },
  E_DUPLICATE_JOB: {
    retryable: false,
    httpStatus: 409,
    meaning:
      'A job with that id is already in flight under the same API key, on any connection (without keys, for any caller).',
  },
  E_NETWORK: {
    retryable: true,
    httpStatus: 502,
    meaning: 'The connection to the server failed or was lost.',
  },
  E_RUNTIME: {
    retryable: false,
    httpStatus: 500,
    meaning:
      'The inference runtime failed while running the model, or the local worker running it stopped.',
  },
  E_NO_BACKEND: {
    retryable: false,
    httpStatus: 501,
    meaning: 'No execution backend that this model needs is available on this device.',
  },
  E_UNSUPPORTED_OP: {
    retryable: false,
    httpStatus: 501,
    meaning: 'The model uses an operator the chosen backend does not implement.',
  },
  E_DEVICE_LOST: {
    retryable: true,
    httpStatus: 503,
    meaning: 'The GPU device was lost (driver reset, tab in background, GPU process crash).',
  },
  E_OUT_OF_MEMORY: {
    retryable: true,
    httpStatus: 507,
    meaning: 'The backend ran out of memory for this model or input.',
  },
  E_DOWNLOAD: {
    retryable: true,
    httpStatus: 502,
    meaning: 'A model file could not be downloaded.',
  },
  E_INTEGRITY: {
    retryable: false,
    httpStatus: 502,
    meaning: 'A downloaded model file does not match its sha256 in the manifest.',
  },
  E_QUEUE_UNAVAILABLE: {
    retryable: true,
    httpStatus: 503,
    meaning:
      "Redis (scaled out) cannot be reached: the job was not accepted, or `/v1/usage` or the key's limits could not be read.",
  },
  E_ATTEMPTS_EXHAUSTED: {
    retryable: false,
    httpStatus: 500,
    meaning: 'The job failed on every attempt it was allowed (for example it crashed each worker).',
  },
  E_INVALID_ARGUMENT: {
    retryable: false,
    httpStatus: 400,
    meaning: 'An API was called with an argument or option it does not accept.',
  },
  E_INTERNAL: {
    retryable: false,
    httpStatus: 500,
    meaning: 'An unexpected failure inside Tandem; the message says where.',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** One of the codes in {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** True when `value` is one of the codes in {@link ERROR_CODES}. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}
