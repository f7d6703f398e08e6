// A minimal Open Inference Protocol v2 client for tests, written the way tritonclient.http builds
// requests: JSON header, binary tensors appended in input order with `binary_data_size`, the JSON
// length in `Inference-Header-Content-Length`, and no Content-Type at all for binary bodies.
// Responses are parsed the way tritonclient does: split by Inference-Header-Content-Length, then
// each binary output's bytes taken in output order by `binary_data_size`.

/** One input as a client describes it: JSON `data`, or raw little-endian `binary` bytes. */
export interface ClientInput {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly number[];
  readonly data?: unknown;
  readonly binary?: Uint8Array;
}

/** One requested output; `binary` becomes `parameters.binary_data` when given. */
export interface ClientOutput {
  readonly name: string;
  readonly binary?: boolean;
}

/** Everything a request may carry. */
export interface ClientRequest {
  readonly id?: string;
  readonly parameters?: Record<string, string | number | boolean>;
  readonly inputs: readonly ClientInput[];
  readonly outputs?: readonly ClientOutput[];
}

/** An encoded request: body bytes and the headers a Triton client sends with them. */
export interface EncodedRequest {
  readonly body: Buffer;
  readonly headers: Record<string, string>;
}

/** Encodes an infer request; binary inputs follow the JSON in input order. */
export function encodeInferRequest(request: ClientRequest): EncodedRequest {
  const binaries: Uint8Array[] = [];
  const json = {
    ...(request.id === undefined ? {} : { id: request.id }),
    ...(request.parameters === undefined ? {} : { parameters: request.parameters }),
    inputs: request.inputs.map((input) => {
      const base = { name: input.name, shape: input.shape, datatype: input.datatype };
      if (input.binary === undefined) return { ...base, data: input.data };
      binaries.push(input.binary);
      return { ...base, parameters: { binary_data_size: input.binary.byteLength } };
    }),
    ...(request.outputs === undefined
      ? {}
      : {
          outputs: request.outputs.map((output) =>
            output.binary === undefined
              ? { name: output.name }
              : { name: output.name, parameters: { binary_data: output.binary } },
          ),
        }),
  };
  const header = Buffer.from(JSON.stringify(json), 'utf8');
  if (binaries.length === 0) {
    return { body: header, headers: { 'content-type': 'application/json' } };
  }
  return {
    body: Buffer.concat([header, ...binaries]),
    headers: { 'inference-header-content-length': String(header.byteLength) },
  };
}

/** One output of a response: JSON `data`, or the raw `bytes` of a binary output. */
export interface ResponseOutput {
  readonly name: string;
  readonly datatype: string;
  readonly shape: number[];
  readonly data?: unknown[];
  readonly bytes?: Buffer;
  readonly parameters?: Record<string, unknown>;
}

/** A parsed infer response. */
export interface DecodedResponse {
  readonly json: {
    model_name: string;
    model_version?: string;
    id?: string;
    /** The response's parameters; a Tandem server's `tandem_*` entries among them. */
    parameters?: Record<string, unknown>;
    outputs: ResponseOutput[];
  };
  readonly outputs: Record<string, ResponseOutput>;
}

/** Splits a response body by Inference-Header-Content-Length and binary_data_size. */
export function decodeInferResponse(
  body: Buffer,
  headerLength: string | string[] | number | undefined,
): DecodedResponse {
  const jsonEnd =
    headerLength === undefined
      ? body.byteLength
      : Number(Array.isArray(headerLength) ? headerLength[0] : headerLength);
  const json = JSON.parse(body.subarray(0, jsonEnd).toString('utf8')) as DecodedResponse['json'];
  let pos = jsonEnd;
  const outputs: Record<string, ResponseOutput> = {};
  for (const output of json.outputs) {
    const size = output.parameters?.binary_data_size;
    if (typeof size === 'number') {
      outputs[output.name] = { ...output, bytes: body.subarray(pos, pos + size) };
      pos += size;
    } else {
      outputs[output.name] = output;
    }
  }
  if (pos !== body.byteLength) {
    throw new Error(`response has ${body.byteLength - pos} unclaimed bytes`);
  }
  return { json, outputs };
}

/** Little-endian bytes of a typed array (a copy, so offsets never matter). */
export function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer.slice(array.byteOffset, array.byteOffset + array.byteLength));
}

/** BYTES tensor encoding of the binary extension: a 4-byte little-endian length, then the bytes. */
export function encodeBytesTensor(values: readonly string[]): Uint8Array {
  const parts = values.map((value) => Buffer.from(value, 'utf8'));
  const out = Buffer.alloc(parts.reduce((sum, part) => sum + 4 + part.byteLength, 0));
  let pos = 0;
  for (const part of parts) {
    out.writeUInt32LE(part.byteLength, pos);
    part.copy(out, pos + 4);
    pos += 4 + part.byteLength;
  }
  return out;
}

/** Decodes a binary BYTES tensor. */
export function decodeBytesTensor(bytes: Buffer): string[] {
  const values: string[] = [];
  let pos = 0;
  while (pos < bytes.byteLength) {
    const size = bytes.readUInt32LE(pos);
    values.push(bytes.toString('utf8', pos + 4, pos + 4 + size));
    pos += 4 + size;
  }
  return values;
}

/** A copy of `bytes` viewed as float32 (the response buffer may be unaligned). */
export function float32Of(bytes: Buffer): Float32Array {
  return new Float32Array(bytesOf(bytes).buffer);
}

/** A copy of `bytes` viewed as int64. */
export function int64Of(bytes: Buffer): BigInt64Array {
  return new BigInt64Array(bytesOf(bytes).buffer);
}
