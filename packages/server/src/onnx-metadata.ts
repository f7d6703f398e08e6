// Reads a model's declared inputs and outputs straight from the .onnx file's protobuf, seeking over
// weights instead of reading them. This gives the signature of a model that is not loaded (so a
// cold model's inputs are checked before the cold start is paid), and tells an unknown shape from a
// scalar, which onnxruntime's inputMetadata cannot (both come back as []).

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { TandemError, type TensorDtype, type TensorSpec } from '@tandem/shared';

/** What the file declares. */
export interface OnnxMetadata {
  /** The ONNX IR version the file was written with. */
  readonly irVersion: number;
  /** Graph inputs that are not initializers: what a caller must feed. */
  readonly inputs: readonly TensorSpec[];
  /** Graph outputs, with their dtypes and (possibly symbolic) dims. */
  readonly outputs: readonly TensorSpec[];
  /** Names of graph inputs with an unsupported element type (bfloat16, complex, float8…). */
  readonly unsupported: readonly string[];
  /**
   * The external data files the model's weights live in (`location`s of tensors stored outside
   * the .onnx, as exporters write models past protobuf's 2 GiB limit), as written in the file:
   * paths relative to the model's directory, each once, in the order first referenced.
   */
  readonly externalData: readonly string[];
}

/** Field numbers read from onnx.proto. */
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const GRAPH_SPARSE_INITIALIZER = 15;
const NODE_ATTRIBUTE = 5;
const ATTRIBUTE_TENSOR = 5;
const ATTRIBUTE_GRAPH = 6;
const ATTRIBUTE_TENSORS = 10;
const ATTRIBUTE_GRAPHS = 11;
const TENSOR_NAME = 8;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;
const SPARSE_VALUES = 1;
const SPARSE_INDICES = 2;
/** `TensorProto.DataLocation.EXTERNAL`. */
const DATA_LOCATION_EXTERNAL = 1;
/** Nesting of subgraphs (If/Loop/Scan bodies) read before a file counts as malformed. */
const MAX_GRAPH_DEPTH = 64;

/** ONNX TensorProto.DataType → dtype, for the types both onnxruntimes support. */
const ONNX_DTYPES: Readonly<Record<number, TensorDtype>> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
};

/** Random access to the file, through a small read-ahead window. */
class ByteSource {
  readonly size: number;
  readonly #fd: number;
  #windowStart = 0;
  #window = Buffer.alloc(0);

  constructor(fd: number) {
    this.#fd = fd;
    this.size = fstatSync(fd).size;
  }

  byte(pos: number): number {
    if (pos < this.#windowStart || pos >= this.#windowStart + this.#window.length) {
      const length = Math.min(64 * 1024, this.size - pos);
      if (length <= 0) throw notOnnx('unexpected end of file');
      this.#window = Buffer.alloc(length);
      readSync(this.#fd, this.#window, 0, length, pos);
      this.#windowStart = pos;
    }
    return this.#window[pos - this.#windowStart] as number;
  }

  bytes(pos: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    if (readSync(this.#fd, out, 0, length, pos) !== length) throw notOnnx('unexpected end of file');
    return out;
  }
}

interface Field {
  readonly number: number;
  readonly wireType: number;
  /** Varint value (wire type 0). */
  readonly value: number;
  /** Payload bounds (wire type 2). */
  readonly start: number;
  readonly end: number;
}

/** Iterates the fields of a message occupying [start, end). */
function* fields(src: ByteSource, start: number, end: number): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const [tag, afterTag] = varint(src, pos, end);
    const number = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (number === 0) throw notOnnx('field number 0');
    pos = afterTag;
    switch (wireType) {
      case 0: {
        const [value, next] = varint(src, pos, end);
        yield { number, wireType, value, start: pos, end: next };
        pos = next;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 2: {
        const [length, next] = varint(src, pos, end);
        if (next + length > end) throw notOnnx('length-delimited field runs past its message');
        yield { number, wireType, value: length, start: next, end: next + length };
        pos = next + length;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw notOnnx(`unsupported wire type ${wireType}`);
    }
    if (pos > end) throw notOnnx('field runs past its message');
  }
}

function varint(src: ByteSource, pos: number, end: number): [number, number] {
  let result = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw notOnnx('truncated varint');
    const byte = src.byte(pos++);
    result += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [result, pos];
    scale *= 128;
  }
  throw notOnnx('varint longer than 10 bytes');
}

function text(src: ByteSource, field: Field): string {
  if (field.wireType !== 2) throw notOnnx('expected a string field');
  return src.bytes(field.start, field.end - field.start).toString('utf8');
}

function notOnnx(reason: string): TandemError {
  return new TandemError('E_MODEL_LOAD_FAILED', `not a valid ONNX model: ${reason}`);
}

interface RawValueInfo {
  name: string;
  elemType: number | undefined;
  dims: (number | string)[] | undefined;
}

function valueInfo(src: ByteSource, start: number, end: number): RawValueInfo {
  const info: RawValueInfo = { name: '', elemType: undefined, dims: undefined };
  for (const f of fields(src, start, end)) {
    if (f.number === 1) info.name = text(src, f);
    else if (f.number === 2 && f.wireType === 2) {
      // TypeProto.tensor_type (1) → elem_type (1), shape (2) → dim (1) → dim_value (1) | dim_param (2)
      for (const t of fields(src, f.start, f.end)) {
        if (t.number !== 1 || t.wireType !== 2) continue;
        for (const tt of fields(src, t.start, t.end)) {
          if (tt.number === 1 && tt.wireType === 0) info.elemType = tt.value;
          if (tt.number === 2 && tt.wireType === 2) {
            const dims: (number | string)[] = [];
            for (const d of fields(src, tt.start, tt.end)) {
              if (d.number !== 1 || d.wireType !== 2) continue;
              let dim: number | string = '?';
              for (const dd of fields(src, d.start, d.end)) {
                if (dd.number === 1 && dd.wireType === 0) dim = dd.value;
                if (dd.number === 2 && dd.wireType === 2) dim = text(src, dd) || '?';
              }
              dims.push(dim);
            }
            info.dims = dims;
          }
        }
      }
    }
  }
  return info;
}

/** The external data location of a TensorProto at [start, end), if its data is external. */
function externalLocation(src: ByteSource, start: number, end: number): string | undefined {
  let external = false;
  let location: string | undefined;
  for (const f of fields(src, start, end)) {
    if (f.number === TENSOR_DATA_LOCATION && f.wireType === 0) {
      external = f.value === DATA_LOCATION_EXTERNAL;
    } else if (f.number === TENSOR_EXTERNAL_DATA && f.wireType === 2) {
      // StringStringEntryProto: key (1), value (2).
      let key: string | undefined;
      let value: string | undefined;
      for (const e of fields(src, f.start, f.end)) {
        if (e.number === 1) key = text(src, e);
        else if (e.number === 2) value = text(src, e);
      }
      if (key === 'location') location = value;
    }
  }
  if (!external) return undefined;
  if (location === undefined || location.length === 0)
    throw notOnnx('a tensor stored as external data names no location');
  return location;
}

/**
 * Adds the external data locations of a graph's tensors to `found`: initializers, sparse
 * initializers, tensor attributes of nodes, and the same inside subgraphs (If, Loop, Scan).
 */
function collectExternalData(
  src: ByteSource,
  start: number,
  end: number,
  found: Set<string>,
  depth: number,
): void {
  if (depth > MAX_GRAPH_DEPTH) throw notOnnx(`subgraphs nested deeper than ${MAX_GRAPH_DEPTH}`);
  const tensor = (f: Field): void => {
    const location = externalLocation(src, f.start, f.end);
    if (location !== undefined) found.add(location);
  };
  for (const f of fields(src, start, end)) {
    if (f.wireType !== 2) continue;
    if (f.number === GRAPH_INITIALIZER) tensor(f);
    else if (f.number === GRAPH_SPARSE_INITIALIZER) {
      for (const part of fields(src, f.start, f.end)) {
        if (
          (part.number === SPARSE_VALUES || part.number === SPARSE_INDICES) &&
          part.wireType === 2
        )
          tensor(part);
      }
    } else if (f.number === GRAPH_NODE) {
      for (const attribute of fields(src, f.start, f.end)) {
        if (attribute.number !== NODE_ATTRIBUTE || attribute.wireType !== 2) continue;
        for (const a of fields(src, attribute.start, attribute.end)) {
          if (a.wireType !== 2) continue;
          if (a.number === ATTRIBUTE_TENSOR || a.number === ATTRIBUTE_TENSORS) tensor(a);
          else if (a.number === ATTRIBUTE_GRAPH || a.number === ATTRIBUTE_GRAPHS)
            collectExternalData(src, a.start, a.end, found, depth + 1);
        }
      }
    }
  }
}

/**
 * Reads the signature of the ONNX file at `path`. Throws `E_MODEL_LOAD_FAILED` when the file is
 * not a well-formed ONNX model (truncated, not protobuf, no graph).
 */
export function readOnnxMetadata(path: string): OnnxMetadata {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new TandemError('E_MODEL_LOAD_FAILED', `cannot open ${path}`, { cause: error });
  }
  try {
    const src = new ByteSource(fd);
    let irVersion = 0;
    let graph: Field | undefined;
    for (const f of fields(src, 0, src.size)) {
      if (f.number === 1 && f.wireType === 0) irVersion = f.value;
      if (f.number === 7 && f.wireType === 2) graph = f;
    }
    if (graph === undefined || irVersion === 0) throw notOnnx('no graph or ir_version');
    const inputs: RawValueInfo[] = [];
    const outputs: RawValueInfo[] = [];
    const initializers = new Set<string>();
    for (const f of fields(src, graph.start, graph.end)) {
      if (f.wireType !== 2) continue;
      if (f.number === 11) inputs.push(valueInfo(src, f.start, f.end));
      else if (f.number === 12) outputs.push(valueInfo(src, f.start, f.end));
      else if (f.number === GRAPH_INITIALIZER) {
        // raw_data (9) is skipped by seeking, never read.
        for (const t of fields(src, f.start, f.end)) {
          if (t.number === TENSOR_NAME) initializers.add(text(src, t));
        }
      }
    }
    const externalData = new Set<string>();
    collectExternalData(src, graph.start, graph.end, externalData, 0);
    const unsupported: string[] = [];
    const toSpec = (info: RawValueInfo): TensorSpec | undefined => {
      const dtype = info.elemType === undefined ? undefined : ONNX_DTYPES[info.elemType];
      if (dtype === undefined) {
        unsupported.push(info.name);
        return undefined;
      }
      return info.dims === undefined
        ? { name: info.name, dtype }
        : { name: info.name, dtype, dims: info.dims };
    };
    return {
      irVersion,
      inputs: inputs
        .filter((info) => !initializers.has(info.name))
        .map(toSpec)
        .filter((spec) => spec !== undefined),
      outputs: outputs.map(toSpec).filter((spec) => spec !== undefined),
      unsupported,
      externalData: [...externalData],
    };
  } catch (error) {
    // Read errors are load failures too: a directory named model.onnx opens but reads EISDIR.
    if (error instanceof TandemError) throw error;
    throw new TandemError('E_MODEL_LOAD_FAILED', `cannot read ${path}`, { cause: error });
  } finally {
    closeSync(fd);
  }
}
