// Writes the JSON headers of the two messages sent once per job, `infer` and `result`, field by
// field instead of through JSON.stringify. Why: at thousands of jobs a second these headers are a
// large share of the protocol's own cost. On this project's 2-core VM, JSON.stringify of a result
// header took about 2.5 µs and this writer about 0.5 µs (docs/benchmarks.md).
//
// The text is JSON that parses to the same value JSON.stringify would give (key order aside), and
// it is always ASCII: any other character is written as a \u escape, so the header's UTF-8 length
// is its string length and it can be copied into the frame without encoding it first.

import type { InferMessage, ResultMessage } from './messages.js';
import type { Tensor } from './tensor.js';

/** What the header says of one tensor: where its bytes sit in the frame body. */
export interface TensorDescriptor {
  /** The tensor's key in the message's tensor map. */
  readonly name: string;
  /** Its element type. */
  readonly dtype: Tensor['dtype'];
  /** Its shape; numeric data is `product(dims)` × element size bytes. */
  readonly dims: readonly number[];
  /** Where its bytes start, counted from the body start: a multiple of 8, packed in order. */
  readonly offset: number;
  /** Its length in the body, in bytes (strings: each u32 length plus UTF-8 bytes). */
  readonly byteLength: number;
}

/** Printable ASCII other than `"` and `\`: such a string is its own JSON text between quotes. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const NON_ASCII = /[\u0080-\uffff]/g;

/**
 * A value as JSON text, ASCII only. Fields are typed, but a caller in plain JavaScript may pass
 * anything: whatever is not a plain string, finite number or boolean goes through JSON.stringify,
 * so the peer's parser rejects it exactly as it would have before.
 */
function json(value: unknown): string {
  if (typeof value === 'string' && PLAIN.test(value)) return `"${value}"`;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  // JSON.stringify escapes quotes, controls and lone surrogates; the rest leaves as \u escapes.
  return ((JSON.stringify(value) as string | undefined) ?? 'null').replace(NON_ASCII, escapeUnit);
}

function escapeUnit(unit: string): string {
  return `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

function descriptorsJson(descriptors: readonly TensorDescriptor[]): string {
  let text = '';
  for (const d of descriptors) {
    text +=
      `${text === '' ? '' : ','}{"name":${json(d.name)},"dtype":"${d.dtype}",` +
      `"dims":[${d.dims.join(',')}],"offset":${d.offset},"byteLength":${d.byteLength}}`;
  }
  return `[${text}]`;
}

/** The header of an `infer` message whose inputs are `descriptors`. */
export function inferHeader(
  message: InferMessage,
  descriptors: readonly TensorDescriptor[],
): string {
  let text = `{"type":"infer","id":${json(message.id)},"model":${json(message.model)}`;
  if (message.version !== undefined) text += `,"version":${json(message.version)}`;
  text += `,"inputs":${descriptorsJson(descriptors)}`;
  if (message.outputs !== undefined) {
    const { outputs } = message;
    text += `,"outputs":${Array.isArray(outputs) ? `[${outputs.map(json).join(',')}]` : json(outputs)}`;
  }
  if (message.priority !== undefined) text += `,"priority":${json(message.priority)}`;
  if (message.deadlineMs !== undefined) text += `,"deadlineMs":${json(message.deadlineMs)}`;
  if (message.progress !== undefined) text += `,"progress":${json(message.progress)}`;
  return `${text}}`;
}

/** The header of a `result` message whose outputs are `descriptors`. */
export function resultHeader(
  message: ResultMessage,
  descriptors: readonly TensorDescriptor[],
): string {
  const t = message.timings;
  return (
    `{"type":"result","id":${json(message.id)},"model":${json(message.model)},` +
    `"version":${json(message.version)},"outputs":${descriptorsJson(descriptors)},` +
    `"backend":${json(message.backend)},"coldStart":${json(message.coldStart)},` +
    `"timings":{"queueMs":${json(t.queueMs)},"loadMs":${json(t.loadMs)},` +
    `"warmupMs":${json(t.warmupMs)},"runMs":${json(t.runMs)},` +
    `"totalMs":${json(t.totalMs)}}}`
  );
}
