// One binary WebSocket frame per message:
//
//   0   4 bytes  magic "TNDM"
//   4   1 byte   protocol version (PROTOCOL_VERSION)
//   5   3 bytes  reserved, zero
//   8   u32 LE   header length H in bytes
//   12  H bytes  header: UTF-8 JSON, the message with each tensor map replaced by descriptors
//                { name, dtype, dims, offset, byteLength }
//       padding  zero bytes up to the next multiple of 8 (only when there are tensors)
//       body     tensor bytes; each tensor at `offset` from the body start, a multiple of 8, in
//                order, packed with the least padding; little-endian; strings as u32 length + UTF-8
//
// Decoding views numeric tensors in place over the received buffer when alignment allows (a copy
// per tensor otherwise), and rejects every malformed frame with a TandemError before allocating
// anything larger than the frame. docs/protocol.md is the reference.

import {
  at,
  expectArray,
  expectInteger,
  expectRecord,
  expectString,
  type ParseContext,
} from './assert.js';
import { inferHeader, resultHeader, type TensorDescriptor } from './frame-header.js';
import { allocatePooledFrame } from './frame-pool.js';
import { MAX_TENSOR_RANK } from './manifest.js';
import {
  CLIENT_MESSAGE_TYPES,
  PROTOCOL_VERSION,
  SERVER_MESSAGE_TYPES,
  fitTexts,
  parseMessageFields,
  type ClientMessage,
  type Message,
  type ServerMessage,
} from './messages.js';
import { MAX_ID_CHARS, MAX_NAME_CHARS } from './progress.js';
import { TandemError } from './tandem-error.js';
import {
  bytesPerElement,
  elementCount,
  isTensorDtype,
  viewTensorData,
  type NumericTensorDtype,
  type Tensor,
  type TensorMap,
} from './tensor.js';

/** The frame's magic bytes, "TNDM". */
export const FRAME_MAGIC = [0x54, 0x4e, 0x44, 0x4d] as const;
/** Bytes before the header: magic, version, reserved, header length. */
export const FRAME_PREFIX_BYTES = 12;
/** Largest header accepted, in bytes (1 MiB): bigger is malformed, whatever the frame size. */
export const MAX_HEADER_BYTES = 1024 * 1024;
/** Most tensors one message may carry. */
export const MAX_TENSORS_PER_MESSAGE = 4096;
/** Largest dimension accepted. */
const MAX_DIM = 2 ** 32 - 1;
/** Body offsets are multiples of this, so any typed array can view them in place. */
const ALIGN_BYTES = 8;

const encoder = new TextEncoder();
const NON_ASCII = /[\u0080-\uffff]/;
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Which message field holds tensors, per message type. */
const TENSOR_FIELD = { infer: 'inputs', result: 'outputs' } as const;

/** Tensors laid out for the body: descriptors for the header, and the bytes to copy. */
interface TensorPlan {
  readonly descriptors: TensorDescriptor[];
  /** Per descriptor: the numeric tensor's bytes, or each string's UTF-8 bytes. */
  readonly sources: (Uint8Array | Uint8Array[])[];
  readonly bodyBytes: number;
}

/** Options for {@link decodeMessage}. */
export interface DecodeOptions {
  /**
   * Copy small unaligned tensors into the shared slab small frames come from (see
   * {@link EncodeOptions.pooled}) instead of a buffer each: their `data.buffer` is then shared, so
   * they may be read and copied, never transferred or detached. Aligned tensors are views over
   * the frame either way. @default false
   */
  readonly pooled?: boolean;
}

/** Options for {@link encodeMessage}. */
export interface EncodeOptions {
  /**
   * Carve small frames (up to POOLED_FRAME_MAX_BYTES) out of a shared slab instead of giving each
   * its own ArrayBuffer: cheaper per message, but the frame shares `frame.buffer` with other
   * frames, so it may only be sent or copied (a socket's `send`), never transferred or detached.
   * @default false
   */
  readonly pooled?: boolean;
}

/**
 * Encodes a message as one binary frame. Tensor data is copied once into the frame; nothing is
 * converted element by element (strings excepted). Throws `E_INVALID_ARGUMENT` for a tensor whose
 * data does not match its dtype and dims.
 */
export function encodeMessage(message: Message, options: EncodeOptions = {}): Uint8Array {
  return writeFrame(prepareFrame(message), options.pooled === true);
}

/** Tensors at least this large go out of {@link encodeMessageParts} as views, not copies (64 KiB). */
export const ZERO_COPY_MIN_BYTES = 64 * 1024;

/** Options for {@link encodeMessageParts}. */
export interface PartsOptions extends EncodeOptions {
  /**
   * Numeric tensors of at least this many bytes are sent as views of their own memory.
   * @default ZERO_COPY_MIN_BYTES
   */
  readonly minViewBytes?: number;
}

/**
 * Encodes a message as the consecutive parts of one frame: joined, they are the bytes
 * {@link encodeMessage} gives. Numeric tensors of at least `minViewBytes` are views of the
 * tensors' own memory instead of copies; the header, padding and smaller tensors are copied into
 * parts of their own. Send the parts as the fragments of one WebSocket message (a reader gets the
 * message whole): a large output then goes out without a frame-sized copy. The views share memory
 * with the tensors, which must not change until the parts are sent. A message without such a
 * tensor is one part.
 */
export function encodeMessageParts(message: Message, options: PartsOptions = {}): Uint8Array[] {
  const pooled = options.pooled === true;
  const minViewBytes = Math.max(1, options.minViewBytes ?? ZERO_COPY_MIN_BYTES);
  const frame = prepareFrame(message);
  const { plan } = frame;
  // Big-endian machines swap bytes on the way out, so nothing can be sent from the tensor itself.
  if (plan === undefined || !LITTLE_ENDIAN || !hasView(plan, minViewBytes)) {
    return [writeFrame(frame, pooled)];
  }
  const parts: Uint8Array[] = [];
  // The frame is cut at each view: what lies between two views (or before the first, or after the
  // last) is one copied part, written as a slice of the frame starting at `copyStart`.
  let copyStart = 0;
  let copied: number[] = [];
  const flush = (copyEnd: number): void => {
    if (copyEnd === copyStart) {
      // Only empty tensors lie in an empty range: nothing to write, and nothing to carry over
      // into the next part (their offsets are not in it).
      copied = [];
      return;
    }
    const out = pooled
      ? allocatePooledFrame(copyEnd - copyStart)
      : new Uint8Array(copyEnd - copyStart);
    if (copyStart === 0) writeHead(out, frame);
    for (const index of copied) {
      const descriptor = plan.descriptors[index] as TensorDescriptor;
      const at = frame.bodyStart + descriptor.offset - copyStart;
      writeTensor(out, at, descriptor, plan.sources[index] as Uint8Array | Uint8Array[]);
    }
    parts.push(out);
    copied = [];
  };
  plan.descriptors.forEach((descriptor, index) => {
    const source = plan.sources[index] as Uint8Array | Uint8Array[];
    if (!(source instanceof Uint8Array) || source.byteLength < minViewBytes) {
      copied.push(index);
      return;
    }
    const at = frame.bodyStart + descriptor.offset;
    flush(at);
    parts.push(source);
    copyStart = at + source.byteLength;
  });
  flush(frame.bytes);
  return parts;
}

/** Whether any numeric tensor of the plan is at least `minViewBytes` long. */
function hasView(plan: TensorPlan, minViewBytes: number): boolean {
  for (const source of plan.sources) {
    if (source instanceof Uint8Array && source.byteLength >= minViewBytes) return true;
  }
  return false;
}

/** The whole frame in one buffer. */
function writeFrame(frame: PreparedFrame, pooled: boolean): Uint8Array {
  const out = pooled ? allocatePooledFrame(frame.bytes) : new Uint8Array(frame.bytes);
  writeHead(out, frame);
  if (frame.plan !== undefined) writeBody(out, frame.bodyStart, frame.plan);
  return out;
}

/** A message's header and tensor plan, and the frame's size. */
interface PreparedFrame {
  readonly plan: TensorPlan | undefined;
  /** The header as text, and as UTF-8 when it is not ASCII. */
  readonly header: string;
  readonly headerBytes: Uint8Array | undefined;
  readonly headerLength: number;
  readonly bodyStart: number;
  /** The whole frame's length. */
  readonly bytes: number;
}

function prepareFrame(message: Message): PreparedFrame {
  let plan: TensorPlan | undefined;
  let header: string;
  let ascii: boolean;
  if (message.type === 'infer') {
    plan = planTensors(message.inputs);
    header = inferHeader(message, plan.descriptors);
    ascii = true;
  } else if (message.type === 'result') {
    plan = planTensors(message.outputs);
    header = resultHeader(message, plan.descriptors);
    ascii = true;
  } else {
    header = JSON.stringify(fitTexts(message));
    // Headers are almost always ASCII, where the UTF-8 length is the string length: the header is
    // then written straight into the frame, without an intermediate buffer per message.
    ascii = !NON_ASCII.test(header);
  }
  const headerBytes = ascii ? undefined : encoder.encode(header);
  const headerLength = headerBytes?.byteLength ?? header.length;
  if (headerLength > MAX_HEADER_BYTES) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `message header is ${headerLength} bytes; the limit is ${MAX_HEADER_BYTES}`,
    );
  }
  const headerEnd = FRAME_PREFIX_BYTES + headerLength;
  const bodyStart =
    plan !== undefined && plan.descriptors.length > 0 ? alignUp(headerEnd) : headerEnd;
  return {
    plan,
    header,
    headerBytes,
    headerLength,
    bodyStart,
    bytes: bodyStart + (plan?.bodyBytes ?? 0),
  };
}

/** Writes the prefix and header at the start of `out`. */
function writeHead(out: Uint8Array, frame: PreparedFrame): void {
  out[0] = FRAME_MAGIC[0];
  out[1] = FRAME_MAGIC[1];
  out[2] = FRAME_MAGIC[2];
  out[3] = FRAME_MAGIC[3];
  out[4] = PROTOCOL_VERSION;
  writeUint32LE(out, 8, frame.headerLength);
  const headerEnd = FRAME_PREFIX_BYTES + frame.headerLength;
  if (frame.headerBytes === undefined)
    encoder.encodeInto(frame.header, out.subarray(FRAME_PREFIX_BYTES, headerEnd));
  else out.set(frame.headerBytes, FRAME_PREFIX_BYTES);
}

function writeUint32LE(out: Uint8Array, at: number, value: number): void {
  out[at] = value & 0xff;
  out[at + 1] = (value >>> 8) & 0xff;
  out[at + 2] = (value >>> 16) & 0xff;
  out[at + 3] = value >>> 24;
}

function planTensors(tensors: TensorMap): TensorPlan {
  const descriptors: TensorDescriptor[] = [];
  const sources: (Uint8Array | Uint8Array[])[] = [];
  let cursor = 0;
  for (const name of Object.keys(tensors)) {
    const tensor = tensors[name] as Tensor;
    const offset = alignUp(cursor);
    const dims = checkTensor(name, tensor);
    let byteLength: number;
    if (tensor.dtype === 'string') {
      const encoded = tensor.data.map((s) => encoder.encode(s));
      byteLength = encoded.reduce((sum, bytes) => sum + 4 + bytes.byteLength, 0);
      sources.push(encoded);
    } else {
      const { data } = tensor;
      byteLength = data.byteLength;
      sources.push(new Uint8Array(data.buffer, data.byteOffset, byteLength));
    }
    descriptors.push({ name, dtype: tensor.dtype, dims, offset, byteLength });
    cursor = offset + byteLength;
  }
  return { descriptors, sources, bodyBytes: cursor };
}

/** Copies each planned tensor's bytes to its place in the body. */
function writeBody(out: Uint8Array, bodyStart: number, plan: TensorPlan): void {
  const { descriptors, sources } = plan;
  for (let index = 0; index < descriptors.length; index++) {
    const descriptor = descriptors[index] as TensorDescriptor;
    writeTensor(
      out,
      bodyStart + descriptor.offset,
      descriptor,
      sources[index] as Uint8Array | Uint8Array[],
    );
  }
}

/** Copies one tensor's bytes (or its strings, each after its u32 length) to `out` at `pos`. */
function writeTensor(
  out: Uint8Array,
  pos: number,
  descriptor: TensorDescriptor,
  source: Uint8Array | Uint8Array[],
): void {
  if (source instanceof Uint8Array) {
    out.set(source, pos);
    if (!LITTLE_ENDIAN) {
      const size = bytesPerElement(descriptor.dtype as NumericTensorDtype);
      swapBytes(out.subarray(pos, pos + source.byteLength), size);
    }
    return;
  }
  for (const bytes of source) {
    writeUint32LE(out, pos, bytes.byteLength);
    out.set(bytes, pos + 4);
    pos += 4 + bytes.byteLength;
  }
}

/** Checks that a tensor's data matches its dims; returns the dims as a plain array. */
function checkTensor(name: string, tensor: Tensor): number[] {
  const dims = Array.from(tensor.dims);
  if (dims.some((d) => !Number.isInteger(d) || d < 0 || d > MAX_DIM)) {
    throw new TandemError('E_INVALID_ARGUMENT', `tensor "${name}": dims must be integers >= 0`);
  }
  if (!isTensorDtype(tensor.dtype)) {
    throw new TandemError('E_UNKNOWN_DTYPE', `tensor "${name}": unknown dtype`);
  }
  const count = elementCount(dims);
  if (tensor.data.length !== count) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `tensor "${name}": ${tensor.data.length} elements for dims [${dims.join(', ')}] (${count})`,
    );
  }
  return dims;
}

/**
 * Decodes one frame: a Uint8Array or ArrayBuffer, or the fragments of one WebSocket message not
 * joined (an array of Uint8Arrays, as ws hands them over with `binaryType = 'fragments'`). Takes
 * `unknown` because it parses what a peer sent: anything that is not a well-formed frame throws a
 * TandemError (`E_PROTOCOL`, `E_PROTOCOL_VERSION`, `E_UNKNOWN_MESSAGE`, `E_UNKNOWN_DTYPE`) and
 * nothing else. Numeric tensors are views over the received bytes when aligned and, for
 * fragments, inside one fragment (as {@link encodeMessageParts} cuts them); else they are copied.
 */
export function decodeMessage(bytes: unknown, options: DecodeOptions = {}): Message {
  try {
    return decodeFrame(frameSource(bytes), options.pooled === true);
  } catch (error) {
    if (error instanceof TandemError) throw error;
    // A bug guard, not a code path: the checks above are meant to catch everything first.
    throw new TandemError('E_PROTOCOL', 'malformed frame', { cause: error });
  }
}

/** Decodes a frame that must carry a client message (what a server receives). */
export function decodeClientMessage(bytes: unknown, options: DecodeOptions = {}): ClientMessage {
  const message = decodeMessage(bytes, options);
  if (!(CLIENT_MESSAGE_TYPES as readonly string[]).includes(message.type)) {
    throw new TandemError('E_UNKNOWN_MESSAGE', `"${message.type}" is not a client message`);
  }
  return message as ClientMessage;
}

/** Decodes a frame that must carry a server message (what a client receives). */
export function decodeServerMessage(bytes: unknown): ServerMessage {
  const message = decodeMessage(bytes);
  if (!(SERVER_MESSAGE_TYPES as readonly string[]).includes(message.type)) {
    throw new TandemError('E_UNKNOWN_MESSAGE', `"${message.type}" is not a server message`);
  }
  return message as ServerMessage;
}

/**
 * A frame's bytes as the decoder reads them: ranges located one at a time, in one buffer or in a
 * message's fragments. `locate` sets `bytes` and `at` (reused, so reading a range allocates
 * nothing unless it spans fragments).
 */
interface FrameSource {
  readonly length: number;
  /** After {@link locate}: the range starts at `bytes[at]`. */
  bytes: Uint8Array;
  at: number;
  locate(start: number, end: number): void;
}

/** A frame in one buffer. */
class WholeFrame implements FrameSource {
  readonly length: number;
  bytes: Uint8Array;
  at = 0;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.length = bytes.byteLength;
  }

  locate(start: number): void {
    this.at = start;
  }
}

/** A frame in the fragments of one WebSocket message: a range inside one is read in place. */
class FragmentedFrame implements FrameSource {
  readonly length: number;
  bytes: Uint8Array;
  at = 0;
  readonly #parts: readonly Uint8Array[];
  /** Where each fragment starts in the frame, and (last) the frame's length. */
  readonly #starts: number[];

  constructor(parts: readonly Uint8Array[]) {
    this.#parts = parts;
    this.#starts = [0];
    let length = 0;
    for (const part of parts) {
      length += part.byteLength;
      this.#starts.push(length);
    }
    this.length = length;
    this.bytes = parts[0] as Uint8Array;
  }

  locate(start: number, end: number): void {
    const starts = this.#starts;
    let index = 0;
    // Fragments are few; skip the empty ones and those that end at or before `start`.
    while (index < this.#parts.length - 1 && (starts[index + 1] as number) <= start) index++;
    const partStart = starts[index] as number;
    if (end <= (starts[index + 1] as number)) {
      this.bytes = this.#parts[index] as Uint8Array;
      this.at = start - partStart;
      return;
    }
    // The range spans fragments (a sender that cut the frame elsewhere): join just this range.
    const joined = new Uint8Array(end - start);
    let written = 0;
    for (let i = index; written < joined.byteLength; i++) {
      const part = this.#parts[i] as Uint8Array;
      const from = i === index ? start - partStart : 0;
      const take = Math.min(part.byteLength - from, joined.byteLength - written);
      joined.set(part.subarray(from, from + take), written);
      written += take;
    }
    this.bytes = joined;
    this.at = 0;
  }
}

function frameSource(value: unknown): FrameSource {
  if (value instanceof Uint8Array) return new WholeFrame(value);
  if (value instanceof ArrayBuffer) return new WholeFrame(new Uint8Array(value));
  if (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((part) => part instanceof Uint8Array)
  ) {
    const parts = value;
    const [first] = parts;
    return parts.length === 1 && first !== undefined
      ? new WholeFrame(first)
      : new FragmentedFrame(parts);
  }
  throw new TandemError(
    'E_PROTOCOL',
    'a frame must be a Uint8Array, an ArrayBuffer or a non-empty array of Uint8Array fragments',
  );
}

function protocolError(message: string): TandemError {
  return new TandemError('E_PROTOCOL', message);
}

/** Reads and checks a frame's prefix, then parses its JSON header (not yet checked as a message). */
function readHeader(source: FrameSource): { header: Record<string, unknown>; headerEnd: number } {
  const length = source.length;
  if (length < FRAME_PREFIX_BYTES) {
    throw protocolError(
      `frame is ${length} bytes, shorter than its ${FRAME_PREFIX_BYTES}-byte prefix`,
    );
  }
  source.locate(0, FRAME_PREFIX_BYTES);
  const prefix = source.bytes;
  const p = source.at;
  for (let i = 0; i < FRAME_MAGIC.length; i++) {
    if (prefix[p + i] !== FRAME_MAGIC[i]) throw protocolError('frame does not start with "TNDM"');
  }
  if (prefix[p + 4] !== PROTOCOL_VERSION) {
    throw new TandemError(
      'E_PROTOCOL_VERSION',
      `frame has protocol version ${prefix[p + 4]}; this side speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (prefix[p + 5] !== 0 || prefix[p + 6] !== 0 || prefix[p + 7] !== 0) {
    throw protocolError('reserved frame bytes 5..7 must be zero');
  }
  const headerLength =
    ((prefix[p + 8] as number) |
      ((prefix[p + 9] as number) << 8) |
      ((prefix[p + 10] as number) << 16) |
      ((prefix[p + 11] as number) << 24)) >>>
    0;
  if (headerLength > MAX_HEADER_BYTES) {
    throw protocolError(`header length ${headerLength} exceeds ${MAX_HEADER_BYTES} bytes`);
  }
  const headerEnd = FRAME_PREFIX_BYTES + headerLength;
  if (headerEnd > length) {
    throw protocolError(`header length ${headerLength} runs past the ${length}-byte frame`);
  }
  source.locate(FRAME_PREFIX_BYTES, headerEnd);
  let text: string;
  try {
    text = decoder.decode(source.bytes.subarray(source.at, source.at + headerLength));
  } catch {
    throw protocolError('header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw protocolError('header is not valid JSON');
  }
  return { header: expectRecord(parsed, { path: 'header' }), headerEnd };
}

/**
 * The job id of an `infer` frame that failed to decode, when its header is readable and names a
 * valid id (undefined otherwise): the receiver then addresses its refusal to that job, whose
 * sender would else wait for an answer that never comes. Only for refusals: it reads the header
 * again.
 */
export function peekInferId(bytes: unknown): string | undefined {
  try {
    const { header } = readHeader(frameSource(bytes));
    const { type, id } = header;
    return type === 'infer' && typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_CHARS
      ? id
      : undefined;
  } catch {
    return undefined;
  }
}

function decodeFrame(source: FrameSource, pooled: boolean): Message {
  const length = source.length;
  const { header, headerEnd } = readHeader(source);
  const type = header.type;
  const field = type === 'infer' || type === 'result' ? TENSOR_FIELD[type] : undefined;
  if (field === undefined) {
    if (length !== headerEnd) throw protocolError('frame has bytes after a header with no tensors');
    return parseMessageFields(header, undefined);
  }
  const tensors = decodeTensors(
    source,
    header[field],
    headerEnd,
    `${String(type)}.${field}`,
    pooled,
  );
  return parseMessageFields(header, tensors);
}

function decodeTensors(
  source: FrameSource,
  value: unknown,
  headerEnd: number,
  path: string,
  pooled: boolean,
): TensorMap {
  const ctx = { path };
  const descriptors = expectArray(value, ctx, MAX_TENSORS_PER_MESSAGE);
  const length = source.length;
  if (descriptors.length === 0) {
    if (length !== headerEnd) throw protocolError('frame has bytes after a header with no tensors');
    return {};
  }
  const bodyStart = alignUp(headerEnd);
  const paddingEnd = Math.min(bodyStart, length);
  source.locate(headerEnd, paddingEnd);
  for (let i = 0; i < paddingEnd - headerEnd; i++) {
    if (source.bytes[source.at + i] !== 0) throw protocolError('header padding must be zero');
  }
  const bodyLength = length - bodyStart;
  if (bodyLength < 0) throw protocolError('frame ends before its tensor body');
  const entries: [string, Tensor][] = [];
  // Names are checked for duplicates with a set only when there are many: most frames carry one.
  const names = descriptors.length > 8 ? new Set<string>() : undefined;
  let cursor = 0;
  for (let index = 0; index < descriptors.length; index++) {
    const itemCtx = at(ctx, index);
    const record = expectRecord(descriptors[index], itemCtx);
    const name = expectString(record.name, at(itemCtx, 'name'), MAX_NAME_CHARS);
    if (names === undefined ? entries.some((entry) => entry[0] === name) : names.has(name)) {
      throw protocolError(`${itemCtx.path}: duplicate tensor name`);
    }
    names?.add(name);
    const dtype = record.dtype;
    if (!isTensorDtype(dtype)) {
      throw new TandemError('E_UNKNOWN_DTYPE', `${itemCtx.path}.dtype: unknown dtype`);
    }
    const dims = parseDims(record.dims, itemCtx);
    const offset = expectInteger(record.offset, at(itemCtx, 'offset'), 0, bodyLength);
    const byteLength = expectInteger(record.byteLength, at(itemCtx, 'byteLength'), 0, bodyLength);
    if (offset !== alignUp(cursor)) {
      throw protocolError(
        `${itemCtx.path}.offset: expected ${alignUp(cursor)} (8-byte aligned, in order, packed)`,
      );
    }
    if (offset + byteLength > bodyLength) {
      throw protocolError(
        `${itemCtx.path}: bytes ${offset}..${offset + byteLength} run past the body`,
      );
    }
    const count = elementCount(dims);
    const start = bodyStart + offset;
    source.locate(start, start + byteLength);
    const tensor =
      dtype === 'string'
        ? decodeStrings(source.bytes, dims, source.at, byteLength, count, itemCtx)
        : decodeNumeric(source.bytes, dtype, dims, source.at, byteLength, count, itemCtx, pooled);
    entries.push([name, tensor]);
    cursor = offset + byteLength;
  }
  if (cursor !== bodyLength)
    throw protocolError(`frame has ${bodyLength - cursor} bytes after its last tensor`);
  // fromEntries defines own properties, so a tensor named "__proto__" cannot touch the prototype.
  return Object.fromEntries(entries);
}

/**
 * A descriptor's dims: the header's own array (parsed for this frame alone, so nothing else holds
 * it), checked in place. A context per dim is built only for an error.
 */
function parseDims(value: unknown, itemCtx: ParseContext): number[] {
  const dims = expectArray(value, at(itemCtx, 'dims'), MAX_TENSOR_RANK) as number[];
  for (let d = 0; d < dims.length; d++) {
    const dim = dims[d];
    if (!Number.isInteger(dim) || (dim as number) < 0 || (dim as number) > MAX_DIM) {
      expectInteger(dim, at(at(itemCtx, 'dims'), d), 0, MAX_DIM);
    }
  }
  return dims;
}

function decodeNumeric(
  bytes: Uint8Array,
  dtype: NumericTensorDtype,
  dims: number[],
  start: number,
  byteLength: number,
  count: number,
  ctx: ParseContext,
  pooled: boolean,
): Tensor {
  // ctx.path is read only for an error message: building it costs more than the checks.
  const size = bytesPerElement(dtype);
  if (count * size !== byteLength) {
    throw protocolError(
      `${ctx.path}: dims [${dims.join(', ')}] of ${dtype} need ${count * size} bytes, frame has ${byteLength}`,
    );
  }
  if (dtype === 'bool') checkBoolBytes(bytes, start, byteLength, ctx);
  const absolute = bytes.byteOffset + start;
  if (absolute % size === 0 && LITTLE_ENDIAN) {
    return {
      dtype,
      dims,
      data: viewTensorData(dtype, bytes.buffer, absolute, byteLength),
    } as Tensor;
  }
  // Unaligned (the frame sits at an odd offset in its buffer) or big-endian: copy this tensor once.
  const copy = pooled
    ? allocatePooledFrame(byteLength)
    : new Uint8Array(new ArrayBuffer(byteLength));
  copy.set(bytes.subarray(start, start + byteLength));
  if (!LITTLE_ENDIAN) swapBytes(copy, size);
  return {
    dtype,
    dims,
    data: viewTensorData(dtype, copy.buffer, copy.byteOffset, byteLength),
  } as Tensor;
}

/** Bool elements are one byte, 0 or 1 (docs/protocol.md): onnxruntime reads any other as undefined. */
function checkBoolBytes(
  bytes: Uint8Array,
  start: number,
  byteLength: number,
  ctx: ParseContext,
): void {
  for (let i = 0; i < byteLength; i++) {
    const value = bytes[start + i] as number;
    if (value > 1) throw protocolError(`${ctx.path}: bool element ${i} is ${value}, not 0 or 1`);
  }
}

function decodeStrings(
  bytes: Uint8Array,
  dims: number[],
  start: number,
  byteLength: number,
  count: number,
  ctx: ParseContext,
): Tensor {
  // Each string takes at least its 4-byte length: check before allocating `count` slots.
  if (count * 4 > byteLength) {
    throw protocolError(`${ctx.path}: ${count} strings cannot fit in ${byteLength} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = start + byteLength;
  const data: string[] = new Array<string>(count);
  let pos = start;
  for (let i = 0; i < count; i++) {
    if (pos + 4 > end) throw protocolError(`${ctx.path}: string ${i} length runs past the tensor`);
    const size = view.getUint32(pos, true);
    pos += 4;
    if (size > end - pos) throw protocolError(`${ctx.path}: string ${i} runs past the tensor`);
    try {
      data[i] = decoder.decode(bytes.subarray(pos, pos + size));
    } catch {
      throw protocolError(`${ctx.path}: string ${i} is not valid UTF-8`);
    }
    pos += size;
  }
  if (pos !== end) throw protocolError(`${ctx.path}: ${end - pos} bytes after the last string`);
  return { dtype: 'string', dims, data };
}

function alignUp(value: number): number {
  return Math.ceil(value / ALIGN_BYTES) * ALIGN_BYTES;
}

function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i + size <= bytes.byteLength; i += size) {
    bytes.subarray(i, i + size).reverse();
  }
}
