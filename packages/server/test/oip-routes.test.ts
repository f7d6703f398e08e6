// The Open Inference Protocol v2 routes, driven the way KServe and Triton clients drive them:
// health, server and model metadata, readiness, and inference with JSON data and with Triton's
// binary-data extension, checked against onnxruntime-node run directly on the same files; and
// every refused request counted once in /metrics by code.

import { readFileSync } from 'node:fs';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_PRIORITY,
  PRIORITY_MAX,
  PRIORITY_MIN,
  ZERO_COPY_MIN_BYTES,
  toFloat16Bits,
} from '@tandem/shared';
import { fromTritonPriority } from '../src/oip-routes.js';
import { createServer, hashApiKey, type TandemServer } from '@tandem/server';
import {
  buildMlpClassifier,
  buildModel,
  realModelPath,
  writeModelFile,
  type MlpClassifier,
} from '@tandem/test-support';
import {
  bytesOf,
  decodeBytesTensor,
  decodeInferResponse,
  encodeBytesTensor,
  encodeInferRequest,
  float32Of,
  int64Of,
  type ClientRequest,
} from './oip-client.js';
import {
  buildIdentityModel,
  buildSlowModel,
  tempDir,
  writeModelConfig,
} from './server-fixtures.js';
import { Job as JobClass, type Job } from '../src/job.js';
import { metricValue } from './fixtures.js';

const FEATURES = 4;
/** A model (and version) name of 128 characters: the longest the repository takes. */
const LONG_NAME = `long-${'n'.repeat(123)}`;
const X = [0.5, -1, 2, 0.25, 3, 1.5, -0.75, 0, -2, 0.125, 1, 4];
const ROWS = X.length / FEATURES;

let server: TandemServer;
let mlp: MlpClassifier;
let reference: ort.InferenceSession;
let removeDir: () => void;

beforeAll(async () => {
  const { dir, remove } = tempDir('oip');
  removeDir = remove;
  // Two versions: requests without a version get the latest (2).
  await writeModelFile(
    dir,
    'mlp',
    1,
    buildMlpClassifier({ features: FEATURES, hidden: 8, classes: 3, seed: 7 }).bytes,
  );
  mlp = buildMlpClassifier({ features: FEATURES, hidden: 16, classes: 5, seed: 11 });
  await writeModelFile(dir, 'mlp', 2, mlp.bytes);
  // Run by one test only: its first request is a cold start.
  await writeModelFile(
    dir,
    'fresh',
    1,
    buildMlpClassifier({ features: FEATURES, hidden: 8, classes: 3, seed: 3 }).bytes,
  );
  await writeModelFile(dir, LONG_NAME, LONG_NAME, mlp.bytes);
  await writeModelFile(dir, 'dtypes', 1, buildIdentityModel());
  await writeModelFile(
    dir,
    'echo',
    1,
    buildModel({
      inputs: [{ name: 'text', dtype: 'string', dims: ['n'] }],
      outputs: [{ name: 'same', dtype: 'string', dims: ['n'] }],
      nodes: [{ opType: 'Identity', inputs: ['text'], outputs: ['same'] }],
    }),
  );
  await writeModelFile(dir, 'vad', 1, readFileSync(realModelPath('silero-vad')));
  await writeModelFile(dir, 'broken', 1, new TextEncoder().encode('this is not an onnx model'));
  server = await createServer({ modelsDir: dir, catalog: false });
  reference = await ort.InferenceSession.create(mlp.bytes);
});

afterAll(async () => {
  await server.close();
  await reference.release();
  removeDir();
});

/** What onnxruntime-node itself answers for the MLP on X. */
async function referenceMlp(): Promise<{ probs: Float32Array; label: BigInt64Array }> {
  const out = await reference.run({
    x: new ort.Tensor('float32', Float32Array.from(X), [ROWS, FEATURES]),
  });
  return {
    probs: out.probs!.data as Float32Array,
    label: out.label!.data as BigInt64Array,
  };
}

async function infer(model: string, request: ClientRequest, version?: string) {
  const { body, headers } = encodeInferRequest(request);
  const path = version === undefined ? model : `${model}/versions/${version}`;
  return server.fastify.inject({
    method: 'POST',
    url: `/v2/models/${path}/infer`,
    payload: body,
    headers,
  });
}

function decoded(response: Awaited<ReturnType<typeof infer>>) {
  expect(response.statusCode).toBe(200);
  return decodeInferResponse(
    response.rawPayload,
    response.headers['inference-header-content-length'],
  );
}

/** Status and code of an error response. */
function errorOf(response: Awaited<ReturnType<typeof infer>>): { status: number; code: string } {
  const body = response.json<{ error: unknown; code: string; retryable: unknown }>();
  expect(typeof body.error).toBe('string');
  expect(typeof body.retryable).toBe('boolean');
  return { status: response.statusCode, code: body.code };
}

const mlpInput = { name: 'x', datatype: 'FP32', shape: [ROWS, FEATURES], data: X };

describe('health and server metadata', () => {
  it('GET /v2 names the server and the binary tensor extension', async () => {
    const response = await server.fastify.inject({ url: '/v2' });
    expect(response.statusCode).toBe(200);
    const body = response.json<{ name: string; version: string; extensions: string[] }>();
    expect(body.name).toBe('@tandem/server');
    expect(typeof body.version).toBe('string');
    expect(body.extensions).toContain('binary_tensor_data');
  });

  it('answers live and ready with 200', async () => {
    for (const url of ['/v2/health/live', '/v2/health/ready']) {
      const response = await server.fastify.inject({ url });
      expect(response.statusCode, url).toBe(200);
    }
  });
});

describe('model metadata and readiness', () => {
  it('describes inputs and outputs with OIP datatypes and -1 for dynamic dims', async () => {
    const response = await server.fastify.inject({ url: '/v2/models/mlp' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      name: 'mlp',
      versions: ['1', '2'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, FEATURES] }],
      outputs: [
        { name: 'probs', datatype: 'FP32', shape: [-1, 5] },
        { name: 'label', datatype: 'INT64', shape: [-1] },
      ],
    });
  });

  it('describes an explicit version, and 404s an unknown one', async () => {
    const v1 = await server.fastify.inject({ url: '/v2/models/mlp/versions/1' });
    expect(v1.statusCode).toBe(200);
    expect(v1.json<{ outputs: { shape: number[] }[] }>().outputs[0]!.shape).toEqual([-1, 3]);
    const missing = await server.fastify.inject({ url: '/v2/models/mlp/versions/9' });
    expect(errorOf(missing)).toEqual({ status: 404, code: 'E_MODEL_NOT_FOUND' });
  });

  it('gives a scalar input the empty shape (Silero VAD `sr`)', async () => {
    const response = await server.fastify.inject({ url: '/v2/models/vad' });
    const inputs = response.json<{
      inputs: { name: string; datatype: string; shape: number[] }[];
    }>().inputs;
    expect(inputs.find((input) => input.name === 'sr')).toEqual({
      name: 'sr',
      datatype: 'INT64',
      shape: [],
    });
    expect(inputs.find((input) => input.name === 'state')).toEqual({
      name: 'state',
      datatype: 'FP32',
      shape: [2, -1, 128],
    });
  });

  it('reports a servable model ready and a corrupt one not ready', async () => {
    const ready = await server.fastify.inject({ url: '/v2/models/mlp/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ name: 'mlp', ready: true });
    const versioned = await server.fastify.inject({ url: '/v2/models/mlp/versions/1/ready' });
    expect(versioned.statusCode).toBe(200);
    const broken = await server.fastify.inject({ url: '/v2/models/broken/ready' });
    expect(broken.statusCode).toBe(503);
    expect(broken.json()).toEqual({ name: 'broken', ready: false });
  });

  it('answers metadata of a model whose file cannot be read with 500 E_MODEL_LOAD_FAILED', async () => {
    const response = await server.fastify.inject({ url: '/v2/models/broken' });
    expect(errorOf(response)).toEqual({ status: 500, code: 'E_MODEL_LOAD_FAILED' });
  });

  it('404s an unknown model on every model route', async () => {
    for (const url of ['/v2/models/nope', '/v2/models/nope/ready', '/v2/models/nope/versions/1']) {
      const response = await server.fastify.inject({ url });
      expect(errorOf(response), url).toEqual({ status: 404, code: 'E_MODEL_NOT_FOUND' });
    }
    const response = await infer('nope', { inputs: [mlpInput] });
    expect(errorOf(response)).toEqual({ status: 404, code: 'E_MODEL_NOT_FOUND' });
  });
});

describe('request URLs', () => {
  it('serves a model and version named with 128 characters, the longest a repository takes', async () => {
    const response = await infer(LONG_NAME, { inputs: [mlpInput] }, LONG_NAME);
    expect(decoded(response).json).toMatchObject({
      model_name: LONG_NAME,
      model_version: LONG_NAME,
    });
    const ready = await server.fastify.inject({ url: `/v2/models/${LONG_NAME}/ready` });
    expect(ready.statusCode).toBe(200);
  });

  it('answers a path the router cannot decode, or a name past any model, with 400 E_INVALID_ARGUMENT', async () => {
    for (const url of [
      '/v2/models/%ZZ/infer',
      '/v2/models/%E0%A4%A/ready',
      '/v2/models/mlp/versions/%/infer',
      `/v2/models/${'m'.repeat(2000)}/infer`,
      `/v2/models/mlp/versions/${'9'.repeat(2000)}`,
    ]) {
      const response = url.endsWith('/infer')
        ? await server.fastify.inject({ method: 'POST', url, payload: '{}' })
        : await server.fastify.inject({ url });
      expect(errorOf(response), url).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    }
  });
});

describe('inference with JSON data', () => {
  it('answers what onnxruntime-node answers on the same file (probs FP32, label INT64)', async () => {
    const expected = await referenceMlp();
    const response = await infer('mlp', { id: 'req-42', inputs: [mlpInput] });
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const { json, outputs } = decoded(response);
    expect(json.model_name).toBe('mlp');
    expect(json.model_version).toBe('2');
    expect(json.id).toBe('req-42');
    expect(outputs.probs).toMatchObject({ datatype: 'FP32', shape: [ROWS, 5] });
    // Both sides are onnxruntime on the same file and float32 survives JSON exactly.
    expect(outputs.probs!.data).toEqual(Array.from(expected.probs));
    expect(outputs.label).toMatchObject({ datatype: 'INT64', shape: [ROWS] });
    expect(outputs.label!.data).toEqual(Array.from(expected.label, Number));
  });

  it('accepts nested (natural-shape) data as well as flat data', async () => {
    const nested = [0, 1, 2].map((row) => X.slice(row * FEATURES, (row + 1) * FEATURES));
    const flat = decoded(await infer('mlp', { inputs: [mlpInput] }));
    const natural = decoded(await infer('mlp', { inputs: [{ ...mlpInput, data: nested }] }));
    expect(natural.outputs.probs!.data).toEqual(flat.outputs.probs!.data);
  });

  it('serves an explicit version', async () => {
    const { json, outputs } = decoded(
      await infer('mlp', { inputs: [mlpInput], outputs: [{ name: 'probs' }] }, '1'),
    );
    expect(json.model_version).toBe('1');
    expect(outputs.probs!.shape).toEqual([ROWS, 3]);
  });

  it('returns only the requested outputs', async () => {
    const expected = await referenceMlp();
    const { json, outputs } = decoded(
      await infer('mlp', { inputs: [mlpInput], outputs: [{ name: 'label' }] }),
    );
    expect(json.outputs.map((output) => output.name)).toEqual(['label']);
    expect(outputs.label!.data).toEqual(Array.from(expected.label, Number));
  });

  it('runs a real multi-input model with a scalar INT64 input (Silero VAD)', async () => {
    const samples = Float32Array.from({ length: 512 }, (_, i) => Math.sin(i / 5) * 0.3);
    const state = new Float32Array(2 * 128);
    const session = await ort.InferenceSession.create(realModelPath('silero-vad'));
    const expected = await session.run({
      input: new ort.Tensor('float32', samples, [1, 512]),
      state: new ort.Tensor('float32', state, [2, 1, 128]),
      sr: new ort.Tensor('int64', new BigInt64Array([16000n]), []),
    });
    await session.release();
    const { outputs } = decoded(
      await infer('vad', {
        inputs: [
          { name: 'input', datatype: 'FP32', shape: [1, 512], data: Array.from(samples) },
          { name: 'state', datatype: 'FP32', shape: [2, 1, 128], data: Array.from(state) },
          { name: 'sr', datatype: 'INT64', shape: [], data: [16000] },
        ],
      }),
    );
    expect(outputs.output!.data).toEqual(Array.from(expected.output!.data as Float32Array));
    expect(outputs.stateN!.shape).toEqual([2, 1, 128]);
    expect(outputs.stateN!.data).toEqual(Array.from(expected.stateN!.data as Float32Array));
  });
});

describe("Tandem's response parameters", () => {
  it('name the backend that ran the job, say whether it was a cold start, and give its timings', async () => {
    const first = decoded(await infer('fresh', { inputs: [mlpInput] })).json.parameters;
    const second = decoded(await infer('fresh', { inputs: [mlpInput] })).json.parameters;
    expect(first).toMatchObject({ tandem_backend: 'cpu', tandem_cold_start: true });
    expect(second).toMatchObject({ tandem_backend: 'cpu', tandem_cold_start: false });
    for (const parameters of [first, second]) {
      for (const stage of ['queue', 'load', 'warmup', 'run', 'total']) {
        const ms = parameters?.[`tandem_${stage}_ms`];
        expect(typeof ms).toBe('number');
        expect(ms).toBeGreaterThanOrEqual(0);
      }
    }
    expect(first?.tandem_load_ms).toBeGreaterThan(0);
    expect(second?.tandem_load_ms).toBe(0);
    // docs/protocol.md has a row for each.
    const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
    for (const name of Object.keys(first ?? {})) expect(doc).toContain(`| \`${name}\``);
  });
});

describe('inference of jobs run as a group', () => {
  it('answers each of many concurrent requests with its own outputs, read from the frame the worker wrote', async () => {
    const framed = vi.spyOn(JobClass.prototype, 'succeedWithFrame');
    try {
      const texts = Array.from({ length: 64 }, (_, i) => [`t${i}`, `é${i}`]);
      const responses = await Promise.all(
        texts.map((data) =>
          infer('echo', {
            inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], data }],
          }),
        ),
      );
      responses.forEach((response, i) => {
        expect(decoded(response).outputs.same).toMatchObject({
          datatype: 'BYTES',
          shape: [2],
          data: texts[i],
        });
      });
      // Some of them waited together and ran as a group: their results came as frames.
      expect(framed).toHaveBeenCalled();
    } finally {
      framed.mockRestore();
    }
  });
});

describe('inference with the binary data extension', () => {
  const binaryX = bytesOf(Float32Array.from(X));
  const binaryInput = { name: 'x', datatype: 'FP32', shape: [ROWS, FEATURES], binary: binaryX };

  it('takes binary inputs and returns binary outputs requested with binary_data', async () => {
    const expected = await referenceMlp();
    const response = await infer('mlp', {
      inputs: [binaryInput],
      outputs: [
        { name: 'probs', binary: true },
        { name: 'label', binary: true },
      ],
    });
    expect(response.headers['content-type']).toBe('application/octet-stream');
    const headerLength = Number(response.headers['inference-header-content-length']);
    expect(headerLength).toBeGreaterThan(0);
    const { outputs } = decoded(response);
    expect(outputs.probs!.parameters).toEqual({ binary_data_size: ROWS * 5 * 4 });
    expect(outputs.probs!.data).toBeUndefined();
    expect(float32Of(outputs.probs!.bytes!)).toEqual(expected.probs);
    expect(outputs.label).toMatchObject({ datatype: 'INT64', shape: [ROWS] });
    expect(int64Of(outputs.label!.bytes!)).toEqual(expected.label);
  });

  it('sends a binary output of over 64 KiB from its own memory, equal to onnxruntime-node', async () => {
    // 4,000 rows: probs is 80,000 bytes, past ZERO_COPY_MIN_BYTES, so the body is streamed.
    const rows = 4000;
    const x = Float32Array.from({ length: rows * FEATURES }, (_, i) => ((i % 17) - 8) / 4);
    const direct = await reference.run({ x: new ort.Tensor('float32', x, [rows, FEATURES]) });
    const response = await infer('mlp', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, FEATURES], binary: bytesOf(x) }],
      parameters: { binary_data_output: true },
    });
    expect(response.headers['content-length']).toBe(String(response.rawPayload.byteLength));
    const { outputs } = decoded(response);
    expect(outputs.probs!.parameters).toEqual({ binary_data_size: rows * 5 * 4 });
    expect(rows * 5 * 4).toBeGreaterThan(ZERO_COPY_MIN_BYTES);
    expect(float32Of(outputs.probs!.bytes!)).toEqual(direct.probs!.data);
    expect(int64Of(outputs.label!.bytes!)).toEqual(direct.label!.data);
  });

  it('returns every output in binary for binary_data_output (what tritonclient sends by default)', async () => {
    const expected = await referenceMlp();
    const { outputs } = decoded(
      await infer('mlp', { inputs: [binaryInput], parameters: { binary_data_output: true } }),
    );
    expect(float32Of(outputs.probs!.bytes!)).toEqual(expected.probs);
    expect(int64Of(outputs.label!.bytes!)).toEqual(expected.label);
  });

  it('lets binary_data on an output override binary_data_output', async () => {
    const expected = await referenceMlp();
    const { outputs } = decoded(
      await infer('mlp', {
        inputs: [binaryInput],
        parameters: { binary_data_output: true },
        outputs: [{ name: 'probs', binary: false }, { name: 'label' }],
      }),
    );
    expect(outputs.probs!.data).toEqual(Array.from(expected.probs));
    expect(outputs.probs!.bytes).toBeUndefined();
    expect(int64Of(outputs.label!.bytes!)).toEqual(expected.label);
  });

  it('mixes JSON and binary inputs, in input order', async () => {
    const { outputs } = decoded(
      await infer('dtypes', {
        inputs: [
          { name: 's', datatype: 'BYTES', shape: [2], binary: encodeBytesTensor(['ab', 'çé']) },
          { name: 'b', datatype: 'BOOL', shape: [3], data: [true, false, true] },
          { name: 'h', datatype: 'FP16', shape: [1], binary: bytesOf(new Uint16Array([0x3c00])) },
          { name: 'i', datatype: 'INT64', shape: [1], binary: bytesOf(new BigInt64Array([-5n])) },
          { name: 'u', datatype: 'UINT64', shape: [1], data: [7] },
          { name: 'i8', datatype: 'INT8', shape: [2], binary: bytesOf(new Int8Array([-128, 127])) },
          { name: 'u8', datatype: 'UINT8', shape: [1], data: [255] },
          { name: 'd', datatype: 'FP64', shape: [1], binary: bytesOf(new Float64Array([0.1])) },
        ],
        parameters: { binary_data_output: true },
      }),
    );
    expect(decodeBytesTensor(outputs.s_out!.bytes!)).toEqual(['ab', 'çé']);
    expect([...outputs.b_out!.bytes!]).toEqual([1, 0, 1]);
    expect(outputs.b_out!.datatype).toBe('BOOL');
    expect([...new Uint16Array(bytesOf(outputs.h_out!.bytes!).buffer)]).toEqual([0x3c00]);
    expect(int64Of(outputs.i_out!.bytes!)).toEqual(new BigInt64Array([-5n]));
    expect([...new Int8Array(bytesOf(outputs.i8_out!.bytes!).buffer)]).toEqual([-128, 127]);
    expect(new Float64Array(bytesOf(outputs.d_out!.bytes!).buffer)[0]).toBe(0.1);
  });

  it('takes a raw binary request (Inference-Header-Content-Length: 0) and answers in binary', async () => {
    const expected = await referenceMlp();
    const raw = (model: string, payload: Uint8Array) =>
      server.fastify.inject({
        method: 'POST',
        url: `/v2/models/${model}/infer`,
        payload: Buffer.from(payload),
        headers: {
          'content-type': 'application/octet-stream',
          'inference-header-content-length': '0',
        },
      });
    // Twelve floats fill x [batch, 4] with batch 3.
    const { outputs } = decoded(await raw('mlp', binaryX));
    expect(outputs.probs!.shape).toEqual([ROWS, 5]);
    expect(float32Of(outputs.probs!.bytes!)).toEqual(expected.probs);
    expect(int64Of(outputs.label!.bytes!)).toEqual(expected.label);
    // A BYTES input is one element: the whole body.
    const echo = decoded(await raw('echo', new TextEncoder().encode('héllo wörld')));
    expect(echo.outputs.same!.shape).toEqual([1]);
    expect(decodeBytesTensor(echo.outputs.same!.bytes!)).toEqual(['héllo wörld']);
    // Bytes that do not fill whole rows, and models with several inputs, cannot be raw.
    expect(errorOf(await raw('mlp', binaryX.subarray(0, 20)))).toEqual({
      status: 400,
      code: 'E_INPUT_SHAPE',
    });
    // Neither can an empty body (it ran zero rows) nor less than one row (whose message spoke of
    // the derived shape, "[0, 4] need 0"): the message gives the bytes sent and the row's bytes.
    for (const bytes of [0, 5]) {
      const response = await raw('mlp', binaryX.subarray(0, bytes));
      expect(errorOf(response)).toEqual({ status: 400, code: 'E_INPUT_SHAPE' });
      const { error } = response.json<{ error: string }>();
      expect(error).toContain(`got ${bytes} bytes`);
      expect(error).toContain(`multiple of ${4 * FEATURES} bytes`);
    }
    expect(errorOf(await raw('dtypes', binaryX))).toEqual({
      status: 400,
      code: 'E_INVALID_ARGUMENT',
    });
  });

  it('accepts a binary body with no Content-Type at all, as tritonclient sends it', async () => {
    const { body, headers } = encodeInferRequest({ inputs: [binaryInput] });
    expect(headers['content-type']).toBeUndefined();
    const response = await server.fastify.inject({
      method: 'POST',
      url: '/v2/models/mlp/infer',
      payload: body,
      headers,
    });
    expect(response.statusCode).toBe(200);
  });
});

describe('datatype conversions in JSON', () => {
  const jsonInputs = [
    { name: 's', datatype: 'BYTES', shape: [3], data: ['hello', '', 'naïve ☃ 😀'] },
    { name: 'b', datatype: 'BOOL', shape: [2], data: [true, false] },
    { name: 'h', datatype: 'FP16', shape: [4], data: [1, -2.5, 0.0999755859375, 65504] },
    { name: 'i', datatype: 'INT64', shape: [4], data: [-3, 0, 2 ** 40, -(2 ** 52)] },
    { name: 'u', datatype: 'UINT64', shape: [1], data: [42] },
    { name: 'i8', datatype: 'INT8', shape: [2], data: [-128, 127] },
    { name: 'u8', datatype: 'UINT8', shape: [2], data: [0, 255] },
    { name: 'd', datatype: 'FP64', shape: [1], data: [Math.PI] },
  ];

  it('round-trips BYTES, BOOL, FP16, INT64 and the other integer types', async () => {
    const { outputs } = decoded(await infer('dtypes', { inputs: jsonInputs }));
    expect(outputs.s_out).toMatchObject({ datatype: 'BYTES', shape: [3] });
    expect(outputs.s_out!.data).toEqual(['hello', '', 'naïve ☃ 😀']);
    expect(outputs.b_out).toMatchObject({ datatype: 'BOOL', data: [true, false] });
    expect(outputs.h_out!.datatype).toBe('FP16');
    // FP16 values come back as the nearest half: 0.0999755859375 is exactly representable.
    expect(outputs.h_out!.data).toEqual([1, -2.5, 0.0999755859375, 65504]);
    expect(outputs.i_out).toMatchObject({ datatype: 'INT64', shape: [4] });
    expect(outputs.i_out!.data).toEqual([-3, 0, 2 ** 40, -(2 ** 52)]);
    expect(outputs.u_out).toMatchObject({ datatype: 'UINT64', data: [42] });
    expect(outputs.i8_out!.data).toEqual([-128, 127]);
    expect(outputs.u8_out!.data).toEqual([0, 255]);
    expect(outputs.d_out!.data).toEqual([Math.PI]);
  });

  it('rounds FP16 JSON values to the nearest half', async () => {
    const inputs = jsonInputs.map((input) =>
      input.name === 'h' ? { ...input, shape: [1], data: [0.1] } : input,
    );
    const { outputs } = decoded(await infer('dtypes', { inputs }));
    const half = toFloat16Bits(0.1);
    expect(half).toBe(0x2e66);
    expect(outputs.h_out!.data).toEqual([0.0999755859375]);
  });

  it('keeps INT64 and UINT64 values beyond 2^53 exact (strings in, exact integers out)', async () => {
    const big = '9007199254740993'; // 2^53 + 1: not a double
    const inputs = jsonInputs.map((input) =>
      input.name === 'i'
        ? { ...input, shape: [2], data: [big, '-9223372036854775808'] }
        : input.name === 'u'
          ? { ...input, data: ['18446744073709551615'] }
          : input,
    );
    const response = await infer('dtypes', { inputs });
    expect(response.statusCode).toBe(200);
    // JSON.parse would round these, so look at the JSON text itself.
    expect(response.body).toContain(`"data":[${big},-9223372036854775808]`);
    expect(response.body).toContain('"data":[18446744073709551615]');
  });

  it('rejects JSON values that do not fit the datatype with E_INPUT_DTYPE', async () => {
    const cases: [string, unknown[]][] = [
      ['i8', [128]],
      ['i8', [1.5]],
      ['u8', [-1]],
      ['u8', [256]],
      ['b', [1]],
      ['s', [5]],
      // A lone surrogate is no Unicode text: it ran as U+FFFD, a string never sent.
      ['s', ['\ud800']],
      ['s', ['ok', 'x\udc00']],
      ['h', ['1']],
      ['d', [true]],
      ['u', [-1]],
      ['u', ['18446744073709551616']],
      ['i', ['9223372036854775808']],
      // A JSON number past 2^53 has already been rounded by the parser: refuse it.
      ['i', [2 ** 60]],
    ];
    for (const [name, data] of cases) {
      const inputs = jsonInputs.map((input) =>
        input.name === name ? { ...input, shape: [data.length], data } : input,
      );
      const response = await infer('dtypes', { inputs });
      expect(errorOf(response), `${name} ${JSON.stringify(data)}`).toEqual({
        status: 400,
        code: 'E_INPUT_DTYPE',
      });
    }
  });
});

describe('errors', () => {
  it('answers a datatype the model does not take with 400 E_INPUT_DTYPE', async () => {
    const response = await infer('mlp', {
      inputs: [{ ...mlpInput, datatype: 'FP64' }],
    });
    expect(errorOf(response)).toEqual({ status: 400, code: 'E_INPUT_DTYPE' });
  });

  it('answers wrong dims, wrong rank and a wrong element count with 400 E_INPUT_SHAPE', async () => {
    const cases = [
      { ...mlpInput, shape: [3, 5], data: [...X, 1, 2, 3] },
      { ...mlpInput, shape: [12] },
      { ...mlpInput, shape: [ROWS, FEATURES], data: X.slice(1) },
      { name: 'x', datatype: 'FP32', shape: [ROWS, FEATURES], binary: new Uint8Array(12) },
    ];
    for (const input of cases) {
      const response = await infer('mlp', { inputs: [input] });
      expect(errorOf(response), JSON.stringify(input.shape)).toEqual({
        status: 400,
        code: 'E_INPUT_SHAPE',
      });
    }
  });

  it('answers a missing or unknown input with 400 E_INPUT_MISSING', async () => {
    const unknown = await infer('mlp', { inputs: [{ ...mlpInput, name: 'y' }] });
    expect(errorOf(unknown)).toEqual({ status: 400, code: 'E_INPUT_MISSING' });
    const missing = await infer('vad', {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1], data: [0] }],
    });
    expect(errorOf(missing)).toEqual({ status: 400, code: 'E_INPUT_MISSING' });
  });

  it('answers an unknown requested output with 400 E_OUTPUT_NOT_FOUND', async () => {
    const response = await infer('mlp', { inputs: [mlpInput], outputs: [{ name: 'logits' }] });
    expect(errorOf(response)).toEqual({ status: 400, code: 'E_OUTPUT_NOT_FOUND' });
  });

  it('reads priority as Triton does: 0 default, 1 highest, larger lower', () => {
    expect(fromTritonPriority(undefined)).toBe(DEFAULT_PRIORITY);
    expect(fromTritonPriority(0)).toBe(DEFAULT_PRIORITY);
    expect(fromTritonPriority(1)).toBe(PRIORITY_MAX);
    expect(fromTritonPriority(2)).toBeLessThan(fromTritonPriority(1));
    expect(fromTritonPriority(1000)).toBe(PRIORITY_MIN + 1);
  });

  it('answers malformed requests with 400 E_INVALID_ARGUMENT', async () => {
    const bodies = [
      '{"inputs": [',
      '',
      '[]',
      '{}',
      '{"inputs": {}}',
      '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FLOAT", "data": [1, 2, 3, 4]}]}',
      '{"inputs": [{"name": "x", "shape": [-1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
      '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},' +
        '{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
      '{"inputs": [], "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]}',
      '{"inputs": [], "parameters": {"binary_data_output": 1}}',
      '{"inputs": [], "parameters": {"priority": -1}}',
      '{"inputs": [], "parameters": {"timeout": -1}}',
    ];
    for (const payload of bodies) {
      const response = await server.fastify.inject({
        method: 'POST',
        url: '/v2/models/mlp/infer',
        payload,
        headers: { 'content-type': 'application/json' },
      });
      expect(errorOf(response), payload).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    }
  });

  it('answers binary sizes that do not add up with 400', async () => {
    const json = (size: number) =>
      Buffer.from(
        JSON.stringify({
          inputs: [
            {
              name: 'x',
              shape: [ROWS, FEATURES],
              datatype: 'FP32',
              parameters: { binary_data_size: size },
            },
          ],
        }),
      );
    const data = Buffer.from(bytesOf(Float32Array.from(X)));
    const send = (body: Buffer, headerLength: string | undefined) =>
      server.fastify.inject({
        method: 'POST',
        url: '/v2/models/mlp/infer',
        payload: body,
        headers:
          headerLength === undefined ? {} : { 'inference-header-content-length': headerLength },
      });
    const header = json(data.byteLength);
    const cases: [Buffer, string | undefined][] = [
      // binary_data_size runs past the body
      [
        Buffer.concat([json(data.byteLength + 4), data]),
        String(json(data.byteLength + 4).byteLength),
      ],
      // bytes after the last tensor that no input claims
      [Buffer.concat([header, data, Buffer.alloc(4)]), String(header.byteLength)],
      // the header length points past the body
      [Buffer.concat([header, data]), String(header.byteLength + data.byteLength + 1)],
      // the header length is not a number
      [Buffer.concat([header, data]), 'many'],
      // binary data without Inference-Header-Content-Length
      [Buffer.concat([header, data]), undefined],
      // the header length cuts the JSON short
      [Buffer.concat([header, data]), String(header.byteLength - 1)],
    ];
    for (const [body, headerLength] of cases) {
      const response = await send(body, headerLength);
      const { status, code } = errorOf(response);
      expect(status, `${headerLength}`).toBe(400);
      expect(['E_INVALID_ARGUMENT', 'E_INPUT_SHAPE']).toContain(code);
    }
    // Sizes that add up but do not match the shape: the tensor's bytes are wrong.
    const short = json(data.byteLength - 4);
    const response = await send(Buffer.concat([short, data.subarray(4)]), String(short.byteLength));
    expect(errorOf(response)).toEqual({ status: 400, code: 'E_INPUT_SHAPE' });
  });

  it('answers binary BOOL data other than 0 and 1 with 400 E_INVALID_ARGUMENT, naming the element', async () => {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'x', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } }],
      }),
    );
    const response = await server.fastify.inject({
      method: 'POST',
      url: '/v2/models/mlp/infer',
      payload: Buffer.concat([header, Buffer.from([1, 0, 7])]),
      headers: { 'inference-header-content-length': String(header.byteLength) },
    });
    expect(errorOf(response)).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    expect(response.json<{ error: string }>().error).toContain('BOOL element 2 is 7');
  });

  it('answers an input with both data and binary_data_size with 400 E_INVALID_ARGUMENT', async () => {
    // The binary bytes ran and the JSON values were dropped without a word.
    const binaryX = Buffer.from(bytesOf(Float32Array.from(X)));
    const input = {
      name: 'x',
      shape: [ROWS, FEATURES],
      datatype: 'FP32',
      parameters: { binary_data_size: binaryX.byteLength },
    };
    const send = (data: unknown) => {
      const header = Buffer.from(JSON.stringify({ inputs: [{ ...input, data }] }));
      return server.fastify.inject({
        method: 'POST',
        url: '/v2/models/mlp/infer',
        payload: Buffer.concat([header, binaryX]),
        headers: { 'inference-header-content-length': String(header.byteLength) },
      });
    };
    expect(errorOf(await send(X))).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    expect(errorOf(await send([]))).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    // A null data is an absent one, as some clients write it.
    expect((await send(null)).statusCode).toBe(200);
  });

  it('answers binary BYTES that are not UTF-8 with 400 E_INVALID_ARGUMENT, in either binary form', async () => {
    // Replaced by U+FFFD, they ran as a different string than the one sent.
    const notText = Buffer.from([0x68, 0xff, 0xfe, 0x69]);
    const elements = Buffer.concat([encodeBytesTensor(['ok']), encodeBytesTensor(['xxxx'])]);
    notText.copy(elements, elements.byteLength - 4);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'text',
            shape: [2],
            datatype: 'BYTES',
            parameters: { binary_data_size: elements.byteLength },
          },
        ],
      }),
    );
    const extension = await server.fastify.inject({
      method: 'POST',
      url: '/v2/models/echo/infer',
      payload: Buffer.concat([header, elements]),
      headers: { 'inference-header-content-length': String(header.byteLength) },
    });
    expect(errorOf(extension)).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    expect(extension.json<{ error: string }>().error).toContain('BYTES element 1');
    const raw = await server.fastify.inject({
      method: 'POST',
      url: '/v2/models/echo/infer',
      payload: notText,
      headers: { 'inference-header-content-length': '0' },
    });
    expect(errorOf(raw)).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    // A byte order mark is text, and stays: nothing is stripped from a string that is sent.
    const bom = await server.fastify.inject({
      method: 'POST',
      url: '/v2/models/echo/infer',
      payload: Buffer.from('\ufeffhi', 'utf8'),
      headers: { 'inference-header-content-length': '0' },
    });
    expect(decodeBytesTensor(decoded(bom).outputs.same!.bytes!)).toEqual(['\ufeffhi']);
  });

  it('reads Inference-Header-Content-Length as decimal digits only', async () => {
    const binaryX = bytesOf(Float32Array.from(X));
    const { body } = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [ROWS, FEATURES], binary: binaryX }],
    });
    const jsonLength = body.byteLength - binaryX.byteLength;
    const send = (payload: Uint8Array, headerLength: string) =>
      server.fastify.inject({
        method: 'POST',
        url: '/v2/models/mlp/infer',
        payload: Buffer.from(payload),
        headers: { 'inference-header-content-length': headerLength },
      });
    // Number() read these as lengths the client never wrote: hex and exponents were taken, and an
    // empty header was a zero-length JSON ("not valid JSON").
    for (const value of [`0x${jsonLength.toString(16)}`, `${jsonLength / 2}e1`, '', '-0', '1.0']) {
      expect(errorOf(await send(body, value)), value).toEqual({
        status: 400,
        code: 'E_INVALID_ARGUMENT',
      });
    }
    expect((await send(body, ` ${jsonLength} `)).statusCode).toBe(200);
    // Zero written any way is Triton's raw binary request.
    expect((await send(binaryX, '00')).statusCode).toBe(200);
  });

  it('answers a model that cannot load with 500 E_MODEL_LOAD_FAILED and keeps serving others', async () => {
    const response = await infer('broken', { inputs: [mlpInput] });
    expect(errorOf(response)).toEqual({ status: 500, code: 'E_MODEL_LOAD_FAILED' });
    expect((await infer('mlp', { inputs: [mlpInput] })).statusCode).toBe(200);
    expect((await server.fastify.inject({ url: '/v2/health/ready' })).statusCode).toBe(200);
  });
});

describe('limits', () => {
  let limited: TandemServer;
  let removeLimitedDir: () => void;

  beforeAll(async () => {
    const { dir, remove } = tempDir('oip-limits');
    removeLimitedDir = remove;
    await writeModelFile(dir, 'mlp', 1, mlp.bytes);
    await writeModelFile(dir, 'slow', 1, buildSlowModel());
    writeModelConfig(dir, 'slow', 1, { intraOpNumThreads: 1 });
    limited = await createServer({
      modelsDir: dir,
      catalog: false,
      maxPayloadBytes: 2048,
      maxQueue: 1,
    });
  });

  afterAll(async () => {
    await limited.close();
    removeLimitedDir();
  });

  it('answers a body over maxPayloadBytes with 413 E_PAYLOAD_TOO_LARGE', async () => {
    const data = Array.from({ length: 600 }, (_, i) => i / 7);
    const json = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [150, FEATURES], data }],
    });
    const binary = encodeInferRequest({
      inputs: [
        {
          name: 'x',
          datatype: 'FP32',
          shape: [150, FEATURES],
          binary: bytesOf(Float32Array.from(data)),
        },
      ],
    });
    for (const { body, headers } of [json, binary]) {
      expect(body.byteLength).toBeGreaterThan(2048);
      const response = await limited.fastify.inject({
        method: 'POST',
        url: '/v2/models/mlp/infer',
        payload: body,
        headers,
      });
      expect(errorOf(response)).toEqual({ status: 413, code: 'E_PAYLOAD_TOO_LARGE' });
    }
    // A body under the limit is fine.
    const small = encodeInferRequest({ inputs: [mlpInput] });
    const response = await limited.fastify.inject({
      method: 'POST',
      url: '/v2/models/mlp/infer',
      payload: small.body,
      headers: small.headers,
    });
    expect(response.statusCode).toBe(200);
  });

  it('answers past maxQueue with 503 E_BUSY and Retry-After, and still runs what it queued', async () => {
    // A cold slow model: the first job waits in the queue for the load, so with maxQueue 1 the
    // requests sent alongside it find the queue full.
    const { body, headers } = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [0] }],
    });
    const responses = await Promise.all(
      Array.from({ length: 4 }, () =>
        limited.fastify.inject({
          method: 'POST',
          url: '/v2/models/slow/infer',
          payload: body,
          headers,
        }),
      ),
    );
    const ok = responses.filter((response) => response.statusCode === 200);
    const busy = responses.filter((response) => response.statusCode !== 200);
    expect(ok).toHaveLength(1);
    expect(busy).toHaveLength(3);
    for (const response of busy) {
      expect(errorOf(response)).toEqual({ status: 503, code: 'E_BUSY' });
      const body = response.json<{ retryable: boolean; retryAfterMs: number }>();
      expect(body.retryable).toBe(true);
      expect(body.retryAfterMs).toBeGreaterThan(0);
      expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    const { outputs } = decodeInferResponse(ok[0]!.rawPayload, undefined);
    expect(outputs.y).toMatchObject({ datatype: 'FP32', shape: [], data: [0] });
  });

  it('answers a job that cannot finish within parameters.timeout (µs) with 504 E_DEADLINE_EXCEEDED', async () => {
    // One microsecond: far less than any run of the slow model, so it must never run late.
    const { body, headers } = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [0] }],
      parameters: { timeout: 1 },
    });
    const slowJobs = async (): Promise<number> =>
      metricValue((await limited.fastify.inject({ url: '/metrics' })).body, 'tandem_jobs_total', {
        model: 'slow',
      }) ?? 0;
    const before = await slowJobs();
    const response = await limited.fastify.inject({
      method: 'POST',
      url: '/v2/models/slow/infer',
      payload: body,
      headers,
    });
    expect(errorOf(response)).toEqual({ status: 504, code: 'E_DEADLINE_EXCEEDED' });
    // Never run: the slow model ran no job for it.
    expect(await slowJobs()).toBe(before);
  });
});

describe('API keys', () => {
  let keyed: TandemServer;
  let removeKeyedDir: () => void;

  beforeAll(async () => {
    const { dir, remove } = tempDir('oip-keys');
    removeKeyedDir = remove;
    await writeModelFile(dir, 'mlp', 1, mlp.bytes);
    keyed = await createServer({
      modelsDir: dir,
      catalog: false,
      apiKeys: [
        { id: 'alice', sha256: hashApiKey('alice-secret') },
        { id: 'bob', sha256: hashApiKey('bob-secret'), ratePerMinute: 2 },
      ],
    });
  });

  afterAll(async () => {
    await keyed.close();
    removeKeyedDir();
  });

  const send = (authorization: string | undefined, url = '/v2/models/mlp/infer') => {
    const { body, headers } = encodeInferRequest({ inputs: [mlpInput] });
    const withKey = authorization === undefined ? headers : { ...headers, authorization };
    return url.endsWith('/infer')
      ? keyed.fastify.inject({ method: 'POST', url, payload: body, headers: withKey })
      : keyed.fastify.inject({ method: 'GET', url, headers: withKey });
  };

  it('answers a missing or wrong bearer key with 401 E_UNAUTHORIZED on every model route', async () => {
    const urls = [
      '/v2/models/mlp/infer',
      '/v2/models/mlp',
      '/v2/models/mlp/ready',
      '/v1/models',
      '/v1/models/mlp/manifest',
      '/v1/usage',
    ];
    for (const url of urls) {
      for (const authorization of [
        undefined,
        'Bearer nope',
        'alice-secret',
        'Basic alice-secret',
      ]) {
        const response = await send(authorization, url);
        expect(errorOf(response), `${url} ${authorization}`).toEqual({
          status: 401,
          code: 'E_UNAUTHORIZED',
        });
      }
    }
  });

  it('needs no key for health and server metadata (probes carry none)', async () => {
    for (const url of ['/v2', '/v2/health/live', '/v2/health/ready']) {
      expect((await send(undefined, url)).statusCode, url).toBe(200);
    }
  });

  it('serves a good key', async () => {
    const response = await send('Bearer alice-secret');
    expect(response.statusCode).toBe(200);
    expect((await send('Bearer alice-secret', '/v2/models/mlp')).statusCode).toBe(200);
  });

  it('answers a key over its rate with 429 E_RATE_LIMITED and Retry-After', async () => {
    expect((await send('Bearer bob-secret')).statusCode).toBe(200);
    expect((await send('Bearer bob-secret')).statusCode).toBe(200);
    const limited = await send('Bearer bob-secret');
    expect(errorOf(limited)).toEqual({ status: 429, code: 'E_RATE_LIMITED' });
    // Two jobs a minute: the next token is about 30 s away.
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(25);
    expect(retryAfter).toBeLessThanOrEqual(30);
    // Other keys are not affected.
    expect((await send('Bearer alice-secret')).statusCode).toBe(200);
  });
});

describe('over a real socket', () => {
  let live: TandemServer;
  let url: string;
  let removeLiveDir: () => void;

  beforeAll(async () => {
    const { dir, remove } = tempDir('oip-socket');
    removeLiveDir = remove;
    await writeModelFile(dir, 'mlp', 1, mlp.bytes);
    await writeModelFile(dir, 'slow', 1, buildSlowModel(512, 96));
    writeModelConfig(dir, 'slow', 1, { intraOpNumThreads: 1 });
    live = await createServer({ modelsDir: dir, catalog: false, host: '127.0.0.1', port: 0 });
    url = await live.listen();
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    await live.close();
    removeLiveDir();
  });

  it('serves a binary infer to fetch on 127.0.0.1', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const expected = await referenceMlp();
    const { body, headers } = encodeInferRequest({
      inputs: [
        {
          name: 'x',
          datatype: 'FP32',
          shape: [ROWS, FEATURES],
          binary: bytesOf(Float32Array.from(X)),
        },
      ],
      outputs: [{ name: 'probs', binary: true }, { name: 'label' }],
    });
    const response = await fetch(`${url}/v2/models/mlp/infer`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers,
    });
    expect(response.status).toBe(200);
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(Number(response.headers.get('content-length'))).toBe(bytes.byteLength);
    const { outputs } = decodeInferResponse(
      bytes,
      response.headers.get('inference-header-content-length') ?? undefined,
    );
    expect(float32Of(outputs.probs!.bytes!)).toEqual(expected.probs);
    expect(outputs.label!.data).toEqual(Array.from(expected.label, Number));
  });

  it('cancels the job of a client that hangs up', async () => {
    const host = live.manager.host('slow');
    const submit = host.submit.bind(host);
    const jobs: Job[] = [];
    let onSubmit = (): void => undefined;
    vi.spyOn(host, 'submit').mockImplementation((request, listener) => {
      const job = submit(request, listener);
      jobs.push(job);
      onSubmit();
      return job;
    });
    const cancel = host.cancel.bind(host);
    const cancelled = new Promise<Job>((resolve) => {
      vi.spyOn(host, 'cancel').mockImplementation((job) => {
        cancel(job);
        resolve(job);
      });
    });
    const accepted = (count: number) =>
      new Promise<void>((resolve) => {
        onSubmit = () => {
          if (jobs.length >= count) resolve();
        };
        onSubmit();
      });
    const { body, headers } = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [0] }],
    });
    const post = (signal?: AbortSignal) =>
      fetch(`${url}/v2/models/slow/infer`, {
        method: 'POST',
        body: new Uint8Array(body),
        headers,
        ...(signal === undefined ? {} : { signal }),
      });
    const first = post();
    await accepted(1);
    const abort = new AbortController();
    const second = post(abort.signal);
    await accepted(2);
    abort.abort();
    await expect(second).rejects.toThrow();
    expect(await cancelled).toBe(jobs[1]);
    const outcome = await jobs[1]!.outcome;
    expect(outcome.ok ? 'ok' : outcome.error.code).toBe('E_CANCELLED');
    expect((await first).status).toBe(200);
  });

  it('turns /v2/health/ready to 503 while draining, and finishes the job in flight', async () => {
    const warm = await fetch(`${url}/v1/models/slow/warm?wait=true`, { method: 'POST' });
    expect(warm.status).toBe(200);
    const host = live.manager.host('slow');
    const submit = host.submit.bind(host);
    const accepted = new Promise<void>((resolve) => {
      vi.spyOn(host, 'submit').mockImplementation((request, listener) => {
        const job = submit(request, listener);
        resolve();
        return job;
      });
    });
    const manager = live.manager;
    const drain = manager.drain.bind(manager);
    const draining = new Promise<void>((resolve) => {
      vi.spyOn(manager, 'drain').mockImplementation(() => {
        const drained = drain();
        resolve();
        return drained;
      });
    });
    const { body, headers } = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [0] }],
    });
    const inFlight = fetch(`${url}/v2/models/slow/infer`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers,
    });
    await accepted;
    const closing = live.close();
    await draining;
    const ready = await fetch(`${url}/v2/health/ready`);
    expect(ready.status).toBe(503);
    await ready.arrayBuffer();
    const refused = await fetch(`${url}/v2/models/mlp/infer`, {
      method: 'POST',
      body: new Uint8Array(encodeInferRequest({ inputs: [mlpInput] }).body),
    });
    // New work is refused. (Fastify answers this itself while closing, without a Tandem `code`.)
    expect(refused.status).toBe(503);
    await refused.arrayBuffer();
    const finished = await inFlight;
    expect(finished.status).toBe(200);
    const result = (await finished.json()) as { outputs: { name: string; data: number[] }[] };
    expect(result.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [], data: [0] }]);
    await closing;
  });
});

describe('compressed request bodies over a real socket', () => {
  /** The limit: 64 KiB, of the inflated body. */
  const LIMIT = 64 * 1024;
  let live: TandemServer;
  let url: string;
  let removeLiveDir: () => void;

  beforeAll(async () => {
    const { dir, remove } = tempDir('oip-compressed');
    removeLiveDir = remove;
    await writeModelFile(dir, 'mlp', 1, mlp.bytes);
    live = await createServer({
      modelsDir: dir,
      catalog: false,
      host: '127.0.0.1',
      port: 0,
      maxPayloadBytes: LIMIT,
    });
    url = await live.listen();
  });

  afterAll(async () => {
    await live.close();
    removeLiveDir();
  });

  /** POSTs `body` to the MLP's infer route with `headers`, as tritonclient.http would. */
  const post = (body: Uint8Array, headers: Record<string, string>) =>
    fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', body: new Uint8Array(body), headers });

  async function errorBodyOf(response: Response): Promise<{ status: number; code: string }> {
    const body = (await response.json()) as { error: unknown; code: string };
    expect(typeof body.error).toBe('string');
    return { status: response.status, code: body.code };
  }

  it('inflates a gzip JSON body and a deflate binary one (Inference-Header-Content-Length of the inflated body)', async () => {
    const expected = await referenceMlp();
    const json = encodeInferRequest({ inputs: [mlpInput] });
    const jsonResponse = await post(gzipSync(json.body), {
      ...json.headers,
      'content-encoding': 'gzip',
    });
    expect(jsonResponse.status).toBe(200);
    const answer = (await jsonResponse.json()) as { outputs: { name: string; data: number[] }[] };
    expect(answer.outputs.find((o) => o.name === 'label')!.data).toEqual(
      Array.from(expected.label, Number),
    );

    // tritonclient's way: the header counts the JSON before compression, zlib.compress the body.
    const binary = encodeInferRequest({
      inputs: [{ ...mlpInput, data: undefined, binary: bytesOf(Float32Array.from(X)) }],
      parameters: { binary_data_output: true },
    });
    expect(Number(binary.headers['inference-header-content-length'])).toBeGreaterThan(0);
    const binaryResponse = await post(deflateSync(binary.body), {
      ...binary.headers,
      'content-encoding': 'deflate',
    });
    expect(binaryResponse.status).toBe(200);
    const { outputs } = decodeInferResponse(
      Buffer.from(await binaryResponse.arrayBuffer()),
      binaryResponse.headers.get('inference-header-content-length') ?? undefined,
    );
    expect(float32Of(outputs.probs!.bytes!)).toEqual(expected.probs);
    expect(int64Of(outputs.label!.bytes!)).toEqual(expected.label);

    // Triton's raw binary request, gzipped.
    const raw = await post(gzipSync(bytesOf(Float32Array.from(X))), {
      'inference-header-content-length': '0',
      'content-encoding': 'gzip',
    });
    expect(raw.status).toBe(200);
    await raw.arrayBuffer();
  });

  it('answers a body that inflates past maxPayloadBytes (a zip bomb) with 413, and keeps serving', async () => {
    // A JSON request padded with 16 MiB of spaces: about 16 KB compressed, 256 times the limit.
    const head = encodeInferRequest({ inputs: [mlpInput] }).body;
    const bomb = gzipSync(Buffer.concat([head, Buffer.alloc(16 * 1024 * 1024, ' ')]));
    expect(bomb.byteLength).toBeLessThan(LIMIT);
    const refused = await post(bomb, {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    expect(await errorBodyOf(refused)).toEqual({ status: 413, code: 'E_PAYLOAD_TOO_LARGE' });
    const json = encodeInferRequest({ inputs: [mlpInput] });
    const after = await post(gzipSync(json.body), { ...json.headers, 'content-encoding': 'gzip' });
    expect(after.status).toBe(200);
    await after.arrayBuffer();
  });

  it('answers an unknown Content-Encoding with 415 E_UNSUPPORTED_ENCODING, and bad data with 400', async () => {
    const json = encodeInferRequest({ inputs: [mlpInput] });
    const brotli = await post(brotliCompressSync(json.body), {
      ...json.headers,
      'content-encoding': 'br',
    });
    expect(await errorBodyOf(brotli)).toEqual({ status: 415, code: 'E_UNSUPPORTED_ENCODING' });
    const notGzip = await post(json.body, { ...json.headers, 'content-encoding': 'gzip' });
    expect(await errorBodyOf(notGzip)).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
  });
});

describe('refusals in /metrics', () => {
  let live: TandemServer;
  let url: string;
  let removeLiveDir: () => void;

  beforeAll(async () => {
    const { dir, remove } = tempDir('oip-rejections');
    removeLiveDir = remove;
    await writeModelFile(dir, 'mlp', 1, mlp.bytes);
    await writeModelFile(dir, 'slow', 1, buildSlowModel());
    writeModelConfig(dir, 'slow', 1, { intraOpNumThreads: 1 });
    live = await createServer({
      modelsDir: dir,
      catalog: false,
      host: '127.0.0.1',
      port: 0,
      maxPayloadBytes: 2048,
      apiKeys: [
        { id: 'alice', sha256: hashApiKey('alice-secret') },
        { id: 'bob', sha256: hashApiKey('bob-secret'), ratePerMinute: 1 },
      ],
    });
    url = await live.listen();
  });

  afterAll(async () => {
    await live.close();
    removeLiveDir();
  });

  const post = async (
    path: string,
    request: ClientRequest,
    key: string | undefined,
  ): Promise<{ status: number; code: string | undefined }> => {
    const { body, headers } = encodeInferRequest(request);
    const response = await fetch(`${url}${path}`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers: key === undefined ? headers : { ...headers, authorization: `Bearer ${key}` },
    });
    const answer = (await response.json()) as { code?: string };
    return { status: response.status, code: answer.code };
  };

  it('counts each refusal once by code, with the model when the server knows it, and no job failure', async () => {
    expect(await post('/v2/models/mlp/infer', { inputs: [mlpInput] }, undefined)).toEqual({
      status: 401,
      code: 'E_UNAUTHORIZED',
    });
    const unknown = await fetch(`${url}/v2/models/made-up-name`, {
      headers: { authorization: 'Bearer alice-secret' },
    });
    expect(unknown.status).toBe(404);
    const wrongShape = { ...mlpInput, shape: [ROWS * FEATURES] };
    expect(await post('/v2/models/mlp/infer', { inputs: [wrongShape] }, 'alice-secret')).toEqual({
      status: 400,
      code: 'E_INPUT_SHAPE',
    });
    const tooBig = {
      ...mlpInput,
      shape: [150, FEATURES],
      data: Array.from({ length: 600 }, (_, i) => i / 7),
    };
    expect(await post('/v2/models/mlp/infer', { inputs: [tooBig] }, 'alice-secret')).toEqual({
      status: 413,
      code: 'E_PAYLOAD_TOO_LARGE',
    });
    // Refused by the model host once it waited (the host counts it), answered by the route.
    const late = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [0] }] };
    expect(
      await post('/v2/models/slow/infer', { ...late, parameters: { timeout: 1 } }, 'alice-secret'),
    ).toEqual({ status: 504, code: 'E_DEADLINE_EXCEEDED' });
    expect((await post('/v2/models/mlp/infer', { inputs: [mlpInput] }, 'bob-secret')).status).toBe(
      200,
    );
    expect(await post('/v2/models/mlp/infer', { inputs: [mlpInput] }, 'bob-secret')).toEqual({
      status: 429,
      code: 'E_RATE_LIMITED',
    });

    const metrics = await (await fetch(`${url}/metrics`)).text();
    const rejections = (code: string, model: string): number | undefined =>
      metricValue(metrics, 'tandem_rejections_total', { code, model });
    expect(rejections('E_UNAUTHORIZED', 'mlp')).toBe(1);
    expect(rejections('E_MODEL_NOT_FOUND', '')).toBe(1);
    expect(rejections('E_INPUT_SHAPE', 'mlp')).toBe(1);
    expect(rejections('E_PAYLOAD_TOO_LARGE', 'mlp')).toBe(1);
    expect(rejections('E_DEADLINE_EXCEEDED', 'slow')).toBe(1);
    expect(rejections('E_RATE_LIMITED', 'mlp')).toBe(1);
    expect(metrics).not.toContain('made-up-name');
  });
});
