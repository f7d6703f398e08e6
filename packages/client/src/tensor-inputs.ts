// Inputs checked where a call enters the library: a tensor whose data does not match its dims or
// dtype is refused with its name before any side sees it. Without this a mismatch surfaced as
// onnxruntime-web's own error from inside the worker (or the server's), and a tensor whose buffer
// an earlier call had transferred away was worse: Node's MessagePort silently drops a message
// whose transfer list holds a detached buffer, so that run waited forever.

import { TandemError, createTensor, type TensorMap } from '@tandem/shared';

/** Throws `E_INVALID_ARGUMENT` naming the first input whose data does not fit its dtype and dims. */
export function checkInputs(inputs: TensorMap): void {
  // Plain JavaScript callers can pass anything.
  const value: unknown = inputs;
  if (typeof value !== 'object' || value === null) {
    throw new TandemError('E_INVALID_ARGUMENT', 'inputs must be an object of named tensors');
  }
  for (const [name, tensor] of Object.entries(inputs)) {
    const { data } = tensor;
    if (
      ArrayBuffer.isView(data) &&
      data.buffer.byteLength === 0 &&
      tensor.dims.every((d) => d > 0)
    ) {
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `input "${name}": its buffer is detached (transferred to a worker by an earlier call with transfer: true?)`,
      );
    }
    try {
      createTensor(tensor.dtype, data, tensor.dims);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new TandemError('E_INVALID_ARGUMENT', `input "${name}": ${reason}`, { cause: error });
    }
  }
}
