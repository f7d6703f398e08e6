// Tensors as both sides hold them: a dtype tag, dims, and a typed array (or string[]) whose type
// follows from the dtype. The shapes match onnxruntime's Tensor so no conversion copies data.

import { TandemError } from './tandem-error.js';

/** Every ONNX tensor element type onnxruntime-web and onnxruntime-node both support. */
export const TENSOR_DTYPES = [
  'float32',
  'float16',
  'float64',
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'bool',
  'string',
] as const;

/** One of {@link TENSOR_DTYPES}. */
export type TensorDtype = (typeof TENSOR_DTYPES)[number];

/** A dtype whose elements have a fixed byte size (every dtype but `string`). */
export type NumericTensorDtype = Exclude<TensorDtype, 'string'>;

/**
 * The JavaScript container for each dtype. float16 is carried as raw IEEE-754 half bits in a
 * Uint16Array (as onnxruntime does where Float16Array is missing); bool as 0/1 bytes.
 */
export interface TensorDataByDtype {
  /** 32-bit floats, 4 bytes each. */
  float32: Float32Array;
  /** Raw IEEE-754 half-precision bits, 2 bytes each; convert with `fromFloat16Bits`. */
  float16: Uint16Array;
  /** 64-bit floats, 8 bytes each. */
  float64: Float64Array;
  /** Signed 8-bit integers, 1 byte each. */
  int8: Int8Array;
  /** Signed 16-bit integers, 2 bytes each. */
  int16: Int16Array;
  /** Signed 32-bit integers, 4 bytes each. */
  int32: Int32Array;
  /** Signed 64-bit integers as bigints, 8 bytes each. */
  int64: BigInt64Array;
  /** Unsigned 8-bit integers, 1 byte each. */
  uint8: Uint8Array;
  /** Unsigned 16-bit integers, 2 bytes each. */
  uint16: Uint16Array;
  /** Unsigned 32-bit integers, 4 bytes each. */
  uint32: Uint32Array;
  /** Unsigned 64-bit integers as bigints, 8 bytes each. */
  uint64: BigUint64Array;
  /** 0 (false) or 1 (true), 1 byte each. */
  bool: Uint8Array;
  /** One string per element; UTF-8 on the wire, each after its u32 byte length. */
  string: string[];
}

/** A tensor: `data` has `product(dims)` elements in row-major order. */
export type Tensor<D extends TensorDtype = TensorDtype> = {
  [K in D]: {
    /** The element type; it decides the container `data` is. */
    readonly dtype: K;
    /** The shape, outermost first; `[]` is a scalar, and a 0 makes the tensor empty. */
    readonly dims: readonly number[];
    /** The `product(dims)` elements in row-major order, in the dtype's container. */
    readonly data: TensorDataByDtype[K];
  };
}[D];

/** Named tensors: a model's inputs or outputs. */
export type TensorMap = Record<string, Tensor>;

type TypedArrayConstructor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | BigUint64ArrayConstructor;

const TYPED_ARRAY_OF: { readonly [K in NumericTensorDtype]: TypedArrayConstructor } = {
  float32: Float32Array,
  float16: Uint16Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
};

/** True when `value` names one of {@link TENSOR_DTYPES}. */
export function isTensorDtype(value: unknown): value is TensorDtype {
  return typeof value === 'string' && (TENSOR_DTYPES as readonly string[]).includes(value);
}

/** Bytes per element of a numeric dtype. */
export function bytesPerElement(dtype: NumericTensorDtype): number {
  return TYPED_ARRAY_OF[dtype].BYTES_PER_ELEMENT;
}

/** The number of elements a tensor of these dims holds (1 for a scalar, `[]`). */
export function elementCount(dims: readonly number[]): number {
  let count = 1;
  for (const dim of dims) count *= dim;
  return count;
}

/**
 * A typed-array view of `byteLength` bytes of `buffer` at `byteOffset`, with the dtype's container.
 * The offset must be a multiple of the element size; the caller checks.
 */
export function viewTensorData(
  dtype: NumericTensorDtype,
  buffer: ArrayBufferLike,
  byteOffset: number,
  byteLength: number,
): TensorDataByDtype[NumericTensorDtype] {
  const Ctor = TYPED_ARRAY_OF[dtype];
  // SharedArrayBuffer-backed frames are viewed the same way; the cast only widens the overloads.
  return new Ctor(buffer as ArrayBuffer, byteOffset, byteLength / Ctor.BYTES_PER_ELEMENT);
}

/** Builds a tensor, checking that `data` matches `dtype` and holds `product(dims)` elements. */
export function createTensor<D extends TensorDtype>(
  dtype: D,
  data: TensorDataByDtype[D],
  dims: readonly number[],
): Tensor<D> {
  const expected = elementCount(dims);
  if (data.length !== expected) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `tensor data has ${data.length} elements but dims [${dims.join(', ')}] need ${expected}`,
    );
  }
  const name: TensorDtype = dtype;
  if (name === 'string') {
    if (!Array.isArray(data) || !data.every((item) => typeof item === 'string')) {
      throw new TandemError('E_INVALID_ARGUMENT', 'string tensor data must be a string[]');
    }
  } else {
    const Ctor = TYPED_ARRAY_OF[name];
    if (!(data instanceof Ctor)) {
      throw new TandemError('E_INVALID_ARGUMENT', `${name} tensor data must be a ${Ctor.name}`);
    }
    if (name === 'bool' && (data as Uint8Array).some((value) => value > 1)) {
      throw new TandemError('E_INVALID_ARGUMENT', 'bool tensor data must hold only 0 and 1');
    }
  }
  return { dtype, dims, data };
}
