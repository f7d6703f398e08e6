import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_OPSET,
  ONNX_DTYPE_CODES,
  ONNX_IR_VERSION,
  PRODUCER_NAME,
  buildModel,
  type Initializer,
  type ModelSpec,
  type OnnxDataByDtype,
  type OnnxDtype,
} from '../src/onnx-builder.js';

// A minimal protobuf reader, written independently of the builder, to check the wire format
// field by field.
interface WireField {
  readonly field: number;
  readonly wire: number;
  /** Varint fields: the raw 64-bit value. */
  readonly varint?: bigint;
  /** Length-delimited and fixed32 fields: the payload bytes. */
  readonly bytes?: Uint8Array;
}

function readVarint(bytes: Uint8Array, start: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  let pos = start;
  for (;;) {
    const byte = bytes[pos++];
    if (byte === undefined) throw new Error('truncated varint');
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value, pos];
    shift += 7n;
  }
}

function readFields(bytes: Uint8Array): WireField[] {
  const fields: WireField[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const [key, afterKey] = readVarint(bytes, pos);
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      const [varint, next] = readVarint(bytes, afterKey);
      fields.push({ field, wire, varint });
      pos = next;
    } else if (wire === 2) {
      const [length, start] = readVarint(bytes, afterKey);
      const end = start + Number(length);
      if (end > bytes.length) throw new Error('truncated field');
      fields.push({ field, wire, bytes: bytes.subarray(start, end) });
      pos = end;
    } else if (wire === 5) {
      fields.push({ field, wire, bytes: bytes.subarray(afterKey, afterKey + 4) });
      pos = afterKey + 4;
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
  return fields;
}

function all(bytes: Uint8Array, field: number): WireField[] {
  return readFields(bytes).filter((f) => f.field === field);
}

function one(bytes: Uint8Array, field: number): WireField {
  const found = all(bytes, field);
  expect(found).toHaveLength(1);
  const [first] = found;
  if (first === undefined) throw new Error(`field ${field} missing`);
  return first;
}

function varintOf(bytes: Uint8Array, field: number): bigint {
  const { varint, wire } = one(bytes, field);
  expect(wire).toBe(0);
  if (varint === undefined) throw new Error('not a varint');
  return varint;
}

function bytesOf(bytes: Uint8Array, field: number): Uint8Array {
  const found = one(bytes, field);
  expect(found.wire).toBe(2);
  if (found.bytes === undefined) throw new Error('not length-delimited');
  return found.bytes;
}

function stringOf(bytes: Uint8Array, field: number): string {
  return new TextDecoder().decode(bytesOf(bytes, field));
}

function packedVarints(bytes: Uint8Array): bigint[] {
  const values: bigint[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const [value, next] = readVarint(bytes, pos);
    values.push(value);
    pos = next;
  }
  return values;
}

function floatOf(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat32(0, true);
}

const scalarModel = (spec: Partial<ModelSpec>): Uint8Array =>
  buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: [] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: [] }],
    nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
    ...spec,
  });

describe('buildModel wire format', () => {
  it('writes the ModelProto header: IR version, producer, default-domain opset', () => {
    const model = scalarModel({});
    expect(varintOf(model, 1)).toBe(BigInt(ONNX_IR_VERSION));
    expect(ONNX_IR_VERSION).toBe(8);
    expect(stringOf(model, 2)).toBe(PRODUCER_NAME);
    expect(PRODUCER_NAME).toBe('tandem-test-support');
    const opset = bytesOf(model, 8);
    expect(varintOf(opset, 2)).toBe(17n);
    expect(DEFAULT_OPSET).toBe(17);
    expect(all(opset, 1)).toHaveLength(0);
    expect(varintOf(bytesOf(scalarModel({ opset: 13 }), 8), 2)).toBe(13n);
  });

  it('writes graph inputs and outputs with elem_type, dim_value and dim_param', () => {
    const model = buildModel({
      inputs: [
        { name: 'a', dtype: 'int64', dims: ['batch', 300, 0] },
        { name: 's', dtype: 'uint8', dims: [] },
      ],
      outputs: [{ name: 'b', dtype: 'int64', dims: ['batch', 300, 0] }],
      nodes: [{ opType: 'Identity', inputs: ['a'], outputs: ['b'] }],
      graphName: 'g',
    });
    const graph = bytesOf(model, 7);
    expect(stringOf(graph, 2)).toBe('g');
    const [a, s] = all(graph, 11).map((f) => f.bytes ?? new Uint8Array());
    if (a === undefined || s === undefined) throw new Error('inputs missing');
    expect(stringOf(a, 1)).toBe('a');
    const tensorType = bytesOf(bytesOf(a, 2), 1);
    expect(varintOf(tensorType, 1)).toBe(7n);
    const dims = all(bytesOf(tensorType, 2), 1).map((f) => f.bytes ?? new Uint8Array());
    expect(dims).toHaveLength(3);
    expect(dims.map((d) => readFields(d).map((f) => [f.field, f.varint ?? '', f.bytes]))).toEqual([
      [[2, '', new TextEncoder().encode('batch')]],
      [[1, 300n, undefined]],
      [[1, 0n, undefined]],
    ]);
    // A scalar keeps an empty shape (known rank 0), not a missing one (unknown rank).
    const scalarType = bytesOf(bytesOf(s, 2), 1);
    expect(varintOf(scalarType, 1)).toBe(2n);
    expect(bytesOf(scalarType, 2)).toHaveLength(0);
  });

  it('writes initializers with packed dims, data_type, name and little-endian raw_data', () => {
    const data = new Float32Array([1, -2.5, 3, 4, 5, 6]);
    const model = scalarModel({
      initializers: [{ name: 'w', dtype: 'float32', dims: [2, 3], data }],
    });
    const tensor = bytesOf(bytesOf(model, 7), 5);
    expect(packedVarints(bytesOf(tensor, 1))).toEqual([2n, 3n]);
    expect(varintOf(tensor, 2)).toBe(1n);
    expect(stringOf(tensor, 8)).toBe('w');
    const raw = bytesOf(tensor, 9);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    expect(Array.from(data, (_, i) => view.getFloat32(i * 4, true))).toEqual(Array.from(data));
  });

  it('writes a scalar initializer without a dims field and strings as string_data', () => {
    const model = scalarModel({
      initializers: [
        { name: 'k', dtype: 'int64', dims: [], data: BigInt64Array.of(-1n) },
        { name: 't', dtype: 'string', dims: [2], data: ['ab', 'é'] },
      ],
    });
    const [k, t] = all(bytesOf(model, 7), 5).map((f) => f.bytes ?? new Uint8Array());
    if (k === undefined || t === undefined) throw new Error('initializers missing');
    expect(all(k, 1)).toHaveLength(0);
    expect(Array.from(bytesOf(k, 9))).toEqual(new Array<number>(8).fill(0xff));
    expect(all(t, 9)).toHaveLength(0);
    expect(varintOf(t, 2)).toBe(8n);
    expect(all(t, 6).map((f) => new TextDecoder().decode(f.bytes))).toEqual(['ab', 'é']);
  });

  it('writes each attribute kind with its AttributeType code', () => {
    const model = scalarModel({
      nodes: [
        {
          opType: 'Identity',
          inputs: ['x'],
          outputs: ['y'],
          name: 'n0',
          attributes: {
            neg: { type: 'int', value: -1 },
            big: { type: 'int', value: 2 ** 40 + 5 },
            max: { type: 'int', value: 2n ** 63n - 1n },
            f: { type: 'float', value: 0.25 },
            fs: { type: 'floats', value: [1.5, -2] },
            is: { type: 'ints', value: [-3, 7, 2n ** 33n] },
            s: { type: 'string', value: 'reflect' },
            ss: { type: 'strings', value: ['a', 'b'] },
            t: { type: 'tensor', value: { dtype: 'int32', dims: [1], data: Int32Array.of(9) } },
          },
        },
      ],
    });
    const node = bytesOf(bytesOf(model, 7), 1);
    expect(stringOf(node, 3)).toBe('n0');
    expect(stringOf(node, 4)).toBe('Identity');
    const attributes = new Map(
      all(node, 5).map((f) => {
        const bytes = f.bytes ?? new Uint8Array();
        return [stringOf(bytes, 1), bytes] as const;
      }),
    );
    const get = (name: string): Uint8Array => {
      const found = attributes.get(name);
      if (found === undefined) throw new Error(`attribute ${name} missing`);
      return found;
    };
    const typeOf = (name: string): bigint => varintOf(get(name), 20);

    // A negative int64 is sign-extended: ten bytes on the wire, -1 when read back as int64.
    expect(typeOf('neg')).toBe(2n);
    expect(BigInt.asIntN(64, varintOf(get('neg'), 3))).toBe(-1n);
    const negField = readFields(get('neg')).find((f) => f.field === 3);
    expect(negField?.varint).toBe(2n ** 64n - 1n);
    expect(varintOf(get('big'), 3)).toBe(2n ** 40n + 5n);
    expect(varintOf(get('max'), 3)).toBe(2n ** 63n - 1n);

    expect(typeOf('f')).toBe(1n);
    const f = one(get('f'), 2);
    expect(f.wire).toBe(5);
    expect(floatOf(f.bytes ?? new Uint8Array())).toBe(0.25);

    expect(typeOf('fs')).toBe(6n);
    const fs = bytesOf(get('fs'), 7);
    expect([floatOf(fs.subarray(0, 4)), floatOf(fs.subarray(4, 8))]).toEqual([1.5, -2]);

    expect(typeOf('is')).toBe(7n);
    expect(packedVarints(bytesOf(get('is'), 8)).map((v) => BigInt.asIntN(64, v))).toEqual([
      -3n,
      7n,
      2n ** 33n,
    ]);

    expect(typeOf('s')).toBe(3n);
    expect(stringOf(get('s'), 4)).toBe('reflect');

    expect(typeOf('ss')).toBe(8n);
    expect(all(get('ss'), 9).map((x) => new TextDecoder().decode(x.bytes))).toEqual(['a', 'b']);

    expect(typeOf('t')).toBe(4n);
    const t = bytesOf(get('t'), 5);
    expect(varintOf(t, 2)).toBe(6n);
    expect(Array.from(bytesOf(t, 9))).toEqual([9, 0, 0, 0]);
  });

  it('names nodes by op type and index unless named', () => {
    const model = scalarModel({
      nodes: [
        { opType: 'Identity', inputs: ['x'], outputs: ['m'] },
        { opType: 'Identity', inputs: ['m'], outputs: ['y'], name: 'last' },
      ],
    });
    const nodes = all(bytesOf(model, 7), 1).map((f) => stringOf(f.bytes ?? new Uint8Array(), 3));
    expect(nodes).toEqual(['Identity_0', 'last']);
  });

  it('copies a large initializer once: the model is the data plus a few bytes', () => {
    const data = new Float32Array(4 * 1024 * 1024).fill(0.5);
    const model = scalarModel({
      initializers: [{ name: 'w', dtype: 'float32', dims: [1024, 4096], data }],
    });
    expect(model.byteLength).toBeGreaterThan(data.byteLength);
    expect(model.byteLength).toBeLessThan(data.byteLength + 200);
    const raw = bytesOf(bytesOf(bytesOf(model, 7), 5), 9);
    expect(raw.buffer).toBe(model.buffer);
    // Compared as bytes: a deep toEqual over four million elements takes half a minute.
    expect(Buffer.compare(raw, new Uint8Array(data.buffer))).toBe(0);
  });
});

describe('buildModel validation', () => {
  it('rejects initializer data that does not match its dims', () => {
    expect(() =>
      scalarModel({
        initializers: [{ name: 'w', dtype: 'float32', dims: [2, 3], data: new Float32Array(5) }],
      }),
    ).toThrow(RangeError);
  });

  it('rejects negative, fractional and empty dims', () => {
    expect(() =>
      scalarModel({
        initializers: [{ name: 'w', dtype: 'float32', dims: [-1], data: new Float32Array(0) }],
      }),
    ).toThrow(RangeError);
    expect(() => scalarModel({ inputs: [{ name: 'x', dtype: 'float32', dims: [1.5] }] })).toThrow(
      RangeError,
    );
    expect(() => scalarModel({ inputs: [{ name: 'x', dtype: 'float32', dims: [''] }] })).toThrow(
      RangeError,
    );
  });

  it('rejects int attributes that are not integers or do not fit in 64 bits', () => {
    const withAttribute = (value: number | bigint): Uint8Array =>
      scalarModel({
        nodes: [
          {
            opType: 'Identity',
            inputs: ['x'],
            outputs: ['y'],
            attributes: { a: { type: 'int', value } },
          },
        ],
      });
    expect(() => withAttribute(0.5)).toThrow(RangeError);
    expect(() => withAttribute(2 ** 60)).toThrow(RangeError);
    expect(() => withAttribute(2n ** 64n)).toThrow(RangeError);
    expect(() => withAttribute(-(2n ** 63n) - 1n)).toThrow(RangeError);
  });
});

// One sample per dtype, with the extremes of each range.
const SAMPLES: { readonly [K in OnnxDtype]: OnnxDataByDtype[K] } = {
  float32: Float32Array.of(1.5, -2, 3.25, 0, 1e-7, -65504),
  uint8: Uint8Array.of(0, 1, 127, 128, 254, 255),
  int8: Int8Array.of(-128, -1, 0, 1, 64, 127),
  uint16: Uint16Array.of(0, 1, 256, 4660, 65534, 65535),
  int16: Int16Array.of(-32768, -1, 0, 1, 258, 32767),
  int32: Int32Array.of(-2147483648, -1, 0, 1, 16909060, 2147483647),
  int64: BigInt64Array.of(-(2n ** 63n), -1n, 0n, 1n, 2n ** 40n + 3n, 2n ** 63n - 1n),
  string: ['', 'a', 'héllo', '漢字', 'x'.repeat(200), 'tab\t'],
  bool: Uint8Array.of(1, 0, 0, 1, 1, 0),
  // 1, -2, 65504, smallest subnormal, -0, ~1/3 as IEEE-754 half bits.
  float16: Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x3555),
  float64: Float64Array.of(Math.PI, -1e300, 0, 5e-324, 1, -0.5),
  uint32: Uint32Array.of(0, 1, 2 ** 31, 2 ** 32 - 1, 16909060, 7),
  uint64: BigUint64Array.of(0n, 1n, 2n ** 63n, 2n ** 64n - 1n, 72623859790382856n, 5n),
};

const DTYPES = Object.keys(ONNX_DTYPE_CODES) as OnnxDtype[];

function sampleInitializer(dtype: OnnxDtype): Initializer {
  // The mapped SAMPLES type guarantees the pairing; TypeScript cannot follow it through `dtype`.
  return { name: `c_${dtype}`, dtype, dims: [2, 3], data: SAMPLES[dtype] } as Initializer;
}

describe('buildModel in onnxruntime-node', () => {
  it('round-trips every dtype through initializers and inputs, with the dtype onnxruntime reports', async () => {
    expect(DTYPES).toHaveLength(13);
    const bytes = buildModel({
      inputs: DTYPES.map((dtype) => ({ name: `in_${dtype}`, dtype, dims: ['rows', 3] })),
      outputs: DTYPES.flatMap((dtype) => [
        { name: `const_${dtype}`, dtype, dims: [2, 3] },
        { name: `echo_${dtype}`, dtype, dims: ['rows', 3] },
      ]),
      initializers: DTYPES.map(sampleInitializer),
      nodes: DTYPES.flatMap((dtype) => [
        { opType: 'Identity', inputs: [`c_${dtype}`], outputs: [`const_${dtype}`] },
        { opType: 'Identity', inputs: [`in_${dtype}`], outputs: [`echo_${dtype}`] },
      ]),
    });
    const session = await ort.InferenceSession.create(bytes);
    try {
      expect(
        session.inputMetadata.map((m) => (m.isTensor ? [m.name, m.type, m.shape] : [])),
      ).toEqual(DTYPES.map((dtype) => [`in_${dtype}`, dtype, ['rows', 3]]));
      expect(
        session.outputMetadata.map((m) => (m.isTensor ? [m.name, m.type, m.shape] : [])),
      ).toEqual(
        DTYPES.flatMap((dtype) => [
          [`const_${dtype}`, dtype, [2, 3]],
          [`echo_${dtype}`, dtype, ['rows', 3]],
        ]),
      );
      // Feed the samples in reverse so a swapped input and initializer would show.
      const feeds = Object.fromEntries(
        DTYPES.map((dtype) => [
          `in_${dtype}`,
          new ort.Tensor(dtype, reversed(SAMPLES[dtype]), [2, 3]),
        ]),
      );
      const results = await session.run(feeds);
      for (const dtype of DTYPES) {
        const constant = results[`const_${dtype}`];
        const echo = results[`echo_${dtype}`];
        expect(constant?.type).toBe(dtype);
        expect(constant?.dims).toEqual([2, 3]);
        expect(Array.from(constant?.data as ArrayLike<unknown>)).toEqual(
          Array.from(SAMPLES[dtype] as ArrayLike<unknown>),
        );
        expect(Array.from(echo?.data as ArrayLike<unknown>)).toEqual(
          Array.from(reversed(SAMPLES[dtype]) as ArrayLike<unknown>),
        );
      }
    } finally {
      await session.release();
    }
  });

  it('passes every attribute kind to onnxruntime (Constant value_* attributes)', async () => {
    const constant = (
      name: string,
      attribute: string,
      value: ModelSpec['nodes'][number]['attributes'],
    ) => ({
      opType: 'Constant',
      inputs: [],
      outputs: [name],
      attributes: value ?? {},
      name: attribute,
    });
    const bytes = buildModel({
      inputs: [],
      outputs: [
        { name: 'f', dtype: 'float32', dims: [] },
        { name: 'fs', dtype: 'float32', dims: [3] },
        { name: 'i', dtype: 'int64', dims: [] },
        { name: 'is', dtype: 'int64', dims: [3] },
        { name: 's', dtype: 'string', dims: [] },
        { name: 'ss', dtype: 'string', dims: [2] },
        { name: 't', dtype: 'int32', dims: [2, 2] },
      ],
      nodes: [
        constant('f', 'value_float', { value_float: { type: 'float', value: -0.75 } }),
        constant('fs', 'value_floats', { value_floats: { type: 'floats', value: [1, 2.5, -3] } }),
        constant('i', 'value_int', { value_int: { type: 'int', value: -(2 ** 40) } }),
        constant('is', 'value_ints', { value_ints: { type: 'ints', value: [-1, 0, 2n ** 62n] } }),
        constant('s', 'value_string', { value_string: { type: 'string', value: 'héllo' } }),
        constant('ss', 'value_strings', { value_strings: { type: 'strings', value: ['a', ''] } }),
        constant('t', 'value', {
          value: {
            type: 'tensor',
            value: { dtype: 'int32', dims: [2, 2], data: Int32Array.of(1, -2, 3, -4) },
          },
        }),
      ],
    });
    const session = await ort.InferenceSession.create(bytes);
    try {
      const out = await session.run({});
      expect(out.f?.dims).toEqual([]);
      expect(Array.from(out.f?.data as Float32Array)).toEqual([-0.75]);
      expect(Array.from(out.fs?.data as Float32Array)).toEqual([1, 2.5, -3]);
      expect(Array.from(out.i?.data as BigInt64Array)).toEqual([-(2n ** 40n)]);
      expect(Array.from(out.is?.data as BigInt64Array)).toEqual([-1n, 0n, 2n ** 62n]);
      expect(out.s?.data).toEqual(['héllo']);
      expect(out.ss?.data).toEqual(['a', '']);
      expect(out.t?.dims).toEqual([2, 2]);
      expect(Array.from(out.t?.data as Int32Array)).toEqual([1, -2, 3, -4]);
    } finally {
      await session.release();
    }
  });

  it('gives operators their int, ints, float and string attributes', async () => {
    // Transpose(perm) → LeakyRelu(alpha) → Pad(mode = reflect, pads from an int64 initializer).
    // Constant or edge padding, a wrong perm or a wrong alpha would each give other values.
    const bytes = buildModel({
      inputs: [{ name: 'x', dtype: 'float32', dims: [2, 3] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: [6, 2] }],
      initializers: [
        { name: 'pads', dtype: 'int64', dims: [4], data: BigInt64Array.of(2n, 0n, 1n, 0n) },
      ],
      nodes: [
        {
          opType: 'Transpose',
          inputs: ['x'],
          outputs: ['xt'],
          attributes: { perm: { type: 'ints', value: [1, 0] } },
        },
        {
          opType: 'LeakyRelu',
          inputs: ['xt'],
          outputs: ['leaky'],
          attributes: { alpha: { type: 'float', value: 0.25 } },
        },
        {
          opType: 'Pad',
          inputs: ['leaky', 'pads'],
          outputs: ['y'],
          attributes: { mode: { type: 'string', value: 'reflect' } },
        },
      ],
    });
    const session = await ort.InferenceSession.create(bytes);
    try {
      const x = Float32Array.of(1, -4, 3, -8, 5, 6);
      const { y } = await session.run({ x: new ort.Tensor('float32', x, [2, 3]) });
      // xt = [[1, -8], [-4, 5], [3, 6]]; leaky = rows r0 [1, -2], r1 [-1, 5], r2 [3, 6];
      // reflect-padding two rows before and one after gives r2 r1 | r0 r1 r2 | r1.
      expect(y?.dims).toEqual([6, 2]);
      expect(Array.from(y?.data as Float32Array)).toEqual([3, 6, -1, 5, 1, -2, -1, 5, 3, 6, -1, 5]);
    } finally {
      await session.release();
    }
  });
});

/** A reversed copy of the same kind as `data`. */
function reversed(data: OnnxDataByDtype[OnnxDtype]): OnnxDataByDtype[OnnxDtype] {
  return ArrayBuffer.isView(data) ? data.slice().reverse() : [...data].reverse();
}
