// A dependency-free writer for ONNX ModelProto, enough to express the synthetic models tests and
// benchmarks need. Protobuf is written by hand: each message records its parts (small header
// bytes, references to large payloads, nested messages) and knows its size, so the final model is
// allocated once and every byte is copied once, even for a model of hundreds of megabytes.
//
// Field numbers follow onnx/onnx.proto (proto2). Repeated numeric fields are written packed,
// which every protobuf parser accepts for proto2 fields too.

/** ONNX `TensorProto.DataType` codes, keyed by the dtype names onnxruntime's JavaScript API uses. */
export const ONNX_DTYPE_CODES = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
} as const;

/** An element type this builder can write; the names match `@tandem/shared`'s `TensorDtype`. */
export type OnnxDtype = keyof typeof ONNX_DTYPE_CODES;

/**
 * The JavaScript container for each dtype's data. float16 is raw IEEE-754 half bits in a
 * Uint16Array and bool is 0/1 bytes, as in onnxruntime where Float16Array is missing.
 */
export interface OnnxDataByDtype {
  float32: Float32Array;
  uint8: Uint8Array;
  int8: Int8Array;
  uint16: Uint16Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  string: readonly string[];
  bool: Uint8Array;
  float16: Uint16Array;
  float64: Float64Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
}

/** A constant tensor: `data` holds `product(dims)` elements in row-major order. */
export type TensorValue<D extends OnnxDtype = OnnxDtype> = {
  [K in D]: {
    readonly dtype: K;
    readonly dims: readonly number[];
    readonly data: OnnxDataByDtype[K];
  };
}[D];

/** A named constant of the graph (a weight, a bias, a scalar operand). */
export type Initializer<D extends OnnxDtype = OnnxDtype> = TensorValue<D> & {
  readonly name: string;
};

/**
 * A graph input or output. Each dim is a fixed size (a number) or a symbolic name such as
 * `'batch'`; an empty `dims` declares a scalar.
 */
export interface ValueInfo {
  readonly name: string;
  readonly dtype: OnnxDtype;
  readonly dims: readonly (number | string)[];
  /**
   * A raw `TensorProto.DataType` code written instead of `dtype`'s, to declare element types this
   * builder holds no data for (bfloat16 is 16): a value info needs the code alone.
   */
  readonly elemType?: number;
}

/**
 * A node attribute. The kind is explicit because JavaScript cannot tell the float `1.0` from the
 * int `1`, and ONNX operators reject an attribute of the wrong type.
 */
export type AttributeValue =
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'int'; readonly value: number | bigint }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'tensor'; readonly value: TensorValue }
  | { readonly type: 'floats'; readonly value: readonly number[] }
  | { readonly type: 'ints'; readonly value: readonly (number | bigint)[] }
  | { readonly type: 'strings'; readonly value: readonly string[] };

/** One operator of the graph. An empty string in `inputs` skips an optional input. */
export interface NodeSpec {
  /** Operator name in the default ONNX domain, e.g. `'MatMul'`. */
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  /** Node name. @default `${opType}_${index}` */
  readonly name?: string;
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

/** Everything {@link buildModel} needs: one graph in the default ONNX domain. */
export interface ModelSpec {
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  /** Nodes in topological order (ONNX requires it). */
  readonly nodes: readonly NodeSpec[];
  /** @default [] */
  readonly initializers?: readonly Initializer[];
  /** Opset version of the default domain. @default 17 ({@link DEFAULT_OPSET}) */
  readonly opset?: number;
  /** @default 'tandem_test_graph' */
  readonly graphName?: string;
}

/** The ONNX IR version written into every model (ONNX 1.10+, read by every onnxruntime in use). */
export const ONNX_IR_VERSION = 8;

/** The default-domain opset version used unless a spec names another. */
export const DEFAULT_OPSET = 17;

/** `ModelProto.producer_name` of every model this builder writes. */
export const PRODUCER_NAME = 'tandem-test-support';

// Protobuf wire types.
const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

// onnx.proto AttributeProto.AttributeType.
const ATTRIBUTE_TYPE_CODES: { readonly [K in AttributeValue['type']]: number } = {
  float: 1,
  int: 2,
  string: 3,
  tensor: 4,
  floats: 6,
  ints: 7,
  strings: 8,
};

// The biggest message protobuf implementations (onnxruntime's included) agree to parse.
const MAX_MESSAGE_BYTES = 0x7fff_ffff;

const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const utf8 = new TextEncoder();

/**
 * One protobuf message under construction. Scalars accumulate in a small byte list; large byte
 * payloads and nested messages are kept by reference, so nothing big is copied before
 * {@link ProtoWriter.finish} copies it once into the final buffer. A nested message must be
 * complete before it is added, because its length prefix is written when it is added.
 */
class ProtoWriter {
  private readonly parts: (Uint8Array | ProtoWriter)[] = [];
  private pending: number[] = [];
  private size = 0;

  /** Encoded size of the message so far, in bytes. */
  get byteLength(): number {
    return this.size;
  }

  /** An unsigned or signed integer field (int32, int64, enum); negatives take ten bytes. */
  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.pushVarint(value);
    return this;
  }

  /** A float field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    this.pushFloat(value);
    return this;
  }

  /** A string field, UTF-8 encoded. */
  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  /** A bytes field; `data` is referenced, not copied, until {@link finish}. */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.pushVarint(data.byteLength);
    this.append(data);
    return this;
  }

  /** A nested message field; `child` must not change afterwards. */
  message(field: number, child: ProtoWriter): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.pushVarint(child.byteLength);
    this.append(child);
    return this;
  }

  /** A packed repeated int64 field; an empty list writes nothing (the field stays absent). */
  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    if (values.length === 0) return this;
    const body = new ProtoWriter();
    for (const value of values) body.pushVarint(value);
    return this.message(field, body);
  }

  /** A packed repeated float field; an empty list writes nothing. */
  packedFloats(field: number, values: readonly number[]): this {
    if (values.length === 0) return this;
    const body = new ProtoWriter();
    for (const value of values) body.pushFloat(value);
    return this.message(field, body);
  }

  /** The encoded message in one newly allocated buffer. */
  finish(): Uint8Array {
    if (this.size > MAX_MESSAGE_BYTES) {
      throw new RangeError(
        `model is ${this.size} bytes; protobuf cannot hold more than ${MAX_MESSAGE_BYTES}`,
      );
    }
    const out = new Uint8Array(this.size);
    const end = this.writeInto(out, 0);
    if (end !== this.size) throw new Error(`protobuf size mismatch: wrote ${end} of ${this.size}`);
    return out;
  }

  private writeInto(out: Uint8Array, start: number): number {
    let offset = start;
    for (const part of this.parts) {
      if (part instanceof ProtoWriter) {
        offset = part.writeInto(out, offset);
      } else {
        out.set(part, offset);
        offset += part.byteLength;
      }
    }
    // Scalars written after the last part are still in the byte list.
    for (let i = 0; i < this.pending.length; i++) out[offset + i] = this.pending[i] ?? 0;
    return offset + this.pending.length;
  }

  private tag(field: number, wireType: number): void {
    this.pushVarint(field * 8 + wireType);
  }

  private append(part: Uint8Array | ProtoWriter): void {
    if (this.pending.length > 0) {
      this.parts.push(Uint8Array.from(this.pending));
      this.pending = [];
    }
    this.parts.push(part);
    this.size += part.byteLength;
  }

  private pushByte(byte: number): void {
    this.pending.push(byte);
    this.size += 1;
  }

  private pushVarint(value: number | bigint): void {
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) throw new RangeError(`${value} is not a safe integer`);
      if (value >= 0) {
        // Division rather than shifts: JavaScript bit operators truncate to 32 bits.
        let rest = value;
        while (rest >= 0x80) {
          this.pushByte((rest % 0x80) | 0x80);
          rest = Math.floor(rest / 0x80);
        }
        this.pushByte(rest);
        return;
      }
    } else if (value < INT64_MIN || value > UINT64_MAX) {
      throw new RangeError(`${value} does not fit in 64 bits`);
    }
    // Negative int64 values are sign-extended to 64 bits and so always take ten bytes.
    let rest = BigInt.asUintN(64, BigInt(value));
    while (rest >= 0x80n) {
      this.pushByte(Number(rest & 0x7fn) | 0x80);
      rest >>= 7n;
    }
    this.pushByte(Number(rest));
  }

  private pushFloat(value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    for (const byte of bytes) this.pushByte(byte);
  }
}

// Field numbers from onnx.proto, grouped by message.
const MODEL = { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8 } as const;
const OPSET_ID = { version: 2 } as const;
const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12 } as const;
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5 } as const;
const ATTRIBUTE = {
  name: 1,
  f: 2,
  i: 3,
  s: 4,
  t: 5,
  floats: 7,
  ints: 8,
  strings: 9,
  type: 20,
} as const;
const TENSOR = {
  dims: 1,
  dataType: 2,
  stringData: 6,
  name: 8,
  rawData: 9,
  externalData: 13,
  dataLocation: 14,
} as const;
const STRING_STRING_ENTRY = { key: 1, value: 2 } as const;
/** `TensorProto.DataLocation.EXTERNAL`. */
const DATA_LOCATION_EXTERNAL = 1;
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensorType: 1 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIMENSION = { dimValue: 1, dimParam: 2 } as const;

type NumericData = Exclude<OnnxDataByDtype[OnnxDtype], readonly string[]>;

/**
 * The little-endian bytes of a typed array, as `raw_data` requires. On little-endian hosts (all
 * mainstream ones) this is a view of the same memory, so a 300 MB weight is not copied here.
 */
function littleEndianBytes(data: NumericData): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (HOST_IS_LITTLE_ENDIAN || data.BYTES_PER_ELEMENT === 1) return view;
  const swapped = new Uint8Array(view.byteLength);
  const width = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < view.byteLength; i += width) {
    for (let j = 0; j < width; j++) swapped[i + j] = view[i + width - 1 - j] ?? 0;
  }
  return swapped;
}

function elementCountOf(dims: readonly number[], what: string): number {
  let count = 1;
  for (const dim of dims) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new RangeError(`${what}: dim ${dim} is not a non-negative integer`);
    }
    count *= dim;
  }
  return count;
}

/** Collects initializer data written to an external data file instead of the model. */
class ExternalData {
  readonly location: string;
  readonly chunks: Uint8Array[] = [];
  bytes = 0;

  constructor(location: string) {
    this.location = location;
  }

  /** Appends `data` (at an offset aligned to 16 bytes) and returns its offset. */
  add(data: Uint8Array): number {
    const padding = (16 - (this.bytes % 16)) % 16;
    if (padding > 0) this.chunks.push(new Uint8Array(padding));
    const offset = this.bytes + padding;
    this.chunks.push(data);
    this.bytes = offset + data.byteLength;
    return offset;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.bytes);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    return out;
  }
}

function encodeTensor(
  tensor: TensorValue,
  name: string | undefined,
  what: string,
  external?: ExternalData,
): ProtoWriter {
  const count = elementCountOf(tensor.dims, what);
  if (tensor.data.length !== count) {
    throw new RangeError(
      `${what}: dims [${tensor.dims.join(', ')}] need ${count} elements, data has ${tensor.data.length}`,
    );
  }
  const message = new ProtoWriter()
    .packedVarints(TENSOR.dims, tensor.dims)
    .varint(TENSOR.dataType, ONNX_DTYPE_CODES[tensor.dtype]);
  if (name !== undefined) message.string(TENSOR.name, name);
  if (tensor.dtype === 'string') {
    // Strings cannot go in raw_data; each is one entry of the repeated bytes field.
    for (const value of tensor.data) message.string(TENSOR.stringData, value);
  } else if (external !== undefined) {
    const bytes = littleEndianBytes(tensor.data);
    const offset = external.add(bytes);
    const entries: [string, string][] = [
      ['location', external.location],
      ['offset', String(offset)],
      ['length', String(bytes.byteLength)],
    ];
    for (const [key, value] of entries) {
      message.message(
        TENSOR.externalData,
        new ProtoWriter()
          .string(STRING_STRING_ENTRY.key, key)
          .string(STRING_STRING_ENTRY.value, value),
      );
    }
    message.varint(TENSOR.dataLocation, DATA_LOCATION_EXTERNAL);
  } else {
    message.bytes(TENSOR.rawData, littleEndianBytes(tensor.data));
  }
  return message;
}

function encodeAttribute(name: string, attribute: AttributeValue, what: string): ProtoWriter {
  const message = new ProtoWriter()
    .string(ATTRIBUTE.name, name)
    .varint(ATTRIBUTE.type, ATTRIBUTE_TYPE_CODES[attribute.type]);
  switch (attribute.type) {
    case 'float':
      return message.float(ATTRIBUTE.f, attribute.value);
    case 'int':
      return message.varint(ATTRIBUTE.i, attribute.value);
    case 'string':
      return message.string(ATTRIBUTE.s, attribute.value);
    case 'tensor':
      return message.message(ATTRIBUTE.t, encodeTensor(attribute.value, undefined, what));
    case 'floats':
      return message.packedFloats(ATTRIBUTE.floats, attribute.value);
    case 'ints':
      return message.packedVarints(ATTRIBUTE.ints, attribute.value);
    case 'strings':
      for (const value of attribute.value) message.string(ATTRIBUTE.strings, value);
      return message;
  }
}

function encodeNode(node: NodeSpec, index: number): ProtoWriter {
  const name = node.name ?? `${node.opType}_${index}`;
  const message = new ProtoWriter();
  for (const input of node.inputs) message.string(NODE.input, input);
  for (const output of node.outputs) message.string(NODE.output, output);
  message.string(NODE.name, name).string(NODE.opType, node.opType);
  for (const [key, attribute] of Object.entries(node.attributes ?? {})) {
    message.message(NODE.attribute, encodeAttribute(key, attribute, `node ${name}.${key}`));
  }
  return message;
}

function encodeValueInfo(info: ValueInfo): ProtoWriter {
  // The shape is always written, even with no dims: an absent shape would mean "unknown rank",
  // an empty one means "scalar".
  const shape = new ProtoWriter();
  for (const dim of info.dims) {
    if (typeof dim === 'string') {
      if (dim.length === 0) throw new RangeError(`value ${info.name}: empty symbolic dim`);
      shape.message(SHAPE.dim, new ProtoWriter().string(DIMENSION.dimParam, dim));
    } else {
      elementCountOf([dim], `value ${info.name}`);
      shape.message(SHAPE.dim, new ProtoWriter().varint(DIMENSION.dimValue, dim));
    }
  }
  const tensorType = new ProtoWriter()
    .varint(TENSOR_TYPE.elemType, info.elemType ?? ONNX_DTYPE_CODES[info.dtype])
    .message(TENSOR_TYPE.shape, shape);
  return new ProtoWriter()
    .string(VALUE_INFO.name, info.name)
    .message(VALUE_INFO.type, new ProtoWriter().message(TYPE.tensorType, tensorType));
}

/**
 * Serialises a single-graph ONNX model (IR version {@link ONNX_IR_VERSION}, default domain at
 * `spec.opset`). The result is one buffer sized up front; initializer data is copied into it
 * exactly once. Throws a RangeError when an initializer's data does not match its dims, a dim is
 * not a non-negative integer, or the model would exceed protobuf's 2 GiB limit.
 */
export function buildModel(spec: ModelSpec): Uint8Array {
  return encodeModel(spec, undefined);
}

/**
 * Serialises a model whose numeric initializers live in an external data file, as exporters write
 * models past protobuf's 2 GiB limit: `model` refers to `location` (a path relative to the model
 * file) for each weight's bytes, and `data` is that file's content.
 */
export function buildModelWithExternalData(
  spec: ModelSpec,
  location: string,
): { model: Uint8Array; data: Uint8Array } {
  const external = new ExternalData(location);
  const model = encodeModel(spec, external);
  return { model, data: external.finish() };
}

function encodeModel(spec: ModelSpec, external: ExternalData | undefined): Uint8Array {
  const graph = new ProtoWriter();
  spec.nodes.forEach((node, index) => graph.message(GRAPH.node, encodeNode(node, index)));
  graph.string(GRAPH.name, spec.graphName ?? 'tandem_test_graph');
  for (const initializer of spec.initializers ?? []) {
    const what = `initializer ${initializer.name}`;
    graph.message(GRAPH.initializer, encodeTensor(initializer, initializer.name, what, external));
  }
  for (const input of spec.inputs) graph.message(GRAPH.input, encodeValueInfo(input));
  for (const output of spec.outputs) graph.message(GRAPH.output, encodeValueInfo(output));

  // The default domain is the empty string, which proto2 lets us leave out.
  const opset = new ProtoWriter().varint(OPSET_ID.version, spec.opset ?? DEFAULT_OPSET);
  return new ProtoWriter()
    .varint(MODEL.irVersion, ONNX_IR_VERSION)
    .string(MODEL.producerName, PRODUCER_NAME)
    .message(MODEL.graph, graph)
    .message(MODEL.opsetImport, opset)
    .finish();
}
