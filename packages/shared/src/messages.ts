// Every WebSocket message, one interface each, and one union per direction. The frame codec turns
// these into binary frames and back; `parseMessageFields` is the boundary parser for their headers.

import {
  at,
  expectArray,
  expectBoolean,
  expectInteger,
  expectNumber,
  expectOneOf,
  expectRecord,
  expectString,
  optional,
  type ParseContext,
} from './assert.js';
import { isErrorCode, type ErrorCode } from './error-codes.js';
import { BACKENDS, type Backend } from './manifest.js';
import {
  MAX_ID_CHARS,
  MAX_NAME_CHARS,
  parseProgressEvent,
  type ProgressEvent,
} from './progress.js';
import { TandemError } from './tandem-error.js';
import type { TensorMap } from './tensor.js';

/** The protocol version this package speaks. A peer with another version gets `E_PROTOCOL_VERSION`. */
export const PROTOCOL_VERSION = 1;

/** Lowest job priority. */
export const PRIORITY_MIN = 0;
/** Highest job priority: runs before everything queued with a lower one. */
export const PRIORITY_MAX = 10;
/** Priority of a job that names none. */
export const DEFAULT_PRIORITY = 5;

/** Most items one list may hold: job ids in `resume`, output names in `infer.outputs`. */
export const MAX_LIST_ITEMS = 1024;

// ---- client → server ------------------------------------------------------------------------

/** First message on a connection: protocol version, who is calling, and optionally the API key. */
export interface HelloMessage {
  readonly type: 'hello';
  /** The client's {@link PROTOCOL_VERSION}; any other gets `E_PROTOCOL_VERSION`, then a close. */
  readonly protocolVersion: number;
  /** The calling library, for information: the server does not act on it. */
  readonly client: {
    /** Its package name, e.g. `@tandem/client`. */
    readonly name: string;
    /** Its version. */
    readonly version: string;
  };
  /**
   * The API key, when the upgrade carried none; read only by a server that allows keys in
   * `hello` (`allowKeyInHello`), which otherwise refuses a keyless upgrade. Never in the URL.
   */
  readonly apiKey?: string;
}

/** Starts loading a model without running anything (the page-load "wake up" call). */
export interface WarmMessage {
  readonly type: 'warm';
  /** The model's name on the server; an unknown one gets `E_MODEL_NOT_FOUND` with `id: null`. */
  readonly model: string;
  /** The version to load; the server's latest (highest) version when absent. */
  readonly version?: string;
}

/** Runs a model. Progress, then one `result` or one `error`, follow with the same `id`. */
export interface InferMessage {
  readonly type: 'infer';
  /** Chosen by the client, unique among its in-flight jobs; used by `cancel` and `resume`. */
  readonly id: string;
  /** The model's name on the server. */
  readonly model: string;
  /** The version to run; the server's latest (highest) version when absent. */
  readonly version?: string;
  /** Input tensors by input name, checked against the model's declared inputs before queueing. */
  readonly inputs: TensorMap;
  /** Names of the outputs wanted; all outputs when absent. */
  readonly outputs?: readonly string[];
  /** {@link PRIORITY_MIN}..{@link PRIORITY_MAX}; higher runs first. @default DEFAULT_PRIORITY */
  readonly priority?: number;
  /** Milliseconds from the server's receipt by which the job must finish, or it is not run. */
  readonly deadlineMs?: number;
  /** Set false to get only the result, without progress messages. @default true */
  readonly progress?: boolean;
}

/** Cancels a job: removed if queued, its result dropped if running. */
export interface CancelMessage {
  readonly type: 'cancel';
  /** The `infer` id of the job; an unknown or already finished job is ignored, with no answer. */
  readonly id: string;
}

/** After a reconnect: asks for the outcome of jobs submitted on an earlier connection. */
export interface ResumeMessage {
  readonly type: 'resume';
  /**
   * `infer` ids sent on an earlier connection with the same API key, at most
   * {@link MAX_LIST_ITEMS}; each unknown or already acknowledged one gets `E_JOB_NOT_FOUND`.
   */
  readonly ids: readonly string[];
}

/** Application-level heartbeat; the server answers with `pong` carrying the same nonce. */
export interface PingMessage {
  readonly type: 'ping';
  /** Any number in [0, 2⁵³−1] the client picks to match the `pong` (the client counts up). */
  readonly nonce: number;
}

/** Any message a client sends. */
export type ClientMessage =
  HelloMessage | WarmMessage | InferMessage | CancelMessage | ResumeMessage | PingMessage;

// ---- server → client ------------------------------------------------------------------------

/** The lifecycle state of a model on the server. */
export type ModelState = 'unloaded' | 'loading' | 'warming' | 'ready' | 'failed';

/** Every {@link ModelState}. */
export const MODEL_STATES: readonly ModelState[] = [
  'unloaded',
  'loading',
  'warming',
  'ready',
  'failed',
];

/** Measured moving averages for a model, in milliseconds; absent until measured. */
export interface ModelEstimates {
  /** Loading the model file into a new instance's session. */
  readonly loadMs?: number;
  /** The warm-up run that follows a load. */
  readonly warmupMs?: number;
  /** One run once the model is ready (a batched run counts once, whatever its size). */
  readonly runMs?: number;
}

/** A model as the server sees it. */
export interface ModelStatus {
  /** The model's name on the server. */
  readonly name: string;
  /** The version this status is about: each version of a model has a status of its own. */
  readonly version: string;
  /** `ready` while any instance is ready, `failed` (see `reason`) when it cannot load. */
  readonly state: ModelState;
  /** Instances ready to run jobs; ones still loading or warming up are not counted. */
  readonly instances: number;
  /** Why the model is `failed`; absent otherwise. */
  readonly reason?: string;
  /** The server's measured averages; each field absent until measured. */
  readonly estimates?: ModelEstimates;
}

/** Server limits a client should respect. */
export interface ServerLimits {
  /** Largest frame or HTTP body the server takes, in bytes; a larger frame closes the socket. */
  readonly maxPayloadBytes: number;
  /** Jobs that may wait in a model's queue (its model.json may set its own); past it, `E_BUSY`. */
  readonly maxQueue: number;
  /** How often the server pings each connection, in ms; one silent a whole interval is dropped. */
  readonly heartbeatIntervalMs: number;
  /** How long a finished job's outcome stays resumable while no client acknowledged it, in ms. */
  readonly resultTtlMs: number;
}

/** Answer to `hello`: the server, its models and their states, and its limits. */
export interface WelcomeMessage {
  readonly type: 'welcome';
  /** The server's {@link PROTOCOL_VERSION}: the client's too, as a mismatch gets an `error`. */
  readonly protocolVersion: number;
  /** The server software, for information. */
  readonly server: {
    /** Its package name, e.g. `@tandem/server`. */
    readonly name: string;
    /** Its version. */
    readonly version: string;
  };
  /** Every model version the server serves, as of now; `model` messages carry later changes. */
  readonly models: readonly ModelStatus[];
  /** Limits the server enforces on this connection. */
  readonly limits: ServerLimits;
}

/** Progress of one job. */
export interface ProgressMessage {
  readonly type: 'progress';
  /** The event; `jobId` is the `infer` id. No final stage: `result` or `error` ends the job. */
  readonly event: ProgressEvent;
}

/** Where the time of a job went, in milliseconds. */
export interface JobTimings {
  /** Waiting in the queue for an instance, not counting `loadMs` and `warmupMs`. */
  readonly queueMs: number;
  /** Waiting for the model to load: 0 unless the job was a cold start. */
  readonly loadMs: number;
  /** Waiting for the warm-up run after that load: 0 unless the job was a cold start. */
  readonly warmupMs: number;
  /** The run itself; for jobs batched into one run, that whole run. */
  readonly runMs: number;
  /** From the server's receipt of the job to its outputs: the other four plus overheads. */
  readonly totalMs: number;
}

/** The outputs of a finished job. */
export interface ResultMessage {
  readonly type: 'result';
  /** The `infer` id of the job. */
  readonly id: string;
  /** The model's name, as the `infer` gave it. */
  readonly model: string;
  /** The version that ran: the latest one when the `infer` named none. */
  readonly version: string;
  /** Output tensors by name: those `infer.outputs` named, else all of the model's. */
  readonly outputs: TensorMap;
  /** The execution provider that ran the job: the first configured one the server could start. */
  readonly backend: Backend;
  /** True when this job had to wait for the model to load. */
  readonly coldStart: boolean;
  /** Where the job's time went on the server, in ms to the microsecond. */
  readonly timings: JobTimings;
}

/** A failed job (`id`), or a connection-level problem (`id: null`). */
export interface ErrorMessage {
  readonly type: 'error';
  /**
   * The job's `infer` id; null for a connection-level problem (a malformed frame, a refused
   * `hello`, a `warm` that failed).
   */
  readonly id: string | null;
  /** What went wrong, from docs/errors.md: test this, not `message`. */
  readonly code: ErrorCode;
  /** For people (may be empty, may change between versions); never parse it. */
  readonly message: string;
  /** Whether the same request can succeed later; may differ from the code's default. */
  readonly retryable: boolean;
  /** How long to wait before trying again, in ms; absent when the server does not know. */
  readonly retryAfterMs?: number;
}

/** A model changed lifecycle state. */
export interface ModelMessage {
  readonly type: 'model';
  /** The model version's new status; also sent, `ready`, in answer to a `warm` once it is ready. */
  readonly model: ModelStatus;
}

/** Answer to `ping`. */
export interface PongMessage {
  readonly type: 'pong';
  /** The `nonce` of the `ping` this answers. */
  readonly nonce: number;
}

/** Any message a server sends. */
export type ServerMessage =
  WelcomeMessage | ProgressMessage | ResultMessage | ErrorMessage | ModelMessage | PongMessage;

/** Any message of either direction. */
export type Message = ClientMessage | ServerMessage;

/** The `type` of every client message. */
export const CLIENT_MESSAGE_TYPES = [
  'hello',
  'warm',
  'infer',
  'cancel',
  'resume',
  'ping',
] as const satisfies readonly ClientMessage['type'][];

/** The `type` of every server message. */
export const SERVER_MESSAGE_TYPES = [
  'welcome',
  'progress',
  'result',
  'error',
  'model',
  'pong',
] as const satisfies readonly ServerMessage['type'][];

/** True for messages a client sends. */
export function isClientMessage(message: Message): message is ClientMessage {
  return (CLIENT_MESSAGE_TYPES as readonly string[]).includes(message.type);
}

/** True for messages a server sends. */
export function isServerMessage(message: Message): message is ServerMessage {
  return (SERVER_MESSAGE_TYPES as readonly string[]).includes(message.type);
}

/** Longest API key accepted, in characters. */
const MAX_API_KEY_CHARS = 512;
/** Longest error message (or model `reason`) accepted, in characters. */
export const MAX_MESSAGE_CHARS = 4096;
/** Most models a welcome may list. */
const MAX_MODELS = 10_000;

/**
 * Parses the header fields of a message whose tensors were already decoded (`tensors`, for
 * `infer` and `result`). Builds a fresh object with only known fields.
 * @internal used by the frame codec
 */
export function parseMessageFields(
  header: Record<string, unknown>,
  tensors: TensorMap | undefined,
): Message {
  const type = header.type;
  const ctx: ParseContext = { path: typeof type === 'string' ? type.slice(0, 32) : 'message' };
  switch (type) {
    case 'hello': {
      const client = expectRecord(header.client, at(ctx, 'client'));
      const apiKey = optional(header.apiKey, at(ctx, 'apiKey'), (v, c) =>
        expectString(v, c, MAX_API_KEY_CHARS),
      );
      return withOptional<HelloMessage>(
        {
          type,
          protocolVersion: expectInteger(
            header.protocolVersion,
            at(ctx, 'protocolVersion'),
            0,
            65535,
          ),
          client: {
            name: expectString(client.name, at(ctx, 'client.name'), MAX_NAME_CHARS),
            version: expectString(client.version, at(ctx, 'client.version'), MAX_NAME_CHARS),
          },
        },
        { apiKey },
      );
    }
    case 'warm':
      return withOptional<WarmMessage>(
        { type, model: name(header.model, at(ctx, 'model')) },
        { version: optional(header.version, at(ctx, 'version'), name) },
      );
    case 'infer': {
      // Optional fields are parsed (and their contexts built) only when present: this runs once
      // per job, and most jobs send few of them.
      const message: Writable<InferMessage> = {
        type,
        id: id(header.id, at(ctx, 'id')),
        model: name(header.model, at(ctx, 'model')),
        inputs: tensors ?? {},
      };
      const { version, outputs, priority, deadlineMs, progress } = header;
      if (version !== undefined) message.version = name(version, at(ctx, 'version'));
      if (outputs !== undefined) message.outputs = nameList(outputs, at(ctx, 'outputs'));
      if (priority !== undefined) {
        message.priority = expectInteger(priority, at(ctx, 'priority'), PRIORITY_MIN, PRIORITY_MAX);
      }
      if (deadlineMs !== undefined) {
        message.deadlineMs = expectNumber(
          deadlineMs,
          at(ctx, 'deadlineMs'),
          0,
          Number.MAX_SAFE_INTEGER,
        );
      }
      if (progress !== undefined) message.progress = expectBoolean(progress, at(ctx, 'progress'));
      return message;
    }
    case 'cancel':
      return { type, id: id(header.id, at(ctx, 'id')) };
    case 'resume':
      return {
        type,
        ids: expectArray(header.ids, at(ctx, 'ids'), MAX_LIST_ITEMS).map((item, index) =>
          id(item, at(at(ctx, 'ids'), index)),
        ),
      };
    case 'ping':
    case 'pong':
      return {
        type,
        nonce: expectNumber(header.nonce, at(ctx, 'nonce'), 0, Number.MAX_SAFE_INTEGER),
      };
    case 'welcome': {
      const server = expectRecord(header.server, at(ctx, 'server'));
      const limits = expectRecord(header.limits, at(ctx, 'limits'));
      const count = (key: string): number =>
        expectInteger(limits[key], at(ctx, `limits.${key}`), 0, Number.MAX_SAFE_INTEGER);
      return {
        type,
        protocolVersion: expectInteger(
          header.protocolVersion,
          at(ctx, 'protocolVersion'),
          0,
          65535,
        ),
        server: {
          name: name(server.name, at(ctx, 'server.name')),
          version: name(server.version, at(ctx, 'server.version')),
        },
        models: expectArray(header.models, at(ctx, 'models'), MAX_MODELS).map((item, index) =>
          parseModelStatus(item, at(at(ctx, 'models'), index)),
        ),
        limits: {
          maxPayloadBytes: count('maxPayloadBytes'),
          maxQueue: count('maxQueue'),
          heartbeatIntervalMs: count('heartbeatIntervalMs'),
          resultTtlMs: count('resultTtlMs'),
        },
      };
    }
    case 'progress':
      return { type, event: parseProgressEvent(header.event, at(ctx, 'event')) };
    case 'result': {
      const timingsCtx = at(ctx, 'timings');
      const timings = expectRecord(header.timings, timingsCtx);
      const ms = (key: keyof JobTimings): number =>
        expectNumber(timings[key], at(timingsCtx, key), 0, Number.MAX_SAFE_INTEGER);
      return {
        type,
        id: id(header.id, at(ctx, 'id')),
        model: name(header.model, at(ctx, 'model')),
        version: name(header.version, at(ctx, 'version')),
        outputs: tensors ?? {},
        backend: expectOneOf(header.backend, at(ctx, 'backend'), BACKENDS),
        coldStart: expectBoolean(header.coldStart, at(ctx, 'coldStart')),
        timings: {
          queueMs: ms('queueMs'),
          loadMs: ms('loadMs'),
          warmupMs: ms('warmupMs'),
          runMs: ms('runMs'),
          totalMs: ms('totalMs'),
        },
      };
    }
    case 'error': {
      const code = header.code;
      if (!isErrorCode(code)) {
        throw new TandemError('E_PROTOCOL', 'error.code: expected a known error code');
      }
      return withOptional<ErrorMessage>(
        {
          type,
          id: header.id === null ? null : id(header.id, at(ctx, 'id')),
          code,
          message: expectString(header.message, at(ctx, 'message'), MAX_MESSAGE_CHARS, true),
          retryable: expectBoolean(header.retryable, at(ctx, 'retryable')),
        },
        {
          retryAfterMs: optional(header.retryAfterMs, at(ctx, 'retryAfterMs'), (v, c) =>
            expectNumber(v, c, 0, Number.MAX_SAFE_INTEGER),
          ),
        },
      );
    }
    case 'model':
      return { type, model: parseModelStatus(header.model, at(ctx, 'model')) };
    default:
      throw new TandemError(
        typeof type === 'string' ? 'E_UNKNOWN_MESSAGE' : 'E_PROTOCOL',
        typeof type === 'string'
          ? `unknown message type "${type.slice(0, 32)}"`
          : 'message.type: expected a string',
      );
  }
}

/** Parses a model status from a welcome or model message. */
function parseModelStatus(value: unknown, ctx: ParseContext): ModelStatus {
  const record = expectRecord(value, ctx);
  const status: {
    -readonly [K in keyof ModelStatus]: ModelStatus[K];
  } = {
    name: name(record.name, at(ctx, 'name')),
    version: name(record.version, at(ctx, 'version')),
    state: expectOneOf(record.state, at(ctx, 'state'), MODEL_STATES),
    instances: expectInteger(record.instances, at(ctx, 'instances'), 0, 1_000_000),
  };
  const reason = optional(record.reason, at(ctx, 'reason'), (v, c) =>
    expectString(v, c, MAX_MESSAGE_CHARS, true),
  );
  if (reason !== undefined) status.reason = reason;
  if (record.estimates !== undefined) {
    const estimates = expectRecord(record.estimates, at(ctx, 'estimates'));
    const out: { loadMs?: number; warmupMs?: number; runMs?: number } = {};
    for (const key of ['loadMs', 'warmupMs', 'runMs'] as const) {
      const v = optional(estimates[key], at(ctx, `estimates.${key}`), (x, c) =>
        expectNumber(x, c, 0, Number.MAX_SAFE_INTEGER),
      );
      if (v !== undefined) out[key] = v;
    }
    status.estimates = out;
  }
  return status;
}

function id(value: unknown, ctx: ParseContext): string {
  return expectString(value, ctx, MAX_ID_CHARS);
}

function name(value: unknown, ctx: ParseContext): string {
  return expectString(value, ctx, MAX_NAME_CHARS);
}

function nameList(value: unknown, ctx: ParseContext): string[] {
  return expectArray(value, ctx, MAX_LIST_ITEMS).map((item, index) => name(item, at(ctx, index)));
}

/** Adds the defined optional fields to a message: exactOptionalPropertyTypes forbids `undefined`. */
function withOptional<T>(base: T, extra: Record<string, unknown>): T {
  const out = base as Record<string, unknown>;
  for (const key in extra) {
    const value = extra[key];
    if (value !== undefined) out[key] = value;
  }
  return base;
}

/** A message type with its fields assignable, to build it up field by field. */
type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** `text` cut to {@link MAX_MESSAGE_CHARS}, ending in "…" when cut. */
function clampText(text: string): string {
  return text.length <= MAX_MESSAGE_CHARS ? text : `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…`;
}

function clampStatus(status: ModelStatus): ModelStatus {
  return status.reason === undefined || status.reason.length <= MAX_MESSAGE_CHARS
    ? status
    : { ...status, reason: clampText(status.reason) };
}

/**
 * The message with its free texts (an error's `message`, a model's `reason`) cut to what a
 * receiver accepts: a long text (an onnxruntime failure quoting a whole graph, say) would
 * otherwise make the whole message fail to decode, and its receiver see `E_PROTOCOL` instead of
 * the real code. Returns `message` itself when nothing is too long.
 */
export function fitTexts(message: Message): Message {
  switch (message.type) {
    case 'error':
      return message.message.length <= MAX_MESSAGE_CHARS
        ? message
        : { ...message, message: clampText(message.message) };
    case 'model': {
      const model = clampStatus(message.model);
      return model === message.model ? message : { ...message, model };
    }
    case 'welcome': {
      const models = message.models.map(clampStatus);
      return models.every((model, index) => model === message.models[index])
        ? message
        : { ...message, models };
    }
    default:
      return message;
  }
}
