// The Open Inference Protocol routes under fuzzing, over a real loopback socket with real
// onnxruntime: well-formed infer requests (JSON, binary-data extension, raw binary) mutated in
// their JSON, their binary part, their headers, their encoding and their URL. Whatever arrives,
// the answer is a success or a documented error (the code's own HTTP status, its retryability, a
// message), never an internal error; and clients that behave, over HTTP and over the WebSocket,
// get the right outputs all along. FUZZ_SEED replays a run; FUZZ_RUNS runs longer than the 600
// cases a test run takes (a few seconds).

import { request as httpRequest, Agent } from 'node:http';
import { gzipSync, deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode, type TensorMap } from '@tandem/shared';
import {
  buildMlpClassifier,
  buildModel,
  connectClient,
  writeModelFile,
} from '@tandem/test-support';
import { encodeBytesTensor } from './oip-client.js';
import { buildIdentityModel } from './server-fixtures.js';
import {
  expectSameTensors,
  resultOf,
  runDirect,
  startServer,
  type TestServer,
} from './fixtures.js';

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const FEATURES = 4;
const X = [0.5, -1, 2, 0.25, 3, 1.5, -0.75, 0];
const MAX_PAYLOAD_BYTES = 256 * 1024;

/** Codes a stranger's request must never cause: each means the server itself went wrong. */
const SERVER_FAULTS: readonly ErrorCode[] = [
  'E_INTERNAL',
  'E_RUNTIME',
  'E_MODEL_LOAD_FAILED',
  'E_ATTEMPTS_EXHAUSTED',
];

let ctx: TestServer;
let mlpPath: string;
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

beforeAll(async () => {
  ctx = await startServer(
    async (dir) => {
      const mlp = buildMlpClassifier({ features: FEATURES, hidden: 8, classes: 3, seed: 5 });
      mlpPath = await writeModelFile(dir, 'mlp', 1, mlp.bytes);
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
    },
    { maxPayloadBytes: MAX_PAYLOAD_BYTES },
  );
});

afterAll(async () => {
  agent.destroy();
  await ctx.close();
});

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** One request over a real socket, headers exactly as given (fetch would add and check some). */
function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<Answer> {
  const { hostname, port } = new URL(ctx.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        agent,
        hostname,
        port,
        method,
        path,
        headers: { ...headers, 'content-length': body.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Checks one answer: a 200 with an OIP response, or a Tandem error body whose status, code and
 * retryability agree with the code table. Returns the code (or 'ok').
 */
function checkAnswer(answer: Answer, label: string): string {
  if (answer.status === 200 && !label.includes('/infer')) {
    // A repository route (load, index) the URL mutation reached: JSON, whatever it says.
    JSON.parse(answer.body.toString('utf8'));
    return 'ok';
  }
  if (answer.status === 200) {
    const headerLength = answer.headers['inference-header-content-length'];
    const jsonEnd = typeof headerLength === 'string' ? Number(headerLength) : answer.body.length;
    const json = JSON.parse(answer.body.subarray(0, jsonEnd).toString('utf8')) as {
      model_name?: unknown;
      outputs?: unknown;
    };
    expect(typeof json.model_name, label).toBe('string');
    expect(Array.isArray(json.outputs), label).toBe(true);
    return 'ok';
  }
  const text = answer.body.toString('utf8');
  let body: { error?: unknown; code?: unknown; retryable?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new Error(`${label}: HTTP ${answer.status} with a body that is no JSON: ${text}`);
  }
  const code = body.code as ErrorCode;
  expect(Object.keys(ERROR_CODES), `${label}: ${text}`).toContain(code);
  expect(SERVER_FAULTS, `${label}: ${text}`).not.toContain(code);
  expect(answer.status, `${label}: ${text}`).toBe(ERROR_CODES[code].httpStatus);
  expect(body.retryable, label).toBe(ERROR_CODES[code].retryable);
  expect(typeof body.error, label).toBe('string');
  return code;
}

/** A well-formed request the fuzzer starts from, and the URL it goes to. */
interface Seed {
  readonly url: string;
  readonly json: Record<string, unknown>;
  /** Binary parts after the JSON, in input order (the binary-data extension). */
  readonly binary: readonly Buffer[];
}

const f32 = (values: number[]): Buffer => Buffer.from(Float32Array.from(values).buffer);

const SEEDS: readonly Seed[] = [
  {
    url: '/v2/models/mlp/infer',
    json: { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, FEATURES], data: X }] },
    binary: [],
  },
  {
    url: '/v2/models/mlp/versions/1/infer',
    json: {
      id: 'r1',
      parameters: { binary_data_output: true, priority: 1, timeout: 10_000_000 },
      inputs: [
        {
          name: 'x',
          datatype: 'FP32',
          shape: [2, FEATURES],
          parameters: { binary_data_size: 32 },
        },
      ],
      outputs: [{ name: 'probs', parameters: { binary_data: false } }, { name: 'label' }],
    },
    binary: [f32(X)],
  },
  {
    url: '/v2/models/echo/infer',
    json: {
      inputs: [
        { name: 'text', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 13 } },
      ],
    },
    binary: [Buffer.from(encodeBytesTensor(['héllo', 'ok']))],
  },
  {
    url: '/v2/models/dtypes/infer',
    json: {
      inputs: [
        { name: 's', datatype: 'BYTES', shape: [1], data: ['a'] },
        { name: 'b', datatype: 'BOOL', shape: [2], data: [true, false] },
        { name: 'h', datatype: 'FP16', shape: [1], data: [0.5] },
        { name: 'i', datatype: 'INT64', shape: [2], data: [-5, '9223372036854775807'] },
        { name: 'u', datatype: 'UINT64', shape: [1], parameters: { binary_data_size: 8 } },
        { name: 'i8', datatype: 'INT8', shape: [2], data: [-128, 127] },
        { name: 'u8', datatype: 'UINT8', shape: [0], data: [] },
        { name: 'd', datatype: 'FP64', shape: [1], data: [0.1] },
      ],
    },
    binary: [Buffer.from(new BigUint64Array([2n ** 64n - 1n]).buffer)],
  },
];

/** Values that break assumptions: wrong types, edges of ranges, names of prototype members. */
const WEIRD: readonly unknown[] = [
  -1,
  0,
  -0.5,
  1.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  1e308,
  -1e308,
  '',
  '0',
  'NaN',
  'Infinity',
  'fp32',
  'Fp32',
  'FP32',
  'BYTES',
  'INT64',
  'BF16',
  'x',
  'probs',
  '__proto__',
  'constructor',
  'toString',
  null,
  true,
  false,
  [],
  {},
  [[]],
  [-1],
  [1.5],
  ['2'],
  [2 ** 32, 2 ** 32],
  [65536, 65536, 65536],
  [4294967295, 0],
  Array<number>(33).fill(1),
  { binary_data_size: 8 },
  { binary_data: true },
  { classification: 2 },
  [{ name: 'probs' }, { name: 'probs', parameters: { binary_data: true } }],
  { __proto__: null, name: 'x' },
];

/** Every path into a JSON value, the root included. */
function pathsOf(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  const paths = [path];
  if (Array.isArray(value)) value.forEach((item, i) => paths.push(...pathsOf(item, [...path, i])));
  else if (typeof value === 'object' && value !== null)
    for (const [key, item] of Object.entries(value)) paths.push(...pathsOf(item, [...path, key]));
  return paths;
}

/** A copy of `value` with the node at `path` replaced (or deleted when `replacement` is absent). */
function edit(value: unknown, path: (string | number)[], replacement?: { v: unknown }): unknown {
  if (path.length === 0) return replacement?.v;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  if (Array.isArray(value)) {
    const copy = value.slice();
    if (rest.length === 0 && replacement === undefined) copy.splice(head as number, 1);
    else copy[head as number] = edit(copy[head as number], rest, replacement);
    return copy;
  }
  // Adding a key under a primitive makes an object of it.
  const entries = typeof value === 'object' && value !== null ? Object.entries(value) : [];
  if (rest.length === 0 && replacement === undefined)
    return Object.fromEntries(entries.filter(([key]) => key !== String(head)));
  const copy = Object.fromEntries(entries);
  copy[head] = edit(copy[head], rest, replacement);
  return copy;
}

/** One mutation of a seed's JSON: replace, delete, or add a key at a path the seed has. */
const jsonMutationArb = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('replace', 'replace', 'delete', 'add', 'duplicate'),
  value: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...WEIRD) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  ),
  key: fc.constantFrom('data', 'shape', 'datatype', 'name', 'parameters', 'binary_data_size', 'x'),
});

type JsonMutation = typeof jsonMutationArb extends fc.Arbitrary<infer T> ? T : never;

function mutateJson(json: unknown, mutation: JsonMutation): unknown {
  const paths = pathsOf(json);
  const path = paths[mutation.at % paths.length]!;
  switch (mutation.kind) {
    case 'replace':
      return edit(json, path, { v: mutation.value });
    case 'delete':
      return path.length === 0 ? json : edit(json, path);
    case 'add':
      return edit(json, [...path, mutation.key], { v: mutation.value });
    case 'duplicate': {
      // A second copy of an input (or output): duplicate names.
      if (typeof json !== 'object' || json === null) return json;
      const inputs = (json as { inputs?: unknown }).inputs;
      if (!Array.isArray(inputs) || inputs.length === 0) return json;
      const list = inputs as unknown[];
      return { ...json, inputs: [...list, list[mutation.at % list.length]] };
    }
  }
}

/** How the JSON and binary parts become a body and headers. */
const framingArb = fc.record({
  /** Offset added to the true Inference-Header-Content-Length, or a written-out lie. */
  headerLength: fc.oneof(
    { weight: 6, arbitrary: fc.constant<number | string>(0) },
    { weight: 2, arbitrary: fc.integer({ min: -8, max: 8 }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<number | string>(
        '',
        'abc',
        '-1',
        '0',
        '00',
        '1e2',
        '0x10',
        '99999999',
        ' 7 ',
      ),
    },
  ),
  /** Bytes cut from (negative) or added to (positive) the end of the body. */
  tail: fc.oneof(
    { weight: 20, arbitrary: fc.constant(0) },
    { weight: 4, arbitrary: fc.integer({ min: -9, max: 9 }) },
    // Past maxPayloadBytes, before or after inflating.
    { weight: 1, arbitrary: fc.constant(MAX_PAYLOAD_BYTES) },
  ),

  /** Sends the binary part without the header at all (or a JSON request with one). */
  dropHeader: fc.oneof(
    { weight: 9, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
  contentType: fc.constantFrom(
    undefined,
    undefined,
    'application/json',
    'application/octet-stream',
    'text/plain',
    'application/json; charset=utf-16',
    'multipart/form-data; boundary=x',
    'application/x-www-form-urlencoded',
  ),
  encoding: fc.oneof(
    { weight: 12, arbitrary: fc.constant<string | undefined>(undefined) },
    { weight: 4, arbitrary: fc.constantFrom('gzip', 'deflate', 'x-gzip', 'GZIP', 'identity', '') },
    { weight: 1, arbitrary: fc.constantFrom('br', 'gzip, deflate', 'compress') },
  ),

  /** Damages the compressed bytes (a stream that does not inflate). */
  corruptCompressed: fc.oneof(
    { weight: 3, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
  url: fc.oneof(
    { weight: 8, arbitrary: fc.constant<string | undefined>(undefined) },
    {
      weight: 2,
      arbitrary: fc.constantFrom<string | undefined>(
        '/v2/models/ml%70/infer',
        '/v2/models/mlp/versions/abc/infer',
        '/v2/models/mlp/versions/%31/infer',
        '/v2/models/mlp/versions//infer',
        '/v2/models/%2e%2e/infer',
        '/v2/models/mlp%2F1/infer',
        '/v2/models/.mlp/infer',
        '/v2/models/%ZZ/infer',
        '/v2/models/%E0%A4%A/infer',
        '/v2/models/%00/infer',
        '/v2/models/__proto__/infer',
        '/v2/models/constructor/versions/toString/infer',
        `/v2/models/${'m'.repeat(200)}/infer`,
        `/v2/models/${'m'.repeat(3000)}/infer`,
        '/v2/models/mlp/infer?x=%ZZ',
        '/v2/repository/models/%ZZ/load',
        '/v2/repository/models/mlp/load',
        '/v2/repository/index',
      ),
    },
  ),
});

type Framing = typeof framingArb extends fc.Arbitrary<infer T> ? T : never;

/** Builds the request a case describes: mutated JSON, then binary parts, then framing. */
function buildRequest(
  seed: Seed,
  mutations: readonly JsonMutation[],
  framing: Framing,
): { url: string; headers: Record<string, string>; body: Buffer } {
  let json: unknown = seed.json;
  for (const mutation of mutations) json = mutateJson(json, mutation);
  const head = Buffer.from(json === undefined ? '' : JSON.stringify(json), 'utf8');
  let body = Buffer.concat([head, ...seed.binary]);
  if (framing.tail < 0) body = body.subarray(0, Math.max(0, body.length + framing.tail));
  if (framing.tail > 0) body = Buffer.concat([body, Buffer.alloc(framing.tail, 0xa5)]);
  const headers: Record<string, string> = {};
  const binary = seed.binary.length > 0;
  if (binary !== framing.dropHeader) {
    headers['inference-header-content-length'] =
      typeof framing.headerLength === 'string'
        ? framing.headerLength
        : String(head.length + framing.headerLength);
  }
  if (framing.contentType !== undefined) headers['content-type'] = framing.contentType;
  if (framing.encoding !== undefined) {
    headers['content-encoding'] = framing.encoding;
    const coding = framing.encoding.toLowerCase();
    if (coding === 'gzip' || coding === 'x-gzip') body = gzipSync(body);
    if (coding === 'deflate') body = deflateSync(body);
    if (framing.corruptCompressed && body.length > 12) {
      body = Buffer.from(body);
      body[Math.floor(body.length / 2)]! ^= 0xff;
      body = body.subarray(0, body.length - 3);
    }
  }
  return { url: framing.url ?? seed.url, headers, body };
}

describe('OIP v2 infer under fuzzing', () => {
  it(`answers every mutated request with a documented code, while good clients are served (seed ${seed})`, async () => {
    const good: TensorMap = {
      x: { dtype: 'float32', dims: [2, FEATURES], data: Float32Array.from(X) },
    };
    const expected = await runDirect(mlpPath, good);
    const expectedProbs = Array.from(expected.probs!.data as Float32Array);
    const expectedLabel = Array.from(expected.label!.data as BigInt64Array, String);

    // Well-behaved clients on both doors, running the whole time the fuzzer does.
    // An object, not a `let`: the loops below read it after awaits.
    const run = { fuzzing: true };
    let servedHttp = 0;
    let servedWs = 0;
    const httpBystander = (async () => {
      while (run.fuzzing) {
        const answer = await send(
          'POST',
          '/v2/models/mlp/infer',
          { 'content-type': 'application/json' },
          Buffer.from(JSON.stringify(SEEDS[0]!.json)),
        );
        expect(answer.status, String(answer.body)).toBe(200);
        const json = JSON.parse(answer.body.toString('utf8')) as {
          outputs: { name: string; data: unknown[] }[];
        };
        const probs = json.outputs.find((o) => o.name === 'probs')!.data as number[];
        expect(Float32Array.from(probs)).toEqual(Float32Array.from(expectedProbs));
        expect(json.outputs.find((o) => o.name === 'label')!.data.map(String)).toEqual(
          expectedLabel,
        );
        servedHttp++;
      }
    })();
    const wsClient = await connectClient(ctx.url);
    const wsBystander = (async () => {
      while (run.fuzzing) {
        const log = await wsClient.infer({ id: `ws-${servedWs}`, model: 'mlp', inputs: good });
        expectSameTensors(resultOf(log).outputs, expected);
        servedWs++;
      }
    })();

    const codes = new Map<string, number>();
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.nat({ max: SEEDS.length - 1 }),
          fc.array(jsonMutationArb, { maxLength: 3 }),
          framingArb,
          async (seedIndex, mutations, framing) => {
            const request = buildRequest(SEEDS[seedIndex]!, mutations, framing);
            const answer = await send('POST', request.url, request.headers, request.body);
            const label = `${request.url} ${JSON.stringify(request.headers)} ${request.body
              .subarray(0, 300)
              .toString('latin1')}`;
            const code = checkAnswer(answer, label);
            codes.set(code, (codes.get(code) ?? 0) + 1);
          },
        ),
        { numRuns: Number(process.env.FUZZ_RUNS ?? 600), seed, endOnFailure: true },
      );
    } finally {
      run.fuzzing = false;
      await Promise.all([httpBystander, wsBystander]);
      await wsClient.close();
    }
    // The run means something only if it reached both answers and many distinct checks.
    expect(codes.get('ok') ?? 0).toBeGreaterThan(0);
    expect(codes.size).toBeGreaterThanOrEqual(6);
    expect(servedHttp).toBeGreaterThan(0);
    expect(servedWs).toBeGreaterThan(0);
    const live = await send('GET', '/v2/health/ready', {}, Buffer.alloc(0));
    expect(live.status).toBe(200);
  });
});
