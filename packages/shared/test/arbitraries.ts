// fast-check arbitraries for every tensor dtype and every message type, shared by the codec tests.

import fc from 'fast-check';
import {
  ERROR_CODES,
  MODEL_STATES,
  PROGRESS_STAGES,
  TENSOR_DTYPES,
  elementCount,
  type ErrorCode,
  type Message,
  type Tensor,
  type TensorDtype,
  type TensorMap,
} from '../src/index.js';

const ERROR_CODE_LIST = Object.keys(ERROR_CODES) as ErrorCode[];

/** A non-negative double that JSON round-trips exactly (no -0, NaN or Infinity). */
export const nonNegativeDouble = fc
  .double({ min: 0, max: 1e12, noNaN: true, noDefaultInfinity: true })
  .map((x) => x + 0);

const safeInt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const shortText = fc.string({ unit: 'binary', minLength: 1, maxLength: 24 });
const anyText = fc.string({ unit: 'binary', maxLength: 24 });

/** Dims of rank 0..4 with sizes 0..4, so zero-sized tensors and scalars come up often. */
export const dimsArb = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 });

function dataArb(dtype: TensorDtype, n: number): fc.Arbitrary<Tensor['data']> {
  const len = { minLength: n, maxLength: n };
  switch (dtype) {
    case 'float32':
      return fc.float32Array(len);
    case 'float64':
      return fc.float64Array(len);
    case 'float16':
    case 'uint16':
      return fc.array(fc.integer({ min: 0, max: 0xffff }), len).map((a) => Uint16Array.from(a));
    case 'int8':
      return fc.int8Array(len);
    case 'int16':
      return fc.int16Array(len);
    case 'int32':
      return fc.int32Array(len);
    case 'int64':
      return fc.bigInt64Array(len);
    case 'uint8':
      return fc.uint8Array(len);
    case 'uint32':
      return fc.uint32Array(len);
    case 'uint64':
      return fc.bigUint64Array(len);
    case 'bool':
      return fc.array(fc.boolean(), len).map((a) => Uint8Array.from(a, (b) => (b ? 1 : 0)));
    case 'string':
      return fc.array(anyText, len);
  }
}

/** A tensor of the given dtype with random dims and data. */
export function tensorOf(dtype: TensorDtype): fc.Arbitrary<Tensor> {
  return dimsArb.chain((dims) =>
    dataArb(dtype, elementCount(dims)).map((data) => ({ dtype, dims, data }) as Tensor),
  );
}

/** A tensor of any dtype. */
export const tensorArb: fc.Arbitrary<Tensor> = fc
  .constantFrom(...TENSOR_DTYPES)
  .chain((dtype) => tensorOf(dtype));

/** Up to 5 named tensors. */
export const tensorMapArb: fc.Arbitrary<TensorMap> = fc
  .uniqueArray(fc.tuple(shortText, tensorArb), { maxLength: 5, selector: ([name]) => name })
  .map((entries) => Object.fromEntries(entries));

const modelStatusArb = fc.record(
  {
    name: shortText,
    version: shortText,
    state: fc.constantFrom(...MODEL_STATES),
    instances: fc.integer({ min: 0, max: 64 }),
    reason: anyText,
    estimates: fc.record(
      { loadMs: nonNegativeDouble, warmupMs: nonNegativeDouble, runMs: nonNegativeDouble },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ['name', 'version', 'state', 'instances'] },
);

const progressEventArb = fc
  .record(
    {
      jobId: shortText,
      model: shortText,
      where: fc.constantFrom('local' as const, 'remote' as const),
      stage: fc.constantFrom(...PROGRESS_STAGES),
      loaded: safeInt,
      total: safeInt,
      fraction: fc.double({ min: 0, max: 0.99, noNaN: true }).map((x) => x + 0),
      queuePosition: fc.integer({ min: 0, max: 10_000 }),
      etaMs: nonNegativeDouble,
      elapsedMs: nonNegativeDouble,
    },
    { requiredKeys: ['jobId', 'model', 'where', 'stage', 'fraction', 'elapsedMs'] },
  )
  .map((event) => (event.stage === 'done' ? { ...event, fraction: 1 } : event));

/** One arbitrary per message type, keyed by type, so tests can cover each by name. */
export const messageArbs: { readonly [K in Message['type']]: fc.Arbitrary<Message> } = {
  hello: fc.record(
    {
      type: fc.constant('hello' as const),
      protocolVersion: fc.integer({ min: 0, max: 65535 }),
      client: fc.record({ name: shortText, version: shortText }),
      apiKey: shortText,
    },
    { requiredKeys: ['type', 'protocolVersion', 'client'] },
  ),
  warm: fc.record(
    { type: fc.constant('warm' as const), model: shortText, version: shortText },
    { requiredKeys: ['type', 'model'] },
  ),
  infer: fc.record(
    {
      type: fc.constant('infer' as const),
      id: shortText,
      model: shortText,
      version: shortText,
      inputs: tensorMapArb,
      outputs: fc.array(shortText, { maxLength: 4 }),
      priority: fc.integer({ min: 0, max: 10 }),
      deadlineMs: nonNegativeDouble,
      progress: fc.boolean(),
    },
    { requiredKeys: ['type', 'id', 'model', 'inputs'] },
  ),
  cancel: fc.record({ type: fc.constant('cancel' as const), id: shortText }),
  resume: fc.record({
    type: fc.constant('resume' as const),
    ids: fc.array(shortText, { maxLength: 8 }),
  }),
  ping: fc.record({ type: fc.constant('ping' as const), nonce: nonNegativeDouble }),
  welcome: fc.record({
    type: fc.constant('welcome' as const),
    protocolVersion: fc.integer({ min: 0, max: 65535 }),
    server: fc.record({ name: shortText, version: shortText }),
    models: fc.array(modelStatusArb, { maxLength: 4 }),
    limits: fc.record({
      maxPayloadBytes: safeInt,
      maxQueue: safeInt,
      heartbeatIntervalMs: safeInt,
      resultTtlMs: safeInt,
    }),
  }),
  progress: fc.record({ type: fc.constant('progress' as const), event: progressEventArb }),
  result: fc.record({
    type: fc.constant('result' as const),
    id: shortText,
    model: shortText,
    version: shortText,
    outputs: tensorMapArb,
    backend: fc.constantFrom('wasm' as const, 'webgpu' as const, 'cpu' as const, 'cuda' as const),
    coldStart: fc.boolean(),
    timings: fc.record({
      queueMs: nonNegativeDouble,
      loadMs: nonNegativeDouble,
      warmupMs: nonNegativeDouble,
      runMs: nonNegativeDouble,
      totalMs: nonNegativeDouble,
    }),
  }),
  error: fc.record(
    {
      type: fc.constant('error' as const),
      id: fc.option(shortText, { nil: null }),
      code: fc.constantFrom(...ERROR_CODE_LIST),
      message: anyText,
      retryable: fc.boolean(),
      retryAfterMs: nonNegativeDouble,
    },
    { requiredKeys: ['type', 'id', 'code', 'message', 'retryable'] },
  ),
  model: fc.record({ type: fc.constant('model' as const), model: modelStatusArb }),
  pong: fc.record({ type: fc.constant('pong' as const), nonce: nonNegativeDouble }),
};

/** Any message of either direction. */
export const messageArb: fc.Arbitrary<Message> = fc.oneof(...Object.values(messageArbs));
