// Errors across the worker boundary. Comlink's own throw handler sends an Error's name, message
// and stack, and loses anything else; this one carries a TandemError's code, retryability and retry
// hint so the router can decide on a fallback. Both sides install it.

import { transferHandlers } from 'comlink';
import { TandemError, type ErrorCode } from '@tandem/shared';

interface ThrowHandler {
  canHandle(value: unknown): boolean;
  serialize(value: { value: unknown }): [unknown, Transferable[]];
  deserialize(value: unknown): unknown;
}

let installed = false;

/** Makes TandemErrors survive comlink calls with their code intact (idempotent). */
export function installTandemErrorHandler(): void {
  if (installed) return;
  installed = true;
  const builtin = transferHandlers.get('throw') as ThrowHandler | undefined;
  if (builtin === undefined) return;
  const handler: ThrowHandler = {
    canHandle: (value) => builtin.canHandle(value),
    serialize({ value }) {
      if (value instanceof TandemError) return [{ isError: true, tandem: value.toJSON() }, []];
      return builtin.serialize({ value });
    },
    deserialize(serialized) {
      const record = serialized as { tandem?: unknown };
      if (record.tandem !== undefined) throw TandemError.fromSerialized(record.tandem);
      return builtin.deserialize(serialized);
    },
  };
  transferHandlers.set('throw', handler as Parameters<typeof transferHandlers.set>[1]);
}

/**
 * Gives an onnxruntime-web failure a code the router can act on: no backend, a lost GPU device,
 * memory, an operator the backend lacks, inputs the model refuses, or a generic runtime failure.
 */
export function classifyOrtError(error: unknown, fallback: ErrorCode = 'E_RUNTIME'): TandemError {
  if (error instanceof TandemError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const rules: [RegExp, ErrorCode][] = [
    [
      /no available backend|backend not found|webgpu is not supported|failed to get gpu adapter/i,
      'E_NO_BACKEND',
    ],
    [/device (was )?lost|GPUDevice.*lost|context lost/i, 'E_DEVICE_LOST'],
    [
      /out of memory|OOM|memory access out of bounds|Array buffer allocation failed|failed to allocate/i,
      'E_OUT_OF_MEMORY',
    ],
    [
      /not (yet )?(supported|implemented)|could not find an implementation|unsupported (op|operator)/i,
      'E_UNSUPPORTED_OP',
    ],
    // Inputs the model refuses fail the call, not this side: the server would refuse them with the
    // same codes, so the router must not fall back to it (E_RUNTIME would).
    [/unexpected input data type/i, 'E_INPUT_DTYPE'],
    [/invalid (rank|dimensions) for input/i, 'E_INPUT_SHAPE'],
    [/input '[^']*' is missing in 'feeds'|invalid input '/i, 'E_INPUT_MISSING'],
  ];
  for (const [pattern, code] of rules) {
    if (pattern.test(message)) return new TandemError(code, message, { cause: error });
  }
  return new TandemError(fallback, message, { cause: error });
}
