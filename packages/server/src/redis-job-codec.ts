// How a job crosses Redis between a gateway and a worker. Tensors never become JSON: the input is
// the protocol's own `infer` message as one binary frame (raw tensor bytes, 8-byte aligned) stored
// in a key beside the BullMQ job, and the outcome is a `result`, `error` or `model` message frame
// stored the same way, so a TandemError keeps its code across the hop. The BullMQ job itself
// carries only a few small JSON fields, parsed at the boundary like everything else that arrives.

import {
  TandemError,
  at,
  decodeClientMessage,
  decodeServerMessage,
  encodeMessage,
  expectNumber,
  expectRecord,
  expectString,
  optional,
  type InferMessage,
  type ModelStatus,
  type ParseContext,
} from '@tandem/shared';
import type { JobOutcome, JobRequest, JobResult } from './job.js';

/** The JSON data of an `infer` BullMQ job. */
export interface InferJobData {
  /** Who submitted it (an API key id): scopes the client's id. */
  readonly owner: string;
  /** The client's job id. */
  readonly id: string;
  readonly model: string;
  readonly version: string;
  /** Epoch milliseconds by which the job must be done, if it has a deadline. */
  readonly deadlineAt?: number;
  /** How long the worker keeps the outcome for the gateway (and for `resume`), in ms. */
  readonly resultTtlMs?: number;
}

/** The JSON data of a `warm` BullMQ job. */
export interface WarmJobData {
  readonly model: string;
  readonly version: string;
}

/** What a worker leaves as a BullMQ job's return value (the outcome frame holds the rest). */
export interface JobSummary {
  readonly ok: boolean;
  /** The error code when the job failed. */
  readonly code?: string;
  /** The worker that ran it (its BullMQ worker name). */
  readonly worker: string;
}

/** A stored outcome, decoded. */
export type StoredOutcome =
  | { readonly kind: 'job'; readonly outcome: JobOutcome }
  | { readonly kind: 'model'; readonly status: ModelStatus };

const DATA: ParseContext = { path: 'job data', code: 'E_PROTOCOL' };

/** Parses an `infer` job's data (it comes from Redis: anything may be there). */
export function parseInferJobData(value: unknown): InferJobData {
  const record = expectRecord(value, DATA);
  const deadlineAt = optional(record.deadlineAt, at(DATA, 'deadlineAt'), (v, c) =>
    expectNumber(v, c, 0, Number.MAX_SAFE_INTEGER),
  );
  const resultTtlMs = optional(record.resultTtlMs, at(DATA, 'resultTtlMs'), (v, c) =>
    expectNumber(v, c, 1, Number.MAX_SAFE_INTEGER),
  );
  const data = {
    ...(resultTtlMs === undefined ? {} : { resultTtlMs }),
    owner: expectString(record.owner, at(DATA, 'owner'), 1024),
    id: expectString(record.id, at(DATA, 'id'), 1024),
    model: expectString(record.model, at(DATA, 'model'), 256),
    version: expectString(record.version, at(DATA, 'version'), 256),
  };
  return deadlineAt === undefined ? data : { ...data, deadlineAt };
}

/** Parses a `warm` job's data. */
export function parseWarmJobData(value: unknown): WarmJobData {
  const record = expectRecord(value, DATA);
  return {
    model: expectString(record.model, at(DATA, 'model'), 256),
    version: expectString(record.version, at(DATA, 'version'), 256),
  };
}

/** A job's input as one binary frame: the `infer` message a worker will run. */
export function encodeJobInput(request: JobRequest, version: string): Uint8Array {
  return encodeMessage({
    type: 'infer',
    id: request.id,
    model: request.model,
    version,
    inputs: request.inputs,
    ...(request.outputs === undefined ? {} : { outputs: request.outputs }),
    priority: request.priority,
  });
}

/** Decodes a job's input frame; `E_PROTOCOL` when it is not an `infer` message. */
export function decodeJobInput(bytes: Uint8Array): InferMessage {
  const message = decodeClientMessage(bytes);
  if (message.type !== 'infer') {
    throw new TandemError('E_PROTOCOL', `a job input holds a ${message.type} message`);
  }
  return message;
}

/** A finished job's outcome as one binary frame. */
export function encodeJobOutcome(id: string, outcome: JobOutcome): Uint8Array {
  if (outcome.ok) return outcome.frame ?? encodeMessage({ type: 'result', ...outcome.result });
  const { error } = outcome;
  return encodeMessage({
    type: 'error',
    id,
    code: error.code,
    message: error.message,
    retryable: error.retryable,
    ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
  });
}

/** A warm call's outcome (the model's status once ready) as one binary frame. */
export function encodeModelOutcome(status: ModelStatus): Uint8Array {
  return encodeMessage({ type: 'model', model: status });
}

/** Decodes an outcome frame; `E_PROTOCOL` for anything but `result`, `error` or `model`. */
export function decodeOutcome(bytes: Uint8Array): StoredOutcome {
  const message = decodeServerMessage(bytes);
  switch (message.type) {
    case 'result': {
      const result: JobResult = {
        id: message.id,
        model: message.model,
        version: message.version,
        outputs: message.outputs,
        backend: message.backend,
        coldStart: message.coldStart,
        timings: message.timings,
      };
      return { kind: 'job', outcome: { ok: true, result } };
    }
    case 'error':
      return {
        kind: 'job',
        outcome: {
          ok: false,
          error: new TandemError(message.code, message.message, {
            retryable: message.retryable,
            ...(message.retryAfterMs === undefined ? {} : { retryAfterMs: message.retryAfterMs }),
          }),
        },
      };
    case 'model':
      return { kind: 'model', status: message.model };
    default:
      throw new TandemError('E_PROTOCOL', `a job outcome holds a ${message.type} message`);
  }
}
