// The Open Inference Protocol v2 (KServe / Triton REST API) over HTTP, with its binary-data
// extension, so existing KServe and Triton clients work against Tandem unchanged:
//   GET  /v2, /v2/health/live, /v2/health/ready
//   POST /v2/repository/index, /v2/repository/models/{m}/load|unload   (oip-repository.ts)
//   GET  /v2/models/{m}[/versions/{v}], /v2/models/{m}[/versions/{v}]/ready
//   POST /v2/models/{m}[/versions/{v}]/infer   (JSON, or JSON + binary with Inference-Header-Content-Length,
//                                               or Triton's raw binary request when that header is 0;
//                                               any of them gzip or deflate, with Content-Encoding)
// Request `parameters` understood as Triton does: `priority` (0 default, 1 highest) and `timeout` (µs).
// Response `parameters` carry Tandem's own `tandem_*` entries (what ran the job and where its time
// went, as the WebSocket `result` says); OIP allows any, and Triton/KServe clients pass them over.

import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  DEFAULT_PRIORITY,
  DTYPE_TO_OIP,
  OIP_DATATYPES,
  OIP_HEADER_LENGTH_HEADER,
  OIP_TO_DTYPE,
  type OipDatatype,
  PRIORITY_MAX,
  PRIORITY_MIN,
  TandemError,
  ZERO_COPY_MIN_BYTES,
  at,
  bytesPerElement,
  elementCount,
  expectArray,
  expectBoolean,
  expectInteger,
  expectNumber,
  expectOneOf,
  expectRecord,
  expectString,
  fromFloat16Bits,
  optional,
  toFloat16Bits,
  viewTensorData,
  type ParseContext,
  type Tensor,
  type TensorDtype,
  type TensorMap,
  type TensorSpec,
} from '@tandem/shared';
import type { ApiKeyRecord, ApiKeys } from './api-keys.js';
import { takeRawBodies } from './content-encoding.js';
import type { ModelSignature } from './input-check.js';
import type { DispatchedModel, JobDispatcher } from './job-dispatcher.js';
import type { JobResult } from './job.js';
import type { RejectionCounter } from './metrics.js';
import { registerRepositoryRoutes } from './oip-repository.js';

/** The header a client sets when the body carries binary tensor data after the JSON. */
export const HEADER_LENGTH_HEADER = OIP_HEADER_LENGTH_HEADER;

/** What the OIP routes need from the server. */
export interface OipOptions {
  /** Runs the jobs: the in-process ModelManager, or the Redis dispatcher when scaled out. */
  readonly manager: JobDispatcher;
  readonly keys: ApiKeys;
  readonly authenticate: (request: FastifyRequest) => ApiKeyRecord;
  /**
   * Counts refusals for /metrics. The server's error handler counts what the routes throw; the
   * routes tell it which of those were counted by a model host or are not refusals at all.
   */
  readonly rejections: RejectionCounter;
  readonly serverName: string;
  readonly serverVersion: string;
  /** The largest infer body taken, in bytes, inflated when it comes compressed (413 past it). */
  readonly maxPayloadBytes: number;
}

/** Registers the OIP v2 routes. */
export function registerOipRoutes(fastify: FastifyInstance, options: OipOptions): void {
  const { manager } = options;

  fastify.get('/v2', async () => ({
    name: options.serverName,
    version: options.serverVersion,
    extensions: ['binary_tensor_data', 'model_repository'],
  }));
  registerRepositoryRoutes(fastify, options);
  fastify.get('/v2/health/live', async () => ({ live: true }));
  fastify.get('/v2/health/ready', async (_request, reply) => {
    const ready = !manager.draining;
    return reply.code(ready ? 200 : 503).send({ ready });
  });

  const hostOf = (request: FastifyRequest): DispatchedModel => {
    const { name, version } = request.params as { name: string; version?: string };
    return manager.model(name, version);
  };

  for (const prefix of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    fastify.get(prefix, async (request) => {
      options.authenticate(request);
      const host = hostOf(request);
      // A model whose file or model.json could not be read has no signature. Answering with
      // empty inputs would tell clients to send nothing; OIP wants an error status instead.
      const signature = host.signature;
      if (signature === undefined) {
        throw new TandemError(
          'E_MODEL_LOAD_FAILED',
          `model ${host.label} has no readable signature: ${host.failure ?? 'unknown reason'}`,
        );
      }
      const versions = manager
        .models()
        .filter((h) => h.entry.name === host.entry.name)
        .map((h) => h.entry.version);
      return {
        name: host.entry.name,
        versions,
        platform: 'onnxruntime_onnx',
        inputs: signature.inputs.map(toOipSpec),
        outputs: signature.outputs.map(toOipSpec),
      };
    });

    // A model is ready when it can serve: loading is on demand, so an unloaded model is ready
    // (its first request pays a cold start); a failed model is not.
    fastify.get(`${prefix}/ready`, async (request, reply) => {
      options.authenticate(request);
      const host = hostOf(request);
      const ready = host.state !== 'failed' && !manager.draining;
      return reply.code(ready ? 200 : 503).send({ name: host.entry.name, ready });
    });
  }

  // Infer bodies are raw bytes (JSON, or JSON followed by binary tensors): parse them ourselves.
  void fastify.register(async (scope) => {
    // Compressed bodies (tritonclient's request_compression_algorithm) are inflated before they
    // are read, so Inference-Header-Content-Length counts bytes of the inflated body, as in Triton.
    takeRawBodies(scope, options.maxPayloadBytes);
    for (const prefix of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
      scope.post(`${prefix}/infer`, async (request, reply) => infer(request, reply));
    }
  });

  const infer = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const owner = options.authenticate(request);
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const headerLength = headerLengthOf(request.headers[HEADER_LENGTH_HEADER]);
    const rawBinary = headerLength === 0;
    // A body that does not parse costs no token, like a malformed WebSocket frame; everything
    // the model refuses does, the unknown model first, as over WebSocket (ApiKeys.acquire): a
    // client probing names is limited the same way through either door.
    const json = rawBinary ? undefined : parseInferRequest(body, headerLength);
    const arrivedAt = performance.now();
    const release = await options.keys.acquire(owner);
    let host: DispatchedModel;
    let parsed: ParsedInferRequest;
    let job;
    try {
      host = hostOf(request);
      parsed = json ?? parseRawBinaryRequest(body, host.signature);
      // A deadline counts from the request's arrival: a wait for shared key limits spends it.
      let deadlineMs = parsed.deadlineMs;
      if (deadlineMs !== undefined) {
        deadlineMs -= performance.now() - arrivedAt;
        if (deadlineMs <= 0) {
          throw new TandemError(
            'E_DEADLINE_EXCEEDED',
            `the request passed its deadline of ${parsed.deadlineMs} ms before it was queued`,
          );
        }
      }
      job = options.rejections.submit(manager, {
        id: randomUUID(),
        owner: owner.id,
        model: host.entry.name,
        version: host.entry.version,
        inputs: parsed.inputs,
        ...(parsed.outputs === undefined ? {} : { outputs: parsed.outputs.map((o) => o.name) }),
        priority: parsed.priority,
        ...(deadlineMs === undefined ? {} : { deadlineMs }),
      });
    } catch (error) {
      release();
      throw error;
    }
    // A client that hangs up no longer wants the answer: free its place in the queue. (The
    // response's close, not the request's: a request closes as soon as its body is read.)
    const onAbort = (): void => {
      if (!reply.raw.writableFinished) job.cancel();
    };
    reply.raw.on('close', onAbort);
    const outcome = await job.outcome;
    reply.raw.off('close', onAbort);
    release();
    if (!outcome.ok) {
      // The job was accepted: its failure is no refusal (a missed deadline its host counted).
      options.rejections.exempt(outcome.error);
      throw outcome.error;
    }
    // Triton's binary-data extension: `binary_data` on a requested output overrides the request's
    // `binary_data_output` either way, so an explicit false keeps that output in JSON.
    const binaryOf = new Map((parsed.outputs ?? []).map((o) => [o.name, o.binary]));
    return sendInferResponse(reply, {
      modelName: host.entry.name,
      modelVersion: host.entry.version,
      id: parsed.id,
      result: outcome.result,
      binary: (name) => binaryOf.get(name) ?? parsed.binaryOutput,
    });
  };
}

function toOipSpec(spec: TensorSpec): { name: string; datatype: OipDatatype; shape: number[] } {
  return {
    name: spec.name,
    datatype: DTYPE_TO_OIP[spec.dtype],
    shape:
      spec.dims === undefined ? [-1] : spec.dims.map((dim) => (typeof dim === 'number' ? dim : -1)),
  };
}

interface ParsedInferRequest {
  readonly id: string | undefined;
  readonly inputs: TensorMap;
  /** Requested outputs; `binary` is undefined when the output leaves it to `binaryOutput`. */
  readonly outputs: { name: string; binary: boolean | undefined }[] | undefined;
  readonly binaryOutput: boolean;
  readonly priority: number;
  readonly deadlineMs: number | undefined;
}

/**
 * Parses an OIP infer body (JSON, optionally followed by binary data), the JSON being its first
 * `headerLength` bytes when the request gave Inference-Header-Content-Length. Errors name the field.
 */
export function parseInferRequest(
  body: Buffer,
  headerLength: number | undefined,
): ParsedInferRequest {
  const ctx: ParseContext = { path: 'request', code: 'E_INVALID_ARGUMENT' };
  let jsonEnd = body.byteLength;
  if (headerLength !== undefined) {
    if (headerLength > body.byteLength) {
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `${HEADER_LENGTH_HEADER} ${headerLength} runs past the body (${body.byteLength} bytes)`,
      );
    }
    jsonEnd = headerLength;
  }
  let json: unknown;
  try {
    json = JSON.parse(body.subarray(0, jsonEnd).toString('utf8'));
  } catch {
    throw new TandemError('E_INVALID_ARGUMENT', 'the request body is not valid JSON');
  }
  const record = expectRecord(json, ctx);
  const parameters =
    record.parameters === undefined ? {} : expectRecord(record.parameters, at(ctx, 'parameters'));
  let binaryPos = jsonEnd;
  const inputs: TensorMap = {};
  expectArray(record.inputs, at(ctx, 'inputs'), 4096).forEach((item, index) => {
    const c = at(at(ctx, 'inputs'), index);
    const input = expectRecord(item, c);
    const name = expectString(input.name, at(c, 'name'), 256);
    if (Object.prototype.hasOwnProperty.call(inputs, name)) {
      throw new TandemError('E_INVALID_ARGUMENT', `${c.path}: input "${name}" is given twice`);
    }
    const datatype = expectOneOf(input.datatype, at(c, 'datatype'), OIP_DATATYPES);
    const dims = expectArray(input.shape, at(c, 'shape'), 32).map((d, i) =>
      expectInteger(d, at(at(c, 'shape'), i), 0, 2 ** 32 - 1),
    );
    const inputParams =
      input.parameters === undefined ? {} : expectRecord(input.parameters, at(c, 'parameters'));
    const binarySize = optional(
      inputParams.binary_data_size,
      at(c, 'parameters.binary_data_size'),
      (v, cc) => expectInteger(v, cc, 0, body.byteLength),
    );
    const dtype = OIP_TO_DTYPE[datatype];
    let tensor: Tensor;
    if (binarySize !== undefined) {
      // Two sources of values for one tensor: whichever one was dropped, the client meant it.
      // (A null `data`, as some clients write an absent field, is no second source.)
      if (input.data !== undefined && input.data !== null) {
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          `${c.path}: input "${name}" has both data and parameters.binary_data_size; give one`,
        );
      }
      if (binaryPos + binarySize > body.byteLength) {
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          `${c.path}: binary_data_size ${binarySize} runs past the body`,
        );
      }
      tensor = tensorFromBinary(
        name,
        dtype,
        dims,
        body.subarray(binaryPos, binaryPos + binarySize),
      );
      binaryPos += binarySize;
    } else {
      tensor = tensorFromJson(name, dtype, dims, input.data, at(c, 'data'));
    }
    inputs[name] = tensor;
  });
  if (binaryPos !== body.byteLength) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `${body.byteLength - binaryPos} bytes of binary data are not claimed by any input`,
    );
  }
  const outputs = optional(record.outputs, at(ctx, 'outputs'), (value, c) =>
    expectArray(value, c, 4096).map((item, index) => {
      const oc = at(c, index);
      const output = expectRecord(item, oc);
      const params =
        output.parameters === undefined
          ? {}
          : expectRecord(output.parameters, at(oc, 'parameters'));
      return {
        name: expectString(output.name, at(oc, 'name'), 256),
        binary: optional(params.binary_data, at(oc, 'parameters.binary_data'), expectBoolean),
      };
    }),
  );
  const timeoutUs = optional(parameters.timeout, at(ctx, 'parameters.timeout'), (v, c) =>
    expectNumber(v, c, 0, Number.MAX_SAFE_INTEGER),
  );
  return {
    id: optional(record.id, at(ctx, 'id'), (v, c) => expectString(v, c, 256, true)),
    inputs,
    outputs: outputs !== undefined && outputs.length > 0 ? outputs : undefined,
    binaryOutput:
      optional(
        parameters.binary_data_output,
        at(ctx, 'parameters.binary_data_output'),
        expectBoolean,
      ) ?? false,
    priority: fromTritonPriority(
      optional(parameters.priority, at(ctx, 'parameters.priority'), (v, c) =>
        expectInteger(v, c, 0, Number.MAX_SAFE_INTEGER),
      ),
    ),
    deadlineMs: timeoutUs === undefined || timeoutUs === 0 ? undefined : timeoutUs / 1000,
  };
}

/**
 * Triton's `priority` parameter: 0 (or absent) is the default, 1 the highest, larger numbers lower.
 * Tandem's scale runs 0..10 with higher first, so 1 → 10, 2 → 9, … and 10 or more → 1 (still above
 * nothing but Tandem's own lowest, 0, which OIP clients cannot ask for).
 */
export function fromTritonPriority(priority: number | undefined): number {
  if (priority === undefined || priority === 0) return DEFAULT_PRIORITY;
  return Math.max(PRIORITY_MIN + 1, PRIORITY_MAX + 1 - priority);
}

/**
 * The Inference-Header-Content-Length header as a byte count (0: Triton's raw binary request, a
 * body with no JSON at all), or undefined without one. Decimal digits only: `Number()` read `0x10`
 * and `1e1` as lengths the client never wrote, and an empty header as a JSON of no bytes.
 */
function headerLengthOf(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const text = (Array.isArray(header) ? header[0] : header) ?? '';
  if (!/^\s*\d{1,15}\s*$/.test(text)) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `${HEADER_LENGTH_HEADER} "${text.slice(0, 64)}" is not a byte count (decimal digits)`,
    );
  }
  return Number(text);
}

/**
 * Parses Triton's raw binary request: the body is the bytes of the model's only input, whose shape
 * follows from the byte count (the model may have at most one variable dim; a BYTES input is one
 * element, the whole body). Every output comes back in binary, as Triton does.
 */
export function parseRawBinaryRequest(
  body: Buffer,
  signature: ModelSignature | undefined,
): ParsedInferRequest {
  if (signature === undefined) {
    throw new TandemError('E_MODEL_LOAD_FAILED', 'the model has no readable signature');
  }
  const spec = signature.inputs[0];
  if (spec === undefined || signature.inputs.length !== 1 || spec.dims === undefined) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      'a raw binary request (Inference-Header-Content-Length: 0) needs a model with exactly one input of known rank',
    );
  }
  const variable = spec.dims.filter((dim) => typeof dim !== 'number').length;
  let tensor: Tensor;
  if (spec.dtype === 'string') {
    tensor = { dtype: 'string', dims: [1], data: [utf8Element(spec.name, 0, body)] };
  } else if (variable > 1) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `a raw binary request cannot tell the shape of input "${spec.name}" [${spec.dims.join(', ')}]: more than one variable dim`,
    );
  } else {
    // The variable dim (if any) takes whatever the bytes fill. The size is checked here, in
    // terms of the request (bytes sent, bytes per row): the shape derived from a wrong size
    // ("[0, 4] need 0") would only confuse, and an empty body must not run zero rows.
    const rowBytes =
      bytesPerElement(spec.dtype) *
      elementCount(spec.dims.map((dim) => (typeof dim === 'number' ? dim : 1)));
    const shape = `[${spec.dims.join(', ')}]`;
    const got = `got ${body.byteLength} bytes`;
    if (variable === 0 && body.byteLength !== rowBytes) {
      throw shapeError(
        spec.name,
        `a raw binary request for ${spec.dtype} shape ${shape} needs ${rowBytes} bytes, ${got}`,
      );
    }
    if (
      variable === 1 &&
      (rowBytes === 0 || body.byteLength % rowBytes !== 0 || body.byteLength === 0)
    ) {
      throw shapeError(
        spec.name,
        rowBytes === 0
          ? `a raw binary request cannot tell the variable dim of ${shape}: a row holds no elements`
          : `a raw binary request for ${spec.dtype} shape ${shape} needs a positive multiple of ${rowBytes} bytes (one row), ${got}`,
      );
    }
    const rows = rowBytes === 0 ? 0 : body.byteLength / rowBytes;
    const dims = spec.dims.map((dim) => (typeof dim === 'number' ? dim : rows));
    tensor = tensorFromBinary(spec.name, spec.dtype, dims, body);
  }
  return {
    id: undefined,
    inputs: { [spec.name]: tensor },
    outputs: undefined,
    binaryOutput: true,
    priority: DEFAULT_PRIORITY,
    deadlineMs: undefined,
  };
}

function shapeError(name: string, message: string): TandemError {
  return new TandemError('E_INPUT_SHAPE', `input "${name}": ${message}`);
}

/** Refuses what is not UTF-8 rather than replacing it: `fatal`, and a leading BOM is kept. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * One BYTES element as a string. A string tensor reaches onnxruntime as text, so bytes that are
 * not UTF-8 (an image sent as BYTES) would run as U+FFFD replacement characters, a different
 * input than the one sent: refused, as the WebSocket decoder refuses them (E_PROTOCOL there).
 */
function utf8Element(name: string, index: number, bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `input "${name}": BYTES element ${index} is not UTF-8 text; Tandem's string tensors carry text only`,
    );
  }
}

/** Builds a tensor from raw little-endian bytes (copied once: the body buffer may be unaligned). */
function tensorFromBinary(name: string, dtype: TensorDtype, dims: number[], bytes: Buffer): Tensor {
  const count = elementCount(dims);
  if (dtype === 'string') {
    const data: string[] = [];
    let pos = 0;
    while (pos < bytes.byteLength) {
      if (pos + 4 > bytes.byteLength)
        throw shapeError(name, 'BYTES element length runs past its data');
      const size = bytes.readUInt32LE(pos);
      pos += 4;
      if (pos + size > bytes.byteLength) throw shapeError(name, 'BYTES element runs past its data');
      data.push(utf8Element(name, data.length, bytes.subarray(pos, pos + size)));
      pos += size;
      if (data.length > count) break;
    }
    if (data.length !== count)
      throw shapeError(
        name,
        `${data.length} BYTES elements for shape [${dims.join(', ')}] (${count})`,
      );
    return { dtype, dims, data };
  }
  const size = bytesPerElement(dtype);
  if (bytes.byteLength !== count * size) {
    throw shapeError(
      name,
      `${bytes.byteLength} bytes of ${dtype} for shape [${dims.join(', ')}] need ${count * size}`,
    );
  }
  if (dtype === 'bool') {
    // One byte each, 0 or 1: onnxruntime reads any other value as undefined behaviour.
    const bad = bytes.findIndex((value) => value > 1);
    if (bad >= 0)
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `input "${name}": BOOL element ${bad} is ${bytes[bad]}, not 0 or 1`,
      );
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return viewAs(dtype, copy.buffer, dims);
}

function viewAs(
  dtype: Exclude<TensorDtype, 'string'>,
  buffer: ArrayBuffer,
  dims: number[],
): Tensor {
  return { dtype, dims, data: viewTensorData(dtype, buffer, 0, buffer.byteLength) } as Tensor;
}

/** Builds a tensor from JSON `data` (flat or nested arrays, row-major). */
function tensorFromJson(
  name: string,
  dtype: TensorDtype,
  dims: number[],
  data: unknown,
  ctx: ParseContext,
): Tensor {
  const count = elementCount(dims);
  const flat: unknown[] = Array.isArray(data) ? (data as unknown[]).flat(dims.length) : [data];
  if (flat.length !== count) {
    throw shapeError(name, `${flat.length} values for shape [${dims.join(', ')}] (${count})`);
  }
  const bad = (index: number, expected: string): never => {
    throw new TandemError(
      'E_INPUT_DTYPE',
      `${ctx.path}[${index}]: expected ${expected} for ${DTYPE_TO_OIP[dtype]}`,
    );
  };
  switch (dtype) {
    case 'string':
      return {
        dtype,
        dims,
        // JSON can write a lone surrogate ("\ud800"), which no UTF-8 holds: onnxruntime would get
        // U+FFFD in its place, a string the client never sent.
        data: flat.map((v, i) =>
          typeof v === 'string' && !LONE_SURROGATE.test(v) ? v : bad(i, 'a string of Unicode text'),
        ),
      };
    case 'bool':
      return {
        dtype,
        dims,
        data: Uint8Array.from(flat, (v, i) =>
          typeof v === 'boolean' ? Number(v) : bad(i, 'true or false'),
        ),
      };
    case 'int64':
    case 'uint64': {
      // A JSON number past 2^53 was already rounded by JSON.parse, and a typed array would wrap a
      // value out of range: refuse both rather than run on a different number. Values of any size
      // can come as decimal strings (or in binary).
      const [min, max] = dtype === 'int64' ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
      const values = flat.map((v, i) => {
        let value: bigint | undefined;
        if (typeof v === 'number' && Number.isSafeInteger(v)) value = BigInt(v);
        if (typeof v === 'string' && /^-?\d+$/.test(v)) value = BigInt(v);
        if (value === undefined || value < min || value > max) {
          return bad(i, `an integer in [${min}, ${max}] (beyond 2^53 as a decimal string)`);
        }
        return value;
      });
      return dtype === 'int64'
        ? { dtype, dims, data: BigInt64Array.from(values) }
        : { dtype, dims, data: BigUint64Array.from(values) };
    }
    case 'float16':
      return {
        dtype,
        dims,
        data: Uint16Array.from(flat, (v, i) =>
          typeof v === 'number' ? toFloat16Bits(v) : bad(i, 'a number'),
        ),
      };
    default: {
      const numbers = flat.map((v, i) => (typeof v === 'number' ? v : bad(i, 'a number')));
      // Integer typed arrays wrap out-of-range values silently (300 as INT8 would run as 44).
      const range = INTEGER_RANGES[dtype];
      if (range !== undefined) {
        const [min, max] = range;
        numbers.forEach((v, i) => {
          if (!Number.isInteger(v) || v < min || v > max) bad(i, `an integer in [${min}, ${max}]`);
        });
      }
      const buffer = new ArrayBuffer(count * bytesPerElement(dtype));
      const tensor = viewAs(dtype, buffer, dims);
      (tensor.data as Float32Array).set(numbers);
      return tensor;
    }
  }
}

/** A surrogate code unit without its pair (with the `u` flag, a pair is one code point, not Cs). */
const LONE_SURROGATE = /\p{Cs}/u;

/** Ranges of the integer dtypes that JSON numbers carry exactly. */
const INTEGER_RANGES: Partial<Record<TensorDtype, readonly [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 2 ** 32 - 1],
};

/**
 * JSON text of a tensor's values (flattened, row-major), as OIP clients expect. 64-bit integers
 * are written digit for digit: a double would round them past 2^53, and JSON.stringify cannot
 * write a BigInt at all.
 */
function jsonData(tensor: Tensor): string {
  switch (tensor.dtype) {
    case 'string':
      return JSON.stringify(tensor.data);
    case 'bool':
      return JSON.stringify(Array.from(tensor.data, (v) => v !== 0));
    case 'int64':
    case 'uint64':
      return `[${Array.from(tensor.data, String).join(',')}]`;
    case 'float16':
      return JSON.stringify(Array.from(tensor.data, fromFloat16Bits));
    default:
      return JSON.stringify(Array.from(tensor.data));
  }
}

function binaryData(tensor: Tensor): Buffer {
  if (tensor.dtype !== 'string')
    return Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const parts = tensor.data.map((s) => Buffer.from(s, 'utf8'));
  const out = Buffer.alloc(parts.reduce((sum, p) => sum + 4 + p.byteLength, 0));
  let pos = 0;
  for (const part of parts) {
    out.writeUInt32LE(part.byteLength, pos);
    part.copy(out, pos + 4);
    pos += 4 + part.byteLength;
  }
  return out;
}

/**
 * Tandem's entries in an infer response's `parameters` (docs/protocol.md, "HTTP: the Open
 * Inference Protocol"): the execution provider that ran the job, whether it waited for a cold
 * start, and the server's timings in ms to the microsecond, as the WebSocket `result` has them.
 */
function tandemResponseParameters(
  result: JobResult,
): Record<`tandem_${string}`, string | number | boolean> {
  return {
    tandem_backend: result.backend,
    tandem_cold_start: result.coldStart,
    tandem_queue_ms: result.timings.queueMs,
    tandem_load_ms: result.timings.loadMs,
    tandem_warmup_ms: result.timings.warmupMs,
    tandem_run_ms: result.timings.runMs,
    tandem_total_ms: result.timings.totalMs,
  };
}

function sendInferResponse(
  reply: FastifyReply,
  response: {
    modelName: string;
    modelVersion: string;
    id: string | undefined;
    result: JobResult;
    binary: (name: string) => boolean;
  },
): FastifyReply {
  const chunks: Buffer[] = [];
  // The JSON is assembled as text so that `data` can hold exact 64-bit integers (see jsonData).
  const outputs = Object.entries(response.result.outputs).map(([name, tensor]) => {
    const base = JSON.stringify({
      name,
      datatype: DTYPE_TO_OIP[tensor.dtype],
      shape: [...tensor.dims],
    }).slice(0, -1);
    if (!response.binary(name)) return `${base},"data":${jsonData(tensor)}}`;
    const bytes = binaryData(tensor);
    chunks.push(bytes);
    return `${base},"parameters":${JSON.stringify({ binary_data_size: bytes.byteLength })}}`;
  });
  const head = JSON.stringify({
    model_name: response.modelName,
    model_version: response.modelVersion,
    ...(response.id === undefined ? {} : { id: response.id }),
    parameters: tandemResponseParameters(response.result),
  }).slice(0, -1);
  const text = `${head},"outputs":[${outputs.join(',')}]}`;
  if (chunks.length === 0) return reply.type('application/json; charset=utf-8').send(text);
  const json = Buffer.from(text, 'utf8');
  reply.header(HEADER_LENGTH_HEADER, String(json.byteLength));
  reply.header('Content-Type', 'application/octet-stream');
  const binaryBytes = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  if (binaryBytes < ZERO_COPY_MIN_BYTES) return reply.send(Buffer.concat([json, ...chunks]));
  // Large outputs go out from their own memory, as over WebSocket: no body-sized copy first.
  reply.header('Content-Length', String(json.byteLength + binaryBytes));
  return reply.send(Readable.from([json, ...chunks], { objectMode: false }));
}
