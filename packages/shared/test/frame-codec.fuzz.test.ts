// Decoder fuzzing: at least 100,000 random and mutated frames per run. Whatever the bytes, decoding
// either returns a message or throws a TandemError raised by a check (never the codec's bug guard,
// which would carry a `cause`, and never any other exception), and a message it returns has
// tensors holding exactly as many elements as their dims say. Then frames that lie on purpose:
// a descriptor's offset, byteLength or dims, or a string's u32 length prefix, changed alone.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FRAME_PREFIX_BYTES,
  TandemError,
  decodeMessage,
  elementCount,
  encodeMessage,
  type Message,
  type TensorDtype,
  type TensorMap,
} from '../src/index.js';
import { messageArb, messageArbs, tensorOf } from './arbitraries.js';

const FRAMES_PER_RUN = 100_000;
const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: small, fast, seeded, so a failing run can be replayed with FUZZ_SEED. */
function prng(start: number): () => number {
  let a = start >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(seed);
const int = (n: number): number => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

const WEIRD_VALUES: readonly unknown[] = [
  -1,
  0,
  1,
  7,
  8,
  1.5,
  -0.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  1e308,
  -1e308,
  '',
  'x',
  'float32',
  'string',
  'int64',
  'infer',
  'result',
  '__proto__',
  null,
  true,
  false,
  [],
  {},
  [1, -1],
  [2 ** 32, 2 ** 32],
  [0],
  [1e9],
  { name: 'x' },
];

function splitFrame(frame: Uint8Array): { header: unknown; body: Uint8Array } {
  const headerLength = new DataView(frame.buffer, frame.byteOffset).getUint32(8, true);
  const headerEnd = FRAME_PREFIX_BYTES + headerLength;
  const header: unknown = JSON.parse(
    new TextDecoder().decode(frame.subarray(FRAME_PREFIX_BYTES, headerEnd)),
  );
  const bodyStart = frame.byteLength > headerEnd ? Math.ceil(headerEnd / 8) * 8 : headerEnd;
  return { header, body: frame.subarray(bodyStart) };
}

function joinFrame(header: unknown, body: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerEnd = FRAME_PREFIX_BYTES + json.byteLength;
  const bodyStart = body.byteLength > 0 ? Math.ceil(headerEnd / 8) * 8 : headerEnd;
  const frame = new Uint8Array(bodyStart + body.byteLength);
  frame.set([0x54, 0x4e, 0x44, 0x4d, 1], 0);
  new DataView(frame.buffer).setUint32(8, json.byteLength, true);
  frame.set(json, FRAME_PREFIX_BYTES);
  frame.set(body, bodyStart);
  return frame;
}

/**
 * What a decoded message's tensors must hold whatever the frame said: as many elements as their
 * dims ask for, never more, never fewer.
 */
function expectConsistentTensors(message: Message): void {
  const maps: TensorMap[] = [];
  if (message.type === 'infer') maps.push(message.inputs);
  if (message.type === 'result') maps.push(message.outputs);
  for (const map of maps) {
    for (const [name, tensor] of Object.entries(map)) {
      expect(tensor.data.length, name).toBe(elementCount(tensor.dims));
    }
  }
}

/** Decodes, and returns the code of a check's TandemError; anything else fails the test. */
function decodeOutcome(frame: Uint8Array): string {
  try {
    expectConsistentTensors(decodeMessage(frame));
    return 'ok';
  } catch (error) {
    if (!(error instanceof TandemError) || error.cause !== undefined) throw error;
    return error.code;
  }
}

/** Replaces, deletes or adds one field somewhere in a JSON value. */
function mutateJson(value: unknown): unknown {
  if (Array.isArray(value)) {
    if (value.length === 0 || random() < 0.15) return pick(WEIRD_VALUES);
    const copy: unknown[] = value.slice();
    const i = int(copy.length);
    copy[i] = random() < 0.5 ? mutateJson(copy[i]) : pick(WEIRD_VALUES);
    if (random() < 0.1) copy.push(pick(WEIRD_VALUES));
    return copy;
  }
  if (typeof value === 'object' && value !== null) {
    const copy = new Map<string, unknown>(Object.entries(value));
    const keys = [...copy.keys()];
    const roll = random();
    if (keys.length === 0 || roll < 0.05) {
      copy.set(pick(['extra', 'type', 'dims', 'offset']), pick(WEIRD_VALUES));
    } else if (roll < 0.15) {
      copy.delete(pick(keys));
    } else {
      const key = pick(keys);
      copy.set(key, random() < 0.6 ? mutateJson(copy.get(key)) : pick(WEIRD_VALUES));
    }
    return Object.fromEntries(copy);
  }
  return pick(WEIRD_VALUES);
}

function mutateBytes(frame: Uint8Array): Uint8Array {
  const copy = frame.slice();
  const flips = 1 + int(4);
  for (let i = 0; i < flips; i++) {
    // Aim at the prefix and header half the time: that is where the structure is.
    const limit = random() < 0.5 ? Math.min(copy.byteLength, 64) : copy.byteLength;
    copy[int(limit)] = int(256);
  }
  return copy;
}

function resize(frame: Uint8Array): Uint8Array {
  if (random() < 0.6) return frame.subarray(0, int(frame.byteLength));
  const extra = new Uint8Array(1 + int(16));
  for (let i = 0; i < extra.length; i++) extra[i] = int(256);
  const out = new Uint8Array(frame.byteLength + extra.byteLength);
  out.set(frame);
  out.set(extra, frame.byteLength);
  return out;
}

function randomBytes(maxLength: number, withPrefix: boolean): Uint8Array {
  const out = new Uint8Array(int(maxLength + 1));
  for (let i = 0; i < out.length; i++) out[i] = int(256);
  if (withPrefix && out.length >= 12) {
    out.set([0x54, 0x4e, 0x44, 0x4d, 1, 0, 0, 0], 0);
    new DataView(out.buffer).setUint32(8, int(out.length), true);
  }
  return out;
}

describe('decodeMessage under fuzzing', () => {
  it(`throws nothing but check-raised TandemErrors on ${FRAMES_PER_RUN} random and mutated frames (seed ${seed})`, () => {
    const corpus = fc
      .sample(messageArb, { numRuns: 300, seed })
      .map((message) => encodeMessage(message));
    const stats = { accepted: 0, rejected: 0 };
    const codes = new Set<string>();
    for (let i = 0; i < FRAMES_PER_RUN; i++) {
      const base = pick(corpus);
      const roll = random();
      let frame: Uint8Array;
      if (roll < 0.05) frame = randomBytes(64, false);
      else if (roll < 0.15) frame = randomBytes(256, true);
      else if (roll < 0.45) frame = mutateBytes(base);
      else if (roll < 0.6) frame = resize(base);
      else {
        const { header, body } = splitFrame(base);
        frame = joinFrame(mutateJson(header), random() < 0.2 ? resize(body) : body);
      }
      try {
        expectConsistentTensors(decodeMessage(frame));
        stats.accepted++;
      } catch (error) {
        if (!(error instanceof TandemError) || error.cause !== undefined) {
          throw new Error(`frame ${i} (seed ${seed}) escaped the checks: ${String(error)}`, {
            cause: error,
          });
        }
        stats.rejected++;
        codes.add(error.code);
      }
    }
    expect(stats.accepted + stats.rejected).toBe(FRAMES_PER_RUN);
    // The fuzzer must exercise both outcomes and several distinct checks to mean anything.
    expect(stats.accepted).toBeGreaterThan(0);
    expect(stats.rejected).toBeGreaterThan(FRAMES_PER_RUN / 2);
    expect([...codes]).toEqual(
      expect.arrayContaining([
        'E_PROTOCOL',
        'E_PROTOCOL_VERSION',
        'E_UNKNOWN_MESSAGE',
        'E_UNKNOWN_DTYPE',
      ]),
    );
  });

  it('holds for fast-check generated byte arrays too', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          expectConsistentTensors(decodeMessage(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(TandemError);
          expect((error as TandemError).cause).toBeUndefined();
        }
      }),
      { numRuns: 2000 },
    );
  });
});

/** An infer message with 1 to 4 tensors, string ones among them. */
const tensorInferArb: fc.Arbitrary<Message> = fc
  .record({
    numeric: fc.array(
      fc.constantFrom<TensorDtype>('float32', 'int64', 'bool', 'float16', 'uint8').chain(tensorOf),
      { maxLength: 2 },
    ),
    strings: fc.array(tensorOf('string'), { minLength: 1, maxLength: 2 }),
  })
  .map(({ numeric, strings }) => {
    const inputs: TensorMap = {};
    [...numeric, ...strings].forEach((tensor, i) => (inputs[`t${i}`] = tensor));
    return { type: 'infer', id: 'j', model: 'm', inputs };
  });

describe('decodeMessage on frames that lie about their tensors', () => {
  it('rejects a descriptor whose offset, byteLength or dims disagree with the body, or decodes consistent tensors', () => {
    const codes = new Set<string>();
    fc.assert(
      fc.property(
        fc.oneof(tensorInferArb, messageArbs.result),
        fc.nat(),
        fc.constantFrom('offset', 'byteLength', 'dims'),
        fc.oneof(
          fc.integer({ min: -9, max: 9 }).filter((d) => d !== 0),
          fc.constantFrom(2 ** 32, 2 ** 53, -(2 ** 31), 0.5),
        ),
        (message, pick, field, lie) => {
          const { header, body } = splitFrame(encodeMessage(message));
          const record = header as Record<string, unknown>;
          const key = message.type === 'infer' ? 'inputs' : 'outputs';
          const descriptors = record[key] as Record<string, unknown>[];
          if (descriptors.length === 0) return;
          const descriptor = descriptors[pick % descriptors.length]!;
          if (field === 'dims') {
            const dims = [...(descriptor.dims as number[])];
            if (dims.length === 0) dims.push(lie);
            else dims[pick % dims.length] = (dims[pick % dims.length] ?? 0) + lie;
            descriptor.dims = dims;
          } else {
            descriptor[field] = (descriptor[field] as number) + lie;
          }
          const code = decodeOutcome(joinFrame(header, body));
          codes.add(code);
          // Only dims can lie and still add up (a product unchanged, or a dim of 0 elsewhere).
          if (field !== 'dims') expect(code).toBe('E_PROTOCOL');
          else expect(['ok', 'E_PROTOCOL']).toContain(code);
        },
      ),
      { numRuns: 3000 },
    );
    expect(codes).toContain('E_PROTOCOL');
  });

  it('rejects a string whose u32 length prefix lies, or decodes consistent strings', () => {
    const outcomes = { lies: 0, rejected: 0 };
    fc.assert(
      fc.property(
        tensorInferArb,
        fc.nat(),
        fc.oneof(
          fc.integer({ min: 0, max: 64 }),
          fc.constantFrom(2 ** 31, 2 ** 32 - 1, 2 ** 32 - 4),
        ),
        (message, pick, lie) => {
          if (message.type !== 'infer') return;
          const frame = encodeMessage(message);
          const { header } = splitFrame(frame);
          const bodyStart = frame.byteLength - splitFrame(frame).body.byteLength;
          // The prefixes of every string, by walking the encoder's own layout.
          const prefixes: number[] = [];
          const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
          for (const d of (header as { inputs: Record<string, unknown>[] }).inputs) {
            if (d.dtype !== 'string') continue;
            let pos = bodyStart + (d.offset as number);
            const end = pos + (d.byteLength as number);
            while (pos < end) {
              prefixes.push(pos);
              pos += 4 + view.getUint32(pos, true);
            }
          }
          if (prefixes.length === 0) return;
          const at = prefixes[pick % prefixes.length]!;
          const damaged = frame.slice();
          const truth = view.getUint32(at, true);
          new DataView(damaged.buffer).setUint32(at, lie, true);
          const code = decodeOutcome(damaged);
          if (lie === truth) {
            expect(code).toBe('ok');
            return;
          }
          // A lie can still parse (other bytes read as lengths that happen to add up); then the
          // strings are different ones, but as many as the dims say, and none runs past.
          expect(['E_PROTOCOL', 'ok']).toContain(code);
          outcomes.lies++;
          if (code === 'E_PROTOCOL') outcomes.rejected++;
        },
      ),
      { numRuns: 3000 },
    );
    expect(outcomes.rejected).toBeGreaterThan(outcomes.lies * 0.9);
  });
});
