import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FRAME_PREFIX_BYTES,
  MAX_HEADER_BYTES,
  POOLED_FRAME_MAX_BYTES,
  PROTOCOL_VERSION,
  TENSOR_DTYPES,
  decodeClientMessage,
  decodeMessage,
  decodeServerMessage,
  encodeMessage,
  encodeMessageParts,
  ZERO_COPY_MIN_BYTES,
  type InferMessage,
  type Message,
  type Tensor,
} from '../src/index.js';
import { messageArb, messageArbs, tensorOf } from './arbitraries.js';
import { errorCode as codeOf } from '@tandem/test-support';

/** Builds a frame from a raw header object and body, bypassing the encoder's checks. */
function rawFrame(
  header: unknown,
  body: Uint8Array = new Uint8Array(0),
  version = PROTOCOL_VERSION,
) {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerEnd = FRAME_PREFIX_BYTES + json.byteLength;
  const bodyStart = body.byteLength > 0 ? Math.ceil(headerEnd / 8) * 8 : headerEnd;
  const frame = new Uint8Array(bodyStart + body.byteLength);
  frame.set([0x54, 0x4e, 0x44, 0x4d, version], 0);
  new DataView(frame.buffer).setUint32(8, json.byteLength, true);
  frame.set(json, FRAME_PREFIX_BYTES);
  frame.set(body, bodyStart);
  return frame;
}

function inferHeader(tensors: unknown[]) {
  return { type: 'infer', id: 'j', model: 'm', inputs: tensors };
}

const float32x4 = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);

describe('encodeMessage / decodeMessage round trip', () => {
  for (const [type, arb] of Object.entries(messageArbs)) {
    it(`round-trips every ${type} message`, () => {
      fc.assert(
        fc.property(arb, (message) => {
          expect(decodeMessage(encodeMessage(message))).toEqual(message);
        }),
        { numRuns: 300 },
      );
    });
  }

  for (const dtype of TENSOR_DTYPES) {
    it(`round-trips ${dtype} tensors of every shape, including scalars and 0-sized dims`, () => {
      fc.assert(
        fc.property(tensorOf(dtype), (tensor) => {
          const message: InferMessage = {
            type: 'infer',
            id: 'j',
            model: 'm',
            inputs: { t: tensor },
          };
          const decoded = decodeMessage(encodeMessage(message)) as InferMessage;
          expect(decoded.inputs.t).toEqual(tensor);
        }),
        { numRuns: 200 },
      );
    });
  }

  it('keeps scalar and zero-sized shapes distinct', () => {
    const scalar: Tensor = { dtype: 'float32', dims: [], data: new Float32Array([7]) };
    const empty: Tensor = { dtype: 'float32', dims: [0, 3], data: new Float32Array(0) };
    const decoded = decodeMessage(
      encodeMessage({ type: 'infer', id: 'j', model: 'm', inputs: { scalar, empty } }),
    ) as InferMessage;
    expect(decoded.inputs.scalar).toEqual(scalar);
    expect(decoded.inputs.empty?.dims).toEqual([0, 3]);
  });

  it('places every tensor at an 8-byte-aligned offset', () => {
    fc.assert(
      fc.property(messageArbs.infer, (message) => {
        const frame = encodeMessage(message);
        const headerLength = new DataView(frame.buffer).getUint32(8, true);
        const header = JSON.parse(
          new TextDecoder().decode(frame.subarray(12, 12 + headerLength)),
        ) as { inputs: { offset: number }[] };
        for (const { offset } of header.inputs) expect(offset % 8).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});

describe('zero-copy decoding', () => {
  const tensor: Tensor = {
    dtype: 'float64',
    dims: [2, 3],
    data: new Float64Array([1, 2, 3, 4, 5, 6]),
  };
  const message: Message = {
    type: 'result',
    id: 'j',
    model: 'm',
    version: '1',
    outputs: { y: tensor },
    backend: 'cpu',
    coldStart: false,
    timings: { queueMs: 0, loadMs: 0, warmupMs: 0, runMs: 1, totalMs: 1 },
  };

  it('views numeric tensors over the received buffer', () => {
    const frame = encodeMessage(message);
    const decoded = decodeMessage(frame) as Extract<Message, { type: 'result' }>;
    const data = decoded.outputs.y?.data as Float64Array;
    expect(data.buffer).toBe(frame.buffer);
    frame.fill(0xff, frame.byteLength - 8); // a view sees changes to the frame
    expect(data[5]).not.toBe(6);
  });

  it('copies (correctly) when the frame sits at an unaligned offset in its buffer', () => {
    const frame = encodeMessage(message);
    const shifted = new Uint8Array(frame.byteLength + 3);
    shifted.set(frame, 3);
    const decoded = decodeMessage(shifted.subarray(3)) as Extract<Message, { type: 'result' }>;
    expect(decoded.outputs.y).toEqual(tensor);
    expect((decoded.outputs.y?.data as Float64Array).buffer).not.toBe(shifted.buffer);
  });

  it('accepts an ArrayBuffer as well as a Uint8Array', () => {
    const frame = encodeMessage(message);
    expect(decodeMessage(frame.slice().buffer)).toEqual(message);
  });
});

describe('decodeMessage rejects malformed frames with specific codes', () => {
  const valid = rawFrame(
    inferHeader([{ name: 'x', dtype: 'float32', dims: [4], offset: 0, byteLength: 16 }]),
    float32x4,
  );

  it('accepts bool elements of 0 and 1', () => {
    const frame = rawFrame(
      inferHeader([{ name: 'm', dtype: 'bool', dims: [4], offset: 0, byteLength: 4 }]),
      Uint8Array.from([0, 1, 1, 0]),
    );
    expect(Array.from((decodeMessage(frame) as InferMessage).inputs.m?.data as Uint8Array)).toEqual(
      [0, 1, 1, 0],
    );
  });

  it('accepts the hand-built reference frame', () => {
    const decoded = decodeMessage(valid) as InferMessage;
    expect(Array.from(decoded.inputs.x?.data as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  const cases: [string, () => unknown, string][] = [
    ['not bytes', () => decodeMessage('hello'), 'E_PROTOCOL'],
    [
      'a bool element other than 0 or 1',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'm', dtype: 'bool', dims: [4], offset: 0, byteLength: 4 }]),
            Uint8Array.from([0, 1, 2, 1]),
          ),
        ),
      'E_PROTOCOL',
    ],
    ['empty', () => decodeMessage(new Uint8Array(0)), 'E_PROTOCOL'],
    ['shorter than the prefix', () => decodeMessage(valid.subarray(0, 11)), 'E_PROTOCOL'],
    ['truncated header', () => decodeMessage(valid.subarray(0, 40)), 'E_PROTOCOL'],
    ['truncated body', () => decodeMessage(valid.subarray(0, valid.byteLength - 1)), 'E_PROTOCOL'],
    [
      'trailing bytes',
      () => decodeMessage(Uint8Array.from([...valid, 0, 0, 0, 0, 0, 0, 0, 0])),
      'E_PROTOCOL',
    ],
    [
      'bad magic',
      () => {
        const f = valid.slice();
        f[0] = 0x58;
        return decodeMessage(f);
      },
      'E_PROTOCOL',
    ],
    [
      'wrong protocol version',
      () => decodeMessage(rawFrame({ type: 'ping', nonce: 1 }, undefined, 2)),
      'E_PROTOCOL_VERSION',
    ],
    [
      'nonzero reserved bytes',
      () => {
        const f = valid.slice();
        f[6] = 1;
        return decodeMessage(f);
      },
      'E_PROTOCOL',
    ],
    [
      'absurd header length',
      () => {
        const f = valid.slice();
        new DataView(f.buffer).setUint32(8, 0xffffffff, true);
        return decodeMessage(f);
      },
      'E_PROTOCOL',
    ],
    [
      'header length just past the limit',
      () => {
        const f = valid.slice();
        new DataView(f.buffer).setUint32(8, MAX_HEADER_BYTES + 1, true);
        return decodeMessage(f);
      },
      'E_PROTOCOL',
    ],
    [
      'header not UTF-8',
      () => {
        const f = rawFrame({ type: 'ping', nonce: 1 });
        f[14] = 0xff;
        return decodeMessage(f);
      },
      'E_PROTOCOL',
    ],
    [
      'header not JSON',
      () => {
        const f = rawFrame({ type: 'ping', nonce: 1 });
        f[12] = 0x7b + 1;
        return decodeMessage(f);
      },
      'E_PROTOCOL',
    ],
    ['header not an object', () => decodeMessage(rawFrame([1, 2])), 'E_PROTOCOL'],
    [
      'unknown message type',
      () => decodeMessage(rawFrame({ type: 'reboot' })),
      'E_UNKNOWN_MESSAGE',
    ],
    ['type not a string', () => decodeMessage(rawFrame({ type: 7 })), 'E_PROTOCOL'],
    ['missing field', () => decodeMessage(rawFrame({ type: 'cancel' })), 'E_PROTOCOL'],
    [
      'unknown dtype',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'x', dtype: 'complex64', dims: [4], offset: 0, byteLength: 16 }]),
            float32x4,
          ),
        ),
      'E_UNKNOWN_DTYPE',
    ],
    [
      'negative dims',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'x', dtype: 'float32', dims: [-4], offset: 0, byteLength: 16 }]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'non-integer dims',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([
              { name: 'x', dtype: 'float32', dims: [2.5, 1.6], offset: 0, byteLength: 16 },
            ]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'dims product not matching byte length',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'x', dtype: 'float32', dims: [5], offset: 0, byteLength: 16 }]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'byte length not a multiple of the element size',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'x', dtype: 'float32', dims: [3], offset: 0, byteLength: 14 }]),
            float32x4.subarray(0, 14),
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'offset out of range',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'x', dtype: 'float32', dims: [4], offset: 64, byteLength: 16 }]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'byte length past the body',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([{ name: 'x', dtype: 'float32', dims: [8], offset: 0, byteLength: 32 }]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'unaligned offset',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([
              { name: 'a', dtype: 'uint8', dims: [3], offset: 0, byteLength: 3 },
              { name: 'b', dtype: 'uint8', dims: [3], offset: 3, byteLength: 3 },
            ]),
            new Uint8Array(6),
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'overlapping tensors',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([
              { name: 'a', dtype: 'float32', dims: [4], offset: 0, byteLength: 16 },
              { name: 'b', dtype: 'float32', dims: [2], offset: 8, byteLength: 8 },
            ]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'duplicate tensor names',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([
              { name: 'a', dtype: 'float32', dims: [2], offset: 0, byteLength: 8 },
              { name: 'a', dtype: 'float32', dims: [2], offset: 8, byteLength: 8 },
            ]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'huge dims on a tiny body (no allocation)',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([
              {
                name: 'x',
                dtype: 'float32',
                dims: [4294967295, 4294967295],
                offset: 0,
                byteLength: 16,
              },
            ]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'a billion strings in 16 bytes (no allocation)',
      () =>
        decodeMessage(
          rawFrame(
            inferHeader([
              { name: 's', dtype: 'string', dims: [1_000_000_000], offset: 0, byteLength: 16 },
            ]),
            float32x4,
          ),
        ),
      'E_PROTOCOL',
    ],
    [
      'string length past the tensor',
      () => {
        const body = new Uint8Array(8);
        new DataView(body.buffer).setUint32(0, 100, true);
        return decodeMessage(
          rawFrame(
            inferHeader([{ name: 's', dtype: 'string', dims: [1], offset: 0, byteLength: 8 }]),
            body,
          ),
        );
      },
      'E_PROTOCOL',
    ],
    [
      'string not UTF-8',
      () => {
        const body = Uint8Array.from([2, 0, 0, 0, 0xc3, 0x28]);
        return decodeMessage(
          rawFrame(
            inferHeader([{ name: 's', dtype: 'string', dims: [1], offset: 0, byteLength: 6 }]),
            body,
          ),
        );
      },
      'E_PROTOCOL',
    ],
    [
      'tensors on a message that has none',
      () => decodeMessage(Uint8Array.from([...rawFrame({ type: 'ping', nonce: 1 }), 1, 2, 3])),
      'E_PROTOCOL',
    ],
    [
      'priority out of range',
      () => decodeMessage(rawFrame({ ...inferHeader([]), priority: 11 })),
      'E_PROTOCOL',
    ],
    [
      'progress fraction 1 before done',
      () =>
        decodeMessage(
          rawFrame({
            type: 'progress',
            event: {
              jobId: 'j',
              model: 'm',
              where: 'remote',
              stage: 'running',
              fraction: 1,
              elapsedMs: 3,
            },
          }),
        ),
      'E_PROTOCOL',
    ],
    [
      'error with an unknown code',
      () =>
        decodeMessage(
          rawFrame({ type: 'error', id: null, code: 'E_NOPE', message: '', retryable: false }),
        ),
      'E_PROTOCOL',
    ],
  ];

  for (const [name, run, code] of cases) {
    it(`${name} → ${code}`, () => {
      expect(codeOf(run)).toBe(code);
    });
  }

  it('rejects a message of the wrong direction', () => {
    const ping = encodeMessage({ type: 'ping', nonce: 1 });
    const pong = encodeMessage({ type: 'pong', nonce: 1 });
    expect(decodeClientMessage(ping).type).toBe('ping');
    expect(decodeServerMessage(pong).type).toBe('pong');
    expect(codeOf(() => decodeServerMessage(ping))).toBe('E_UNKNOWN_MESSAGE');
    expect(codeOf(() => decodeClientMessage(pong))).toBe('E_UNKNOWN_MESSAGE');
  });

  it('does not let a tensor named __proto__ touch the prototype', () => {
    const frame = rawFrame(
      inferHeader([{ name: '__proto__', dtype: 'float32', dims: [4], offset: 0, byteLength: 16 }]),
      float32x4,
    );
    const decoded = decodeMessage(frame) as InferMessage;
    expect(Object.getPrototypeOf(decoded.inputs)).toBe(Object.prototype);
    expect(Object.keys(decoded.inputs)).toEqual(['__proto__']);
  });
});

describe('encodeMessage checks what it is given', () => {
  it('rejects data that does not match the dims', () => {
    const inputs = { x: { dtype: 'float32', dims: [3], data: new Float32Array(4) } } as const;
    expect(codeOf(() => encodeMessage({ type: 'infer', id: 'j', model: 'm', inputs }))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });

  it('rejects negative dims', () => {
    const inputs = { x: { dtype: 'float32', dims: [-1], data: new Float32Array(0) } } as const;
    expect(codeOf(() => encodeMessage({ type: 'infer', id: 'j', model: 'm', inputs }))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});

describe('encodeMessage fits long texts into what a receiver accepts', () => {
  const long = `onnxruntime said: ${'x'.repeat(10_000)}`;
  const status = { name: 'm', version: '1', state: 'failed', instances: 0, reason: long } as const;

  it('cuts an error message over 4096 characters, keeping its code and the rest', () => {
    const decoded = decodeMessage(
      encodeMessage({
        type: 'error',
        id: 'j',
        code: 'E_MODEL_LOAD_FAILED',
        message: long,
        retryable: false,
      }),
    );
    if (decoded.type !== 'error') throw new Error(`decoded a ${decoded.type} message`);
    expect(decoded).toMatchObject({ id: 'j', code: 'E_MODEL_LOAD_FAILED', retryable: false });
    expect(decoded.message).toHaveLength(4096);
    expect(decoded.message.startsWith('onnxruntime said: xxx')).toBe(true);
    expect(decoded.message.endsWith('…')).toBe(true);
  });

  it('cuts a failed model reason in a model message and in a welcome', () => {
    const model = decodeMessage(encodeMessage({ type: 'model', model: status }));
    if (model.type !== 'model') throw new Error(`decoded a ${model.type} message`);
    expect(model.model.reason).toHaveLength(4096);
    const welcome = decodeMessage(
      encodeMessage({
        type: 'welcome',
        protocolVersion: 1,
        server: { name: 's', version: '1' },
        models: [{ name: 'ok', version: '1', state: 'ready', instances: 1 }, status],
        limits: {
          maxPayloadBytes: 1024,
          maxQueue: 1,
          heartbeatIntervalMs: 1000,
          resultTtlMs: 1000,
        },
      }),
    );
    if (welcome.type !== 'welcome') throw new Error(`decoded a ${welcome.type} message`);
    expect(welcome.models.map((m) => m.reason?.length)).toEqual([undefined, 4096]);
  });
});

describe('round trip of any message', () => {
  it('holds for a mixed stream', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        expect(decodeMessage(encodeMessage(message))).toEqual(message);
      }),
      { numRuns: 500 },
    );
  });
});

describe('pooled encoding', () => {
  it('gives the same bytes as unpooled encoding, and frames that stay intact', () => {
    fc.assert(
      fc.property(fc.array(messageArb, { minLength: 1, maxLength: 20 }), (messages) => {
        const pooled = messages.map((message) => encodeMessage(message, { pooled: true }));
        // Every frame is checked after all were encoded: none overwrote another in the slab.
        pooled.forEach((frame, index) => {
          const plain = encodeMessage(messages[index] as Message);
          expect(frame).toEqual(plain);
          expect(decodeMessage(frame)).toEqual(messages[index]);
        });
      }),
      { numRuns: 200 },
    );
  });

  it('carves small frames out of one shared buffer, 8-byte aligned; large ones get their own', () => {
    const small = (id: string): Message => ({ type: 'ping', nonce: id.length });
    const a = encodeMessage(small('a'), { pooled: true });
    const b = encodeMessage(small('bb'), { pooled: true });
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset % 8).toBe(0);
    const data = new Float32Array(POOLED_FRAME_MAX_BYTES / 4 + 1);
    const large = encodeMessage(
      {
        type: 'infer',
        id: 'j',
        model: 'm',
        inputs: { x: { dtype: 'float32', dims: [data.length], data } },
      },
      { pooled: true },
    );
    expect(large.byteOffset).toBe(0);
    expect(large.byteLength).toBe(large.buffer.byteLength);
  });
});

describe('pooled decoding', () => {
  it('copies unaligned tensors into one shared slab, equal to an unpooled decode', () => {
    const data = Float32Array.from({ length: 64 }, (_, i) => i / 7);
    const frame = encodeMessage({
      type: 'infer',
      id: 'j',
      model: 'm',
      inputs: { x: { dtype: 'float32', dims: [64], data } },
    });
    // Frames at odd offsets of a larger buffer, as a socket read holding several frames has them.
    const holder = new Uint8Array(frame.byteLength * 2 + 8);
    holder.set(frame, 1);
    holder.set(frame, frame.byteLength + 3);
    const first = holder.subarray(1, 1 + frame.byteLength);
    const second = holder.subarray(frame.byteLength + 3, frame.byteLength * 2 + 3);
    const a = decodeClientMessage(first, { pooled: true }) as InferMessage;
    const b = decodeClientMessage(second, { pooled: true }) as InferMessage;
    expect(a).toEqual(decodeClientMessage(first));
    expect(Array.from(b.inputs.x!.data as Float32Array)).toEqual(Array.from(data));
    const viewA = a.inputs.x!.data as Float32Array;
    const viewB = b.inputs.x!.data as Float32Array;
    expect(viewA.buffer).toBe(viewB.buffer);
    expect(viewA.buffer).not.toBe(holder.buffer);
  });
});

describe('encoding in parts', () => {
  /** The parts joined, as the reader of a fragmented WebSocket message gets them. */
  const join = (parts: Uint8Array[]): Uint8Array => {
    const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.byteLength;
    }
    return out;
  };

  it('gives parts that join to the frame encodeMessage gives, whatever the view threshold', () => {
    fc.assert(
      fc.property(messageArb, fc.nat(64), fc.boolean(), (message, minViewBytes, pooled) => {
        const parts = encodeMessageParts(message, { minViewBytes, pooled });
        expect(parts.every((part) => part.byteLength > 0)).toBe(true);
        expect(join(parts)).toEqual(encodeMessage(message));
      }),
      { numRuns: 300 },
    );
  });

  it('cuts correctly around an empty tensor that sits between two views', () => {
    // Found by the property above: the empty tensor was carried into the next copied part, at an
    // offset before that part's start (RangeError).
    const message: Message = {
      type: 'infer',
      id: 'j',
      model: 'm',
      inputs: {
        a: { dtype: 'uint64', dims: [2], data: BigUint64Array.from([1n, 2n]) },
        b: { dtype: 'float32', dims: [0], data: new Float32Array(0) },
        c: { dtype: 'float32', dims: [3], data: Float32Array.from([3, 4, 5]) },
        d: { dtype: 'float32', dims: [], data: Float32Array.from([6]) },
      },
    };
    const parts = encodeMessageParts(message, { minViewBytes: 1 });
    expect(parts.every((part) => part.byteLength > 0)).toBe(true);
    expect(join(parts)).toEqual(encodeMessage(message));
  });

  it('sends a large tensor from its own memory, and everything else copied', () => {
    const big = new Float32Array(ZERO_COPY_MIN_BYTES / 4);
    big.fill(0.5);
    const small = new Float32Array([1, 2, 3]);
    const message: Message = {
      type: 'result',
      id: 'j',
      model: 'm',
      version: '1',
      outputs: {
        a: { dtype: 'float32', dims: [3], data: small },
        b: { dtype: 'float32', dims: [big.length], data: big },
        c: { dtype: 'float32', dims: [3], data: small },
      },
      backend: 'cpu',
      coldStart: false,
      timings: { queueMs: 0, loadMs: 0, warmupMs: 0, runMs: 1, totalMs: 1 },
    };
    const parts = encodeMessageParts(message);
    // Header with tensor a, then b itself, then c.
    expect(parts).toHaveLength(3);
    expect(parts[1]?.buffer).toBe(big.buffer);
    expect(parts.filter((part) => part.buffer === small.buffer)).toHaveLength(0);
    expect(decodeServerMessage(join(parts))).toEqual(message);
    // Below the threshold the message is one copied part.
    const one = encodeMessageParts(message, { minViewBytes: big.byteLength + 1 });
    expect(one).toHaveLength(1);
    expect(one[0]?.buffer).not.toBe(big.buffer);
  });
});

describe('decoding a message from its fragments (ws binaryType "fragments")', () => {
  /** `frame` cut at `cuts` (positions, any order, repeats giving empty fragments). */
  const cut = (frame: Uint8Array, cuts: number[]): Uint8Array[] => {
    const points = [0, ...cuts.map((c) => c % (frame.byteLength + 1)).sort((a, b) => a - b)];
    return points.map((start, i) => frame.slice(start, points[i + 1] ?? frame.byteLength));
  };
  const outcome = (run: () => Message): { message: Message } | { code: string } => {
    try {
      return { message: run() };
    } catch (error) {
      return { code: (error as { code: string }).code };
    }
  };

  it('decodes any message cut anywhere as it decodes the whole frame', () => {
    fc.assert(
      fc.property(messageArb, fc.array(fc.nat(), { maxLength: 6 }), (message, cuts) => {
        const frame = encodeMessage(message);
        expect(decodeMessage(cut(frame, cuts))).toEqual(decodeMessage(frame));
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a damaged frame cut anywhere with the code the whole frame gets', () => {
    fc.assert(
      fc.property(
        messageArb,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(),
        fc.array(fc.nat(), { maxLength: 4 }),
        (message, at, value, keep, cuts) => {
          const frame = encodeMessage(message);
          const damaged = frame.slice(0, 1 + (keep % frame.byteLength));
          damaged[at % damaged.byteLength] = value;
          expect(outcome(() => decodeMessage(cut(damaged, cuts)))).toEqual(
            outcome(() => decodeMessage(damaged)),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('views a large tensor inside its own fragment, as encodeMessageParts cuts the frame', () => {
    const big = new Float32Array(ZERO_COPY_MIN_BYTES / 4).map((_, i) => i / 7);
    const message: Message = {
      type: 'infer',
      id: 'j',
      model: 'm',
      inputs: {
        a: { dtype: 'float32', dims: [3], data: new Float32Array([1, 2, 3]) },
        b: { dtype: 'float32', dims: [big.length], data: big },
      },
    };
    // What a ws reader gets: each fragment in a buffer of its own.
    const fragments = encodeMessageParts(message).map((part) => part.slice());
    expect(fragments).toHaveLength(2);
    const decoded = decodeClientMessage(fragments);
    expect(decoded).toEqual(message);
    if (decoded.type !== 'infer') throw new Error('expected infer');
    expect((decoded.inputs.b?.data as Float32Array).buffer).toBe(fragments[1]?.buffer);
  });

  it('rejects an empty list or a list of something else', () => {
    expect(codeOf(() => decodeMessage([]))).toBe('E_PROTOCOL');
    expect(codeOf(() => decodeMessage([new Uint8Array(4), 'x']))).toBe('E_PROTOCOL');
  });
});
