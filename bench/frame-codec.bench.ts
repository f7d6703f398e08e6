// Tandem's binary frame codec against the JSON text frames people send instead: bytes on the wire
// and encode + decode round trips per second for an infer message carrying one float32 tensor, an
// image-sized one (1×3×224×224) and a 4 MiB one, with random values so number-array JSON is as
// long as it would be for real data. Every round trip is checked once in full before it is timed,
// and each timed one checks its first and last element, so no work can be optimised away.

import { decodeMessage, encodeMessage, type InferMessage } from '@tandem/shared';

import type { Bench, BenchFigure } from './bench-types.js';
import { makeFigure } from './figure.js';
import { jsonBase64Codec, jsonNumberArrayCodec, type FrameCodec } from './json-codecs.js';
import { measureThroughput, type TimingOptions } from './timing.js';

const NAME = 'frame-codec';

/** Targets from the issue: wire bytes vs base64 JSON, round trips vs each JSON baseline. */
const WIRE_BYTES_VS_BASE64 = 0.76;
const ROUND_TRIPS_VS_BASE64 = 3;
const ROUND_TRIPS_VS_NUMBER_ARRAY = 10;

/** ~1.5 s per measurement keeps the figures stable and the whole file under ~30 s. */
const TIMING: TimingOptions = { warmupMs: 300, minTimeMs: 1500, minSamples: 5 };
/** Number-array JSON of 4 MiB takes most of a second per round trip: fewer, longer samples. */
const SLOW_TIMING: TimingOptions = { warmupMs: 200, minTimeMs: 1500, minSamples: 3 };

interface Case {
  readonly label: string;
  readonly dims: readonly number[];
}

const CASES: readonly Case[] = [
  { label: '1×3×224×224 float32 (588 KiB)', dims: [1, 3, 224, 224] },
  { label: '1×1024×1024 float32 (4 MiB)', dims: [1, 1024, 1024] },
];

const tandemCodec: FrameCodec = {
  name: 'Tandem frame',
  encode: encodeMessage,
  decode(bytes) {
    const message = decodeMessage(bytes);
    if (message.type !== 'infer') throw new Error(`decoded a ${message.type}, expected infer`);
    return message;
  },
};

/** Accumulates touched elements so the engine cannot drop a decode whose result is unused. */
let sink = 0;

function makeMessage(dims: readonly number[]): InferMessage {
  const count = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = Math.random();
  return {
    type: 'infer',
    id: 'job-1',
    model: 'm',
    inputs: { x: { dtype: 'float32', dims, data } },
  };
}

function inputData(message: InferMessage): Float32Array {
  const tensor = message.inputs.x;
  if (tensor?.dtype !== 'float32') throw new Error('expected a float32 input "x"');
  return tensor.data;
}

/** Full check, once per codec and case, before timing: header fields, dims and every byte. */
function verifyRoundTrip(codec: FrameCodec, message: InferMessage): void {
  const decoded = codec.decode(codec.encode(message));
  const sent = inputData(message);
  const got = inputData(decoded);
  const same =
    decoded.id === message.id &&
    decoded.model === message.model &&
    JSON.stringify(decoded.inputs.x?.dims) === JSON.stringify(message.inputs.x?.dims) &&
    Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(
      Buffer.from(sent.buffer, sent.byteOffset, sent.byteLength),
    );
  if (!same) throw new Error(`${codec.name}: round trip changed the message`);
}

/** One timed round trip: encode, decode, and touch the first and last element. */
function roundTrip(codec: FrameCodec, message: InferMessage, sent: Float32Array): void {
  const got = inputData(codec.decode(codec.encode(message)));
  const last = sent.length - 1;
  if (got[0] !== sent[0] || got[last] !== sent[last]) {
    throw new Error(`${codec.name}: round trip changed the data`);
  }
  sink += (got[0] ?? 0) + (got[last] ?? 0);
}

function roundTripsPerSecond(
  codec: FrameCodec,
  message: InferMessage,
  timing: TimingOptions,
): number {
  const sent = inputData(message);
  const result = measureThroughput(() => {
    roundTrip(codec, message, sent);
  }, timing);
  console.error(
    `  ${codec.name}: ${result.opsPerSecond.toFixed(1)} round trips/s ` +
      `(median ${result.medianMs.toFixed(3)} ms, ${result.samples} samples, ${result.operations} ops)`,
  );
  return result.opsPerSecond;
}

function benchCase(testCase: Case): BenchFigure[] {
  console.error(` ${testCase.label}`);
  const message = makeMessage(testCase.dims);
  const codecs = [tandemCodec, jsonBase64Codec, jsonNumberArrayCodec];
  for (const codec of codecs) verifyRoundTrip(codec, message);

  const [tandemBytes, base64Bytes, numberArrayBytes] = codecs.map(
    (codec) => codec.encode(message).byteLength,
  ) as [number, number, number];
  const tandemRate = roundTripsPerSecond(tandemCodec, message, TIMING);
  const base64Rate = roundTripsPerSecond(jsonBase64Codec, message, TIMING);
  const numberArrayRate = roundTripsPerSecond(jsonNumberArrayCodec, message, SLOW_TIMING);

  const wire = {
    bench: NAME,
    figure: `wire bytes, ${testCase.label}`,
    unit: 'B',
    better: 'lower',
  } as const;
  const rate = {
    bench: NAME,
    figure: `round trips/s, ${testCase.label}`,
    unit: 'ops/s',
    better: 'higher',
  } as const;
  return [
    makeFigure({
      ...wire,
      value: tandemBytes,
      baseline: jsonBase64Codec.name,
      baselineValue: base64Bytes,
      target: WIRE_BYTES_VS_BASE64,
    }),
    makeFigure({
      ...wire,
      value: tandemBytes,
      baseline: jsonNumberArrayCodec.name,
      baselineValue: numberArrayBytes,
    }),
    makeFigure({
      ...rate,
      value: tandemRate,
      baseline: jsonBase64Codec.name,
      baselineValue: base64Rate,
      target: ROUND_TRIPS_VS_BASE64,
    }),
    makeFigure({
      ...rate,
      value: tandemRate,
      baseline: jsonNumberArrayCodec.name,
      baselineValue: numberArrayRate,
      target: ROUND_TRIPS_VS_NUMBER_ARRAY,
    }),
  ];
}

/** Frame codec: wire bytes and round trips per second against two JSON baselines. */
export const bench: Bench = {
  name: NAME,
  run() {
    const figures = CASES.flatMap(benchCase);
    // Reading the sink keeps it live; random values in [0, 1) always sum to a finite number.
    if (!Number.isFinite(sink)) throw new Error('touched elements summed to a non-finite value');
    return Promise.resolve(figures);
  },
};

export default bench;
