// The baselines Tandem's binary frames are measured against: what people commonly send over a
// WebSocket instead, a JSON text frame with tensor data as base64 or as a number array. Each is a
// fair, reasonably efficient implementation: the fastest Node primitives measured on this code
// path (TextEncoder, a non-fatal TextDecoder, Buffer's native base64), decoded base64 viewed in
// place rather than copied. Both include the UTF-8 step a text frame needs, as Tandem's bytes do.

import type { InferMessage, TensorMap } from '@tandem/shared';

/** Turns an infer message into the bytes of one WebSocket frame and back. */
export interface FrameCodec {
  /** Shown as the baseline's name in the report. */
  readonly name: string;
  encode(message: InferMessage): Uint8Array;
  decode(bytes: Uint8Array): InferMessage;
}

/** A tensor as the JSON baselines put it in a text frame; `data` is base64 or numbers. */
interface JsonTensor {
  readonly dtype: string;
  readonly dims: readonly number[];
  readonly data: unknown;
}

/** An infer message as the JSON baselines send it. */
interface JsonInfer {
  readonly type: 'infer';
  readonly id: string;
  readonly model: string;
  readonly inputs: Record<string, JsonTensor>;
}

const encoder = new TextEncoder();
// Non-fatal: measured slightly faster than a validating decoder; the baseline gets the benefit.
const decoder = new TextDecoder();

/** JSON text with each float32 tensor's bytes as a base64 string. */
export const jsonBase64Codec: FrameCodec = {
  name: 'JSON + base64',
  encode(message) {
    return encodeJson(message, (data) =>
      Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
    );
  },
  decode(bytes) {
    return decodeJson(bytes, (text) => {
      if (typeof text !== 'string') throw new Error('expected base64 tensor data');
      const raw = Buffer.from(text, 'base64');
      // Large base64 strings decode into their own buffer at offset 0: view it, copy only if not.
      if (raw.byteOffset % Float32Array.BYTES_PER_ELEMENT === 0) {
        return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      }
      return new Float32Array(Uint8Array.prototype.slice.call(raw).buffer);
    });
  },
};

/** JSON text with each float32 tensor as an array of numbers. */
export const jsonNumberArrayCodec: FrameCodec = {
  name: 'JSON number array',
  encode(message) {
    return encodeJson(message, (data) => Array.from(data));
  },
  decode(bytes) {
    return decodeJson(bytes, (numbers) => {
      if (!Array.isArray(numbers)) throw new Error('expected a number array');
      return Float32Array.from(numbers as number[]);
    });
  },
};

function encodeJson(
  message: InferMessage,
  encodeData: (data: Float32Array) => unknown,
): Uint8Array {
  const inputs: Record<string, JsonTensor> = {};
  for (const [name, tensor] of Object.entries(message.inputs)) {
    if (tensor.dtype !== 'float32') throw new Error(`the JSON baselines carry float32 only`);
    inputs[name] = { dtype: tensor.dtype, dims: tensor.dims, data: encodeData(tensor.data) };
  }
  const wire: JsonInfer = { type: 'infer', id: message.id, model: message.model, inputs };
  return encoder.encode(JSON.stringify(wire));
}

function decodeJson(bytes: Uint8Array, decodeData: (data: unknown) => Float32Array): InferMessage {
  // Trusted apart from the data's type: the baseline skips the validation Tandem's decoder does,
  // to its own advantage.
  const parsed = JSON.parse(decoder.decode(bytes)) as JsonInfer;
  const inputs: TensorMap = {};
  for (const [name, tensor] of Object.entries(parsed.inputs)) {
    inputs[name] = { dtype: 'float32', dims: tensor.dims, data: decodeData(tensor.data) };
  }
  return { type: 'infer', id: parsed.id, model: parsed.model, inputs };
}
