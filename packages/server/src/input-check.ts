// Checks a job's inputs and requested outputs against the model's declared signature before
// onnxruntime sees them, so a wrong dtype or shape is a coded error naming the input, not a native
// exception from deep inside the runtime.

import { TandemError, elementCount, type TensorMap, type TensorSpec } from '@tandem/shared';

/** A model's declared inputs and outputs. */
export interface ModelSignature {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

/**
 * Throws `E_INPUT_MISSING`, `E_INPUT_DTYPE`, `E_INPUT_SHAPE` or `E_OUTPUT_NOT_FOUND` when the inputs
 * or requested outputs do not fit the signature. A symbolic dim (a string) takes any size, but the
 * same symbol must have the same size in every input (for example `batch`).
 */
export function checkInputs(
  signature: ModelSignature,
  inputs: TensorMap,
  outputs: readonly string[] | undefined,
): void {
  // Linear scans, not a Map per call: this runs once per job, and models take few inputs.
  for (const name of Object.keys(inputs)) {
    if (!signature.inputs.some((spec) => spec.name === name)) {
      throw new TandemError(
        'E_INPUT_MISSING',
        `unknown input "${name}"; the model takes ${listNames(signature.inputs)}`,
      );
    }
  }
  let symbols: Map<string, { size: number; input: string }> | undefined;
  for (const spec of signature.inputs) {
    const tensor = inputs[spec.name];
    if (tensor === undefined) {
      throw new TandemError(
        'E_INPUT_MISSING',
        `missing input "${spec.name}"; the model takes ${listNames(signature.inputs)}`,
      );
    }
    if (tensor.dtype !== spec.dtype) {
      throw new TandemError(
        'E_INPUT_DTYPE',
        `input "${spec.name}" is ${tensor.dtype}; the model expects ${spec.dtype}`,
      );
    }
    const count = elementCount(tensor.dims);
    if (tensor.data.length !== count) {
      throw new TandemError(
        'E_INPUT_SHAPE',
        `input "${spec.name}" has ${tensor.data.length} elements; dims [${tensor.dims.join(', ')}] need ${count}`,
      );
    }
    const wanted = spec.dims;
    if (wanted === undefined) continue;
    if (tensor.dims.length !== wanted.length) {
      throw new TandemError(
        'E_INPUT_SHAPE',
        `input "${spec.name}" has rank ${tensor.dims.length} [${tensor.dims.join(', ')}]; the model expects rank ${wanted.length} [${wanted.join(', ')}]`,
      );
    }
    for (let axis = 0; axis < wanted.length; axis++) {
      const want = wanted[axis] as number | string;
      const got = tensor.dims[axis] as number;
      if (typeof want === 'number') {
        if (got !== want) {
          throw new TandemError(
            'E_INPUT_SHAPE',
            `input "${spec.name}" has size ${got} on axis ${axis}; the model expects ${want} (dims [${wanted.join(', ')}])`,
          );
        }
        continue;
      }
      if (want === '?' || want === '') continue;
      symbols ??= new Map();
      const seen = symbols.get(want);
      if (seen === undefined) symbols.set(want, { size: got, input: spec.name });
      else if (seen.size !== got) {
        throw new TandemError(
          'E_INPUT_SHAPE',
          `input "${spec.name}" has ${want}=${got} on axis ${axis}, but input "${seen.input}" has ${want}=${seen.size}`,
        );
      }
    }
  }
  if (outputs !== undefined) {
    const known = new Set(signature.outputs.map((spec) => spec.name));
    for (const name of outputs) {
      if (!known.has(name)) {
        throw new TandemError(
          'E_OUTPUT_NOT_FOUND',
          `unknown output "${name}"; the model has ${listNames(signature.outputs)}`,
        );
      }
    }
  }
}

function listNames(specs: readonly TensorSpec[]): string {
  return specs.map((spec) => `"${spec.name}"`).join(', ') || 'none';
}
