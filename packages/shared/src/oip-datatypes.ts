// The Open Inference Protocol v2 (KServe/Triton) names for tensor data types, and the header its
// binary-data extension uses: shared by the server's OIP routes and the client's OIP transport.

import type { TensorDtype } from './tensor.js';

/** OIP datatype names → Tandem dtypes. */
export const OIP_TO_DTYPE = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
} as const satisfies Record<string, TensorDtype>;

/** An OIP datatype name. */
export type OipDatatype = keyof typeof OIP_TO_DTYPE;

/** Every OIP datatype name. */
export const OIP_DATATYPES = Object.keys(OIP_TO_DTYPE) as OipDatatype[];

/** Tandem dtypes → OIP datatype names. */
export const DTYPE_TO_OIP = Object.fromEntries(
  Object.entries(OIP_TO_DTYPE).map(([oip, dtype]) => [dtype, oip]),
) as Record<TensorDtype, OipDatatype>;

/** Set (lower-case, as HTTP header names compare) when a body carries binary data after its JSON. */
export const OIP_HEADER_LENGTH_HEADER = 'inference-header-content-length';

/** True when `value` is an OIP datatype name. */
export function isOipDatatype(value: unknown): value is OipDatatype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(OIP_TO_DTYPE, value);
}
