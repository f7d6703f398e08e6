// A remote runtime over the Open Inference Protocol v2 (HTTP), so the client can use Triton, KServe
// or a Tandem server's HTTP side as its remote. Tensors travel with the binary-data extension (no
// JSON number arrays). Progress is coarse: HTTP has no progress channel, so a job reports `queued`
// when sent, `running` while waiting (timed by measured history), and the router reports `done`.
// A Tandem server says in the response's `parameters` what ran the job, whether it was a cold
// start and where its time went (`tandem_*`); other servers say none of it (see run()).

import {
  DTYPE_TO_OIP,
  MovingAverage,
  OIP_HEADER_LENGTH_HEADER,
  OIP_TO_DTYPE,
  TandemError,
  bytesPerElement,
  createProgressTracker,
  elementCount,
  isBackend,
  isErrorCode,
  isOipDatatype,
  toFloat16Bits,
  viewTensorData,
  type Backend,
  type ModelManifest,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';
import type { Runtime, RuntimeEstimate, RuntimeResult, RuntimeRunOptions } from './runtime.js';

/** Options of {@link OipRemote}. */
export interface OipRemoteOptions {
  /** The server's base URL (e.g. `http://triton:8000`). */
  readonly url: string;
  /** Sent as `Authorization: Bearer`. */
  readonly apiKey?: string;
  /** How requests are made (a proxy, retries, a test server). @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /**
   * How long the readiness probe (`GET /v2/models/{m}/ready`, made for every estimate) may take
   * before the server counts as unreachable and a call can go to this device, in ms. @default 5000
   */
  readonly connectTimeoutMs?: number;
}

/** An output entry as a server sent it (checked field by field below). */
interface OipOutput {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: { binary_data_size?: number };
  data?: unknown[];
}

/**
 * What a Tandem server reports about a job in an infer response's `parameters` (docs/protocol.md).
 * Each field is absent when the entry is missing or malformed: other OIP servers send none.
 */
interface JobReport {
  readonly backend?: Backend;
  readonly coldStart?: boolean;
  readonly queueMs?: number;
  readonly loadMs?: number;
  readonly warmupMs?: number;
  readonly runMs?: number;
}

/** The OIP v2 HTTP remote runtime. */
export class OipRemote implements Runtime {
  readonly where = 'remote' as const;
  readonly name = 'oip-http';
  readonly #options: OipRemoteOptions;
  readonly #fetch: typeof fetch;
  readonly #roundTrips = new Map<string, MovingAverage>();
  /**
   * By model path: whether the last readiness probe found the model not ready (a server that
   * loads models on request, KServe's or Triton's, says so while loading): the next call then
   * waits for the load, a cold start, unless the server says otherwise.
   */
  readonly #notReady = new Map<string, boolean>();

  constructor(options: OipRemoteOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  async estimate(model: ModelManifest): Promise<RuntimeEstimate> {
    // Bounded as the WebSocket remote's connect is: a server that accepts and never answers must
    // not hold the call, which can still run on this device.
    const timeoutMs = this.#options.connectTimeoutMs ?? 5000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const path = modelPath(model);
    let response: Response;
    try {
      response = await this.#request(`${path}/ready`, {
        method: 'GET',
        signal: timeout,
      });
    } catch (error) {
      this.#notReady.delete(path);
      const coded = timeout.aborted
        ? new TandemError('E_NETWORK', `no answer within ${timeoutMs} ms`, { cause: error })
        : TandemError.from(error, 'E_NETWORK');
      return { available: false, code: coded.code, reason: `server unreachable: ${coded.message}` };
    }
    this.#notReady.set(path, !response.ok);
    if (!response.ok)
      return {
        available: false,
        reason: `the server says "${model.name}" is not ready (${response.status})`,
      };
    const measured = this.#roundTrips.get(model.name)?.value;
    return measured === undefined
      ? { available: true, reason: 'no measurements yet' }
      : { available: true, ms: measured, reason: 'measured HTTP round trips' };
  }

  async run(
    model: ModelManifest,
    inputs: TensorMap,
    options: RuntimeRunOptions,
  ): Promise<RuntimeResult> {
    const tracker = createProgressTracker({
      jobId: options.jobId,
      model: model.name,
      where: 'remote',
    });
    options.onProgress(tracker.update({ stage: 'queued' }));
    const started = performance.now();
    const { body, headerLength } = encodeRequest(
      options.jobId,
      inputs,
      options.outputs,
      options.priority,
      options.deadlineMs,
    );
    const expected = this.#roundTrips.get(model.name)?.value;
    options.onProgress(
      tracker.update(
        expected === undefined
          ? { stage: 'running' }
          : { stage: 'running', stageExpectedMs: expected },
      ),
    );
    let response: Response;
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      response = await this.#request(`${modelPath(model)}/infer`, {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          [OIP_HEADER_LENGTH_HEADER]: String(headerLength),
        },
        body,
        signal: options.signal,
      });
      // Reading the body is part of the request: a cancel or a dropped connection while it
      // arrives ends the job as one before the headers would.
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      if (options.signal.aborted)
        throw new TandemError('E_CANCELLED', `job ${options.jobId} was cancelled`);
      throw TandemError.from(error, 'E_NETWORK');
    }
    if (!response.ok) throw errorFrom(response, bytes);
    const { outputs, report } = decodeResponse(
      bytes,
      response.headers.get(OIP_HEADER_LENGTH_HEADER),
    );
    const totalMs = performance.now() - started;
    const average = this.#roundTrips.get(model.name) ?? new MovingAverage();
    average.add(totalMs);
    this.#roundTrips.set(model.name, average);
    const loadMs =
      report.loadMs === undefined && report.warmupMs === undefined
        ? undefined
        : (report.loadMs ?? 0) + (report.warmupMs ?? 0);
    return {
      outputs,
      // A server that does not say (Triton, KServe): OIP has no field for it, and 'cpu' is what
      // a server without a GPU, the common case, runs on.
      backend: report.backend ?? 'cpu',
      cold: report.coldStart ?? this.#notReady.get(modelPath(model)) === true,
      timings: {
        ...(report.queueMs === undefined ? {} : { queueMs: report.queueMs }),
        ...(loadMs === undefined ? {} : { loadMs }),
        // Without the server's figure, the round trip is the run as this client saw it.
        runMs: report.runMs ?? totalMs,
      },
    };
  }

  /** Wakes the model on a Tandem server (POST /v1/models/{m}/warm); other OIP servers ignore it. */
  async warm(model: ModelManifest): Promise<void> {
    const response = await this.#request(`/v1/models/${encodeURIComponent(model.name)}/warm`, {
      method: 'POST',
    });
    if (!response.ok && response.status !== 404)
      throw errorFrom(response, new Uint8Array(await response.arrayBuffer()));
  }

  async close(): Promise<void> {
    // Nothing held open: fetch manages its own connections.
  }

  #request(path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.#options.apiKey !== undefined)
      headers.set('authorization', `Bearer ${this.#options.apiKey}`);
    const url = `${this.#options.url.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
    return this.#fetch(url, { ...init, headers });
  }
}

function modelPath(model: ModelManifest): string {
  const name = encodeURIComponent(model.name);
  return model.version === undefined
    ? `v2/models/${name}`
    : `v2/models/${name}/versions/${encodeURIComponent(model.version)}`;
}

/** Triton reads `priority` as 0 = default, 1 = highest; Tandem's 0..10 maps onto it. */
function toTritonPriority(priority: number): number {
  return priority === 5 ? 0 : Math.max(1, 11 - priority);
}

function encodeRequest(
  id: string,
  inputs: TensorMap,
  outputs: readonly string[] | undefined,
  priority: number,
  deadlineMs: number | undefined,
): { body: Uint8Array<ArrayBuffer>; headerLength: number } {
  const chunks: Uint8Array[] = [];
  const described = Object.entries(inputs).map(([name, tensor]) => {
    const bytes = tensorBytes(tensor);
    chunks.push(bytes);
    return {
      name,
      datatype: DTYPE_TO_OIP[tensor.dtype],
      shape: [...tensor.dims],
      parameters: { binary_data_size: bytes.byteLength },
    };
  });
  const header = {
    id,
    inputs: described,
    ...(outputs === undefined
      ? {}
      : { outputs: outputs.map((name) => ({ name, parameters: { binary_data: true } })) }),
    parameters: {
      binary_data_output: true,
      priority: toTritonPriority(priority),
      ...(deadlineMs === undefined ? {} : { timeout: Math.round(deadlineMs * 1000) }),
    },
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const body = new Uint8Array(json.byteLength + chunks.reduce((sum, c) => sum + c.byteLength, 0));
  body.set(json, 0);
  let offset = json.byteLength;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { body, headerLength: json.byteLength };
}

function tensorBytes(tensor: Tensor): Uint8Array {
  if (tensor.dtype !== 'string')
    return new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const encoded = tensor.data.map((s) => new TextEncoder().encode(s));
  const out = new Uint8Array(encoded.reduce((sum, e) => sum + 4 + e.byteLength, 0));
  const view = new DataView(out.buffer);
  let pos = 0;
  for (const e of encoded) {
    view.setUint32(pos, e.byteLength, true);
    out.set(e, pos + 4);
    pos += 4 + e.byteLength;
  }
  return out;
}

function decodeResponse(
  bytes: Uint8Array<ArrayBuffer>,
  headerLength: string | null,
): { outputs: TensorMap; report: JobReport } {
  const jsonEnd = headerLength === null ? bytes.byteLength : Number(headerLength);
  if (!Number.isInteger(jsonEnd) || jsonEnd < 0 || jsonEnd > bytes.byteLength) {
    throw new TandemError('E_PROTOCOL', `bad ${OIP_HEADER_LENGTH_HEADER} in the response`);
  }
  let header: { outputs?: OipOutput[]; parameters?: unknown };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, jsonEnd))) as {
      outputs?: OipOutput[];
      parameters?: unknown;
    };
  } catch {
    throw new TandemError('E_PROTOCOL', 'the inference response is not JSON');
  }
  const outputs: TensorMap = {};
  let pos = jsonEnd;
  for (const output of header.outputs ?? []) {
    if (!isOipDatatype(output.datatype) || !Array.isArray(output.shape)) {
      throw new TandemError(
        'E_PROTOCOL',
        `output "${output.name}" has no valid datatype and shape`,
      );
    }
    const dtype = OIP_TO_DTYPE[output.datatype];
    const size = output.parameters?.binary_data_size;
    if (size === undefined) {
      outputs[output.name] = fromJson(dtype, output.shape, output.data ?? []);
      continue;
    }
    if (pos + size > bytes.byteLength)
      throw new TandemError('E_PROTOCOL', `output "${output.name}" runs past the response`);
    outputs[output.name] = fromBinary(dtype, output.shape, bytes.slice(pos, pos + size));
    pos += size;
  }
  return { outputs, report: parseJobReport(header.parameters) };
}

/**
 * A Tandem server's `tandem_*` response parameters. Nothing here fails a call: a result is
 * complete without them, so an entry of the wrong type is left out as if it were missing.
 */
function parseJobReport(parameters: unknown): JobReport {
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) return {};
  const given = parameters as Record<string, unknown>;
  const ms = (name: string): number | undefined => {
    const value = given[name];
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
  };
  const backend = given.tandem_backend;
  const coldStart = given.tandem_cold_start;
  const queueMs = ms('tandem_queue_ms');
  const loadMs = ms('tandem_load_ms');
  const warmupMs = ms('tandem_warmup_ms');
  const runMs = ms('tandem_run_ms');
  return {
    ...(isBackend(backend) ? { backend } : {}),
    ...(typeof coldStart === 'boolean' ? { coldStart } : {}),
    ...(queueMs === undefined ? {} : { queueMs }),
    ...(loadMs === undefined ? {} : { loadMs }),
    ...(warmupMs === undefined ? {} : { warmupMs }),
    ...(runMs === undefined ? {} : { runMs }),
  };
}

function fromBinary(
  dtype: Tensor['dtype'],
  dims: number[],
  bytes: Uint8Array<ArrayBuffer>,
): Tensor {
  if (dtype === 'string') {
    const view = new DataView(bytes.buffer);
    const data: string[] = [];
    for (let pos = 0; pos + 4 <= bytes.byteLength;) {
      const length = view.getUint32(pos, true);
      data.push(new TextDecoder().decode(bytes.subarray(pos + 4, pos + 4 + length)));
      pos += 4 + length;
    }
    return { dtype, dims, data };
  }
  if (bytes.byteLength !== elementCount(dims) * bytesPerElement(dtype)) {
    throw new TandemError(
      'E_PROTOCOL',
      `a ${dtype} output of shape [${dims.join(', ')}] has ${bytes.byteLength} bytes`,
    );
  }
  return typed(dtype, dims, bytes.buffer);
}

function fromJson(dtype: Tensor['dtype'], dims: number[], data: unknown[]): Tensor {
  const flat = data.flat(dims.length);
  if (dtype === 'string') return { dtype, dims, data: flat.map(String) };
  const buffer = new ArrayBuffer(elementCount(dims) * bytesPerElement(dtype));
  const tensor = typed(dtype, dims, buffer);
  if (tensor.dtype === 'int64' || tensor.dtype === 'uint64') {
    flat.forEach((v, i) => ((tensor.data as BigInt64Array)[i] = BigInt(v as number)));
  } else if (tensor.dtype === 'float16') {
    // JSON carries FP16 as numbers; the tensor holds their IEEE half bits.
    flat.forEach((v, i) => (tensor.data[i] = toFloat16Bits(v as number)));
  } else if (tensor.dtype !== 'string') {
    flat.forEach(
      (v, i) =>
        ((tensor.data as Float32Array)[i] = typeof v === 'boolean' ? Number(v) : (v as number)),
    );
  }
  return tensor;
}

function typed(
  dtype: Exclude<Tensor['dtype'], 'string'>,
  dims: number[],
  buffer: ArrayBuffer,
): Tensor {
  return { dtype, dims, data: viewTensorData(dtype, buffer, 0, buffer.byteLength) } as Tensor;
}

function errorFrom(response: Response, bytes: Uint8Array): TandemError {
  let body: { error?: unknown; code?: unknown; retryable?: unknown; retryAfterMs?: unknown } = {};
  try {
    body = JSON.parse(new TextDecoder().decode(bytes)) as typeof body;
  } catch {
    // Not JSON: a proxy's page, say.
  }
  const message =
    typeof body.error === 'string' ? body.error : `the server answered ${response.status}`;
  // Tandem servers send a code; other OIP servers only a status.
  const code = isErrorCode(body.code)
    ? body.code
    : response.status === 404
      ? 'E_MODEL_NOT_FOUND'
      : response.status === 503 || response.status === 429
        ? 'E_BUSY'
        : response.status === 401
          ? 'E_UNAUTHORIZED'
          : response.status >= 500
            ? 'E_RUNTIME'
            : 'E_INVALID_ARGUMENT';
  const retryAfter = Number(response.headers.get('retry-after'));
  return new TandemError(code, message, {
    // The server's word on this failure (a Tandem server sends it), else the code's default.
    ...(typeof body.retryable === 'boolean' ? { retryable: body.retryable } : {}),
    ...(typeof body.retryAfterMs === 'number'
      ? { retryAfterMs: body.retryAfterMs }
      : Number.isFinite(retryAfter) && retryAfter > 0
        ? { retryAfterMs: retryAfter * 1000 }
        : {}),
  });
}
