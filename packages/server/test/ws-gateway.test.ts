// Integration tests of the WebSocket gateway (/v1/stream) against a real server on loopback with
// real models and real sockets: serving models the server has never seen (bytewise equal to
// onnxruntime-node run directly), the upgrade checks (API key, Origin), hello, bad input answered
// with codes while the server keeps serving, oversize and malformed frames, heartbeats, resume
// after a disconnect, the API key in `hello` (allowKeyInHello), and backpressure on a client that
// stops reading (maxBufferedBytes), every refusal counted once in /metrics by code, dynamic
// batching, and a key's concurrency limit.

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  PROTOCOL_VERSION,
  ZERO_COPY_MIN_BYTES,
  encodeMessage,
  type ErrorMessage,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';
import { STREAM_PATH, hashApiKey } from '@tandem/server';
import { WorkerSession } from '../src/worker-session.js';
import {
  buildMlpClassifier,
  buildModel,
  buildTinyModel,
  connectClient,
  createPrng,
  realModelPath,
  refusedUpgrade,
  writeModelFile,
  type TestClient,
} from '@tandem/test-support';
import {
  errorCodeOf,
  expectSameTensors,
  metricValue,
  resultOf,
  runDirect,
  scrapeMetrics,
  slowInput,
  stagesOf,
  startServer,
  writeSlowModel,
  type TestServer,
} from './fixtures.js';
import { writeModelConfig } from './server-fixtures.js';

const MLP = buildMlpClassifier({ features: 16, hidden: 32, classes: 5, seed: 7 });

/** `rows` rows of MLP input drawn from a seeded generator. */
function mlpInput(rows: number, seed = 1): TensorMap {
  const prng = createPrng(seed);
  const data = new Float32Array(rows * MLP.features);
  for (let i = 0; i < data.length; i++) data[i] = prng.uniform(-2, 2);
  return { x: { dtype: 'float32', dims: [rows, MLP.features], data } };
}

/** One chunk of Silero VAD input: 512 samples at 16 kHz, a zero state, and the int64 scalar sr. */
function sileroInput(): TensorMap {
  const prng = createPrng(3);
  const samples = new Float32Array(512);
  for (let i = 0; i < samples.length; i++)
    samples[i] = 0.5 * Math.sin((2 * Math.PI * 440 * i) / 16_000) + prng.uniform(-0.05, 0.05);
  return {
    input: { dtype: 'float32', dims: [1, 512], data: samples },
    state: { dtype: 'float32', dims: [2, 1, 128], data: new Float32Array(2 * 128) },
    sr: { dtype: 'int64', dims: [], data: new BigInt64Array([16_000n]) },
  };
}

/**
 * Sends a WebSocket upgrade request on a raw TCP socket, reads the refusal's status line, then
 * resets the connection (RST, not FIN); resolves with the status line once the server's side of
 * the connection has closed.
 */
async function refuseThenReset(
  server: TestServer,
  path: string,
  headers: readonly string[],
  protocol = 'tandem.v1',
): Promise<string> {
  const serverSide = new Promise<Duplex>((resolve) => {
    server.server.fastify.server.once('upgrade', (_request: unknown, socket: Duplex) =>
      resolve(socket),
    );
  });
  const client = connect(Number(new URL(server.url).port), '127.0.0.1');
  client.on('error', () => undefined);
  await once(client, 'connect');
  client.write(
    [
      `GET ${path} HTTP/1.1`,
      'Host: 127.0.0.1',
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Protocol: ${protocol}`,
      ...headers,
      '',
      '',
    ].join('\r\n'),
  );
  const [response] = (await once(client, 'data')) as [Buffer];
  const socket = await serverSide;
  // Not events.once: it would listen for 'error' itself, the very event under test.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  client.resetAndDestroy();
  await closed;
  return response.toString('latin1').split('\r\n')[0] ?? '';
}

/** Expects a client to still get a correct MLP result. */
async function expectServing(client: TestClient, id: string): Promise<void> {
  const result = resultOf(await client.infer({ id, model: 'mlp', inputs: mlpInput(2, 99) }));
  expect(result.outputs.probs?.dims).toEqual([2, MLP.classes]);
}

describe('ws-gateway: serving models it has never seen', () => {
  let ctx: TestServer;
  let client: TestClient;
  let mlpPath: string;
  let sileroPath: string;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      mlpPath = await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      sileroPath = await writeModelFile(
        dir,
        'silero-vad',
        1,
        readFileSync(realModelPath('silero-vad')),
      );
    });
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('lists the models from the directory in welcome, with their limits', () => {
    const welcome = client.welcome!;
    expect(welcome.protocolVersion).toBe(PROTOCOL_VERSION);
    expect(welcome.models.map((m) => m.name).sort()).toEqual(['mlp', 'silero-vad']);
    expect(welcome.models.every((m) => m.state === 'unloaded')).toBe(true);
    expect(welcome.limits.maxPayloadBytes).toBeGreaterThan(0);
  });

  it('serves a synthetic MLP with outputs bytewise equal to onnxruntime-node', async () => {
    const inputs = mlpInput(3);
    const result = resultOf(await client.infer({ id: 'mlp-all', model: 'mlp', inputs }));
    expect(result.model).toBe('mlp');
    expect(result.version).toBe('1');
    expect(result.backend).toBe('cpu');
    expectSameTensors(result.outputs, await runDirect(mlpPath, inputs));
  });

  it('serves an output of over 64 KiB (sent as fragments from its own memory) equal to onnxruntime-node', async () => {
    // 4,000 rows: probs is 80,000 bytes, past ZERO_COPY_MIN_BYTES; label (32,000 bytes) is copied.
    const inputs = mlpInput(4000, 5);
    const result = resultOf(await client.infer({ id: 'mlp-large', model: 'mlp', inputs }));
    expect((result.outputs.probs?.data as Float32Array).byteLength).toBeGreaterThan(
      ZERO_COPY_MIN_BYTES,
    );
    expectSameTensors(result.outputs, await runDirect(mlpPath, inputs));
  });

  it('reads an input of over 64 KiB sent as fragments in place: the worker gets that fragment, not a joined copy', async () => {
    // 6,000 rows of 16 floats (384,000 bytes): past inlineMaxInputBytes, so it runs in the worker.
    const inputs = mlpInput(6000, 4);
    const handed: { detachable: boolean; dataBytes: number; bufferBytes: number }[] = [];
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with its own `this` below
    const run = WorkerSession.prototype.run;
    const spy = vi.spyOn(WorkerSession.prototype, 'run').mockImplementation(function (
      this: WorkerSession,
      given,
      outputs,
      detachable,
    ) {
      const data = given.x?.data as Float32Array;
      handed.push({
        detachable: detachable ?? false,
        dataBytes: data.byteLength,
        bufferBytes: data.buffer.byteLength,
      });
      return run.call(this, given, outputs, detachable);
    });
    try {
      client.sendFragments({ type: 'infer', id: 'mlp-fragments', model: 'mlp', inputs });
      const result = resultOf(await client.collectJob('mlp-fragments'));
      expectSameTensors(result.outputs, await runDirect(mlpPath, inputs));
    } finally {
      spy.mockRestore();
    }
    // The tensor's buffer is its fragment alone (a joined message would hold the header too),
    // and it moves to the worker instead of being copied.
    expect(handed).toEqual([{ detachable: true, dataBytes: 384_000, bufferBytes: 384_000 }]);
  });

  it('returns only the one output asked for', async () => {
    const inputs = mlpInput(4, 2);
    for (const name of ['label', 'probs']) {
      const result = resultOf(
        await client.infer({ id: `mlp-${name}`, model: 'mlp', inputs, outputs: [name] }),
      );
      expect(Object.keys(result.outputs)).toEqual([name]);
      expectSameTensors(result.outputs, await runDirect(mlpPath, inputs, [name]));
    }
  });

  it('returns every output for an empty list of outputs, as for none (and as OIP does)', async () => {
    const inputs = mlpInput(3, 4);
    const expected = await runDirect(mlpPath, inputs);
    // One alone (a single run) and several at once (runs grouped in one worker round trip).
    const ids = ['empty-0', 'empty-1', 'empty-2', 'empty-3'];
    for (const id of ids) client.send({ type: 'infer', id, model: 'mlp', inputs, outputs: [] });
    for (const id of ids) {
      const result = resultOf(await client.collectJob(id));
      expect(Object.keys(result.outputs).sort(), id).toEqual(['label', 'probs']);
      expectSameTensors(result.outputs, expected);
    }
  });

  it('serves Silero VAD (three inputs, an int64 scalar) equal to onnxruntime-node', async () => {
    const inputs = sileroInput();
    const first = resultOf(await client.infer({ id: 'vad-1', model: 'silero-vad', inputs }));
    expect(Object.keys(first.outputs).sort()).toEqual(['output', 'stateN']);
    expectSameTensors(first.outputs, await runDirect(sileroPath, inputs));
    // The recurrent state goes round: feed stateN back as the next chunk's state.
    const next = { ...inputs, state: first.outputs.stateN! };
    const second = resultOf(await client.infer({ id: 'vad-2', model: 'silero-vad', inputs: next }));
    expectSameTensors(second.outputs, await runDirect(sileroPath, next));
  });

  it('finds a model copied into the directory while it runs', async () => {
    const tiny = buildTinyModel();
    await writeModelFile(ctx.modelsDir, 'late-tiny', 1, tiny.bytes);
    const inputs: TensorMap = {
      x: { dtype: 'float32', dims: [3], data: new Float32Array([1, -2, 0.5]) },
    };
    // The repository rescans at most once a second for unknown names: a bounded poll.
    let log = await client.infer({ id: 'late-0', model: 'late-tiny', inputs });
    for (let attempt = 1; log.error?.code === 'E_MODEL_NOT_FOUND' && attempt < 40; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      log = await client.infer({ id: `late-${attempt}`, model: 'late-tiny', inputs });
    }
    expect(Array.from(resultOf(log).outputs.y!.data as Float32Array)).toEqual([3, -3, 2]);
  });
});

describe('ws-gateway: one output of a model with many large ones', () => {
  const OUTPUTS = 8;
  /** `y<k> = x * (k + 1)` for k in 0..7: eight outputs, each as large as the input. */
  const FAN = buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: ['n'] }],
    outputs: Array.from({ length: OUTPUTS }, (_, k) => ({
      name: `y${k}`,
      dtype: 'float32' as const,
      dims: ['n'],
    })),
    initializers: Array.from({ length: OUTPUTS }, (_, k) => ({
      name: `k${k}`,
      dtype: 'float32' as const,
      dims: [],
      data: new Float32Array([k + 1]),
    })),
    nodes: Array.from({ length: OUTPUTS }, (_, k) => ({
      opType: 'Mul',
      inputs: ['x', `k${k}`],
      outputs: [`y${k}`],
    })),
  });
  let ctx: TestServer;
  let client: TestClient;
  let path: string;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      path = await writeModelFile(dir, 'fan', 1, FAN);
    });
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('returns only the output asked for, equal to onnxruntime-node, and sends no other', async () => {
    const prng = createPrng(11);
    const data = new Float32Array(100_000);
    for (let i = 0; i < data.length; i++) data[i] = prng.uniform(-1, 1);
    const inputs: TensorMap = { x: { dtype: 'float32', dims: [data.length], data } };
    const log = await client.infer({ id: 'fan-y5', model: 'fan', inputs, outputs: ['y5'] });
    const result = resultOf(log);
    expect(Object.keys(result.outputs)).toEqual(['y5']);
    expectSameTensors(result.outputs, await runDirect(path, inputs, ['y5']));
    // All eight would be 3.2 MB; one is 400 KB.
    const all = resultOf(await client.infer({ id: 'fan-all', model: 'fan', inputs }));
    expect(Object.keys(all.outputs).sort()).toEqual(
      Array.from({ length: OUTPUTS }, (_, k) => `y${k}`).sort(),
    );
    expectSameTensors(all.outputs, await runDirect(path, inputs));
  });
});

describe('ws-gateway: upgrade checks and hello', () => {
  const KEY = 'tk_test_alice';
  let keyed: TestServer;
  let guarded: TestServer;
  /** One of the two servers' copies of the MLP (the same bytes). */
  let mlpCopy: string;

  beforeAll(async () => {
    const setup = async (dir: string): Promise<void> => {
      mlpCopy = await writeModelFile(dir, 'mlp', 1, MLP.bytes);
    };
    [keyed, guarded] = await Promise.all([
      startServer(setup, { apiKeys: [{ id: 'alice', sha256: hashApiKey(KEY) }] }),
      startServer(setup, { origins: ['https://app.example'] }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([keyed.close(), guarded.close()]);
  });

  it('answers a missing API key with 401 before the upgrade', async () => {
    const refused = await refusedUpgrade(keyed.url);
    expect(refused.status).toBe(401);
    expect(refused.code).toBe('E_UNAUTHORIZED');
  });

  it('answers a wrong API key with 401 before the upgrade, in either place', async () => {
    const inProtocol = await refusedUpgrade(keyed.url, {
      protocols: ['tandem.v1', 'tandem.key.tk_test_mallory'],
    });
    expect([inProtocol.status, inProtocol.code]).toEqual([401, 'E_UNAUTHORIZED']);
    const inHeader = await refusedUpgrade(keyed.url, {
      headers: { authorization: 'Bearer tk_test_mallory' },
    });
    expect([inHeader.status, inHeader.code]).toEqual([401, 'E_UNAUTHORIZED']);
  });

  it('accepts the right key as a subprotocol entry or a Bearer header, and serves', async () => {
    for (const keyIn of ['subprotocol', 'bearer'] as const) {
      const client = await connectClient(keyed.url, { apiKey: KEY, keyIn });
      expect(client.socket.protocol).toBe('tandem.v1');
      await expectServing(client, `keyed-${keyIn}`);
      await client.close();
    }
  });

  it('answers a foreign Origin with 403 before the upgrade when origins are set', async () => {
    const refused = await refusedUpgrade(guarded.url, { origin: 'https://evil.example' });
    expect(refused.status).toBe(403);
    expect(refused.code).toBe('E_FORBIDDEN_ORIGIN');
    const allowed = await connectClient(guarded.url, { origin: 'https://app.example' });
    await expectServing(allowed, 'origin-ok');
    await allowed.close();
  });

  it('refuses an upgrade without the tandem.v1 subprotocol, or on another path', async () => {
    const noProtocol = await refusedUpgrade(guarded.url, { protocols: ['chat'] });
    expect([noProtocol.status, noProtocol.code]).toEqual([400, 'E_PROTOCOL']);
    const otherPath = await refusedUpgrade(guarded.url.replace('http:', 'ws:') + '/v1/other');
    expect([otherPath.status, otherPath.code]).toEqual([404, 'E_ROUTE_NOT_FOUND']);
  });

  it('stays up when a client resets its connection after any refused upgrade', async () => {
    // A peer that answers the refusal with a TCP reset (a browser tab closed, a scanner) makes
    // the server's side of the socket emit ECONNRESET; with no listener that error took the
    // whole process down.
    const refusals = [
      { server: keyed, path: STREAM_PATH, headers: [] },
      { server: guarded, path: STREAM_PATH, headers: ['Origin: https://evil.example'] },
      { server: guarded, path: STREAM_PATH, headers: [], protocol: 'chat' },
      { server: guarded, path: '/v1/other', headers: [] },
    ];
    const statuses: string[] = [];
    for (const { server, path, headers, protocol } of refusals) {
      statuses.push(await refuseThenReset(server, path, headers, protocol));
    }
    expect(statuses).toEqual([
      'HTTP/1.1 401 Unauthorized',
      'HTTP/1.1 403 Forbidden',
      'HTTP/1.1 400 Bad Request',
      'HTTP/1.1 404 Not Found',
    ]);
    for (const server of [keyed, guarded]) {
      expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
    }
    const client = await connectClient(keyed.url, { apiKey: KEY });
    await expectServing(client, 'after-resets');
    await client.close();
  });

  it('answers an upgrade whose request target is no URL with 400 E_PROTOCOL, and stays up', async () => {
    // `new URL` throws on such a target: in the upgrade handler that was an uncaught exception,
    // so one unauthenticated request ended the process.
    for (const target of ['http://[', 'http://%zz/v1/stream']) {
      const client = connect(Number(new URL(guarded.url).port), '127.0.0.1');
      client.on('error', () => undefined);
      await once(client, 'connect');
      client.write(
        [
          `GET ${target} HTTP/1.1`,
          'Host: 127.0.0.1',
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Protocol: tandem.v1',
          '',
          '',
        ].join('\r\n'),
      );
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        client.on('data', (data: Buffer) => (text += data.toString('latin1')));
        client.on('close', () => resolve(text));
      });
      expect(answer.split('\r\n')[0], target).toBe('HTTP/1.1 400 Bad Request');
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), target).toMatchObject({
        code: 'E_PROTOCOL',
      });
    }
    expect((await fetch(`${guarded.url}/v2/health/live`)).status).toBe(200);
    const client = await connectClient(guarded.url);
    await expectServing(client, 'after-bad-target');
    await client.close();
  });

  it('serves HTTP requests that offer an upgrade to h2c as plain HTTP/1.1 (Java HttpClient, curl --http2)', async () => {
    // Such clients ask for h2c on every http:// request; the gateway took each for a WebSocket
    // upgrade and answered 404, so no route worked for them.
    const port = Number(new URL(guarded.url).port);
    const exchange = async (head: string[], body = ''): Promise<string> => {
      const client = connect(port, '127.0.0.1');
      client.on('error', () => undefined);
      await once(client, 'connect');
      const upgrade = [
        'Host: 127.0.0.1',
        'Connection: Upgrade, HTTP2-Settings, close',
        'Upgrade: h2c',
        'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
      ];
      client.write([...head, ...upgrade, '', body].join('\r\n'));
      return new Promise<string>((resolve) => {
        let text = '';
        client.on('data', (data: Buffer) => (text += data.toString('utf8')));
        client.on('close', () => resolve(text));
      });
    };
    const live = await exchange(['GET /v2/health/live HTTP/1.1']);
    expect(live.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(JSON.parse(live.slice(live.indexOf('\r\n\r\n') + 4))).toEqual({ live: true });
    const inputs = mlpInput(2, 5);
    const x = inputs.x!;
    const body = JSON.stringify({
      inputs: [
        { name: 'x', datatype: 'FP32', shape: x.dims, data: Array.from(x.data as Float32Array) },
      ],
      outputs: [{ name: 'label' }],
    });
    const infer = await exchange(
      [
        'POST /v2/models/mlp/infer HTTP/1.1',
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(body)}`,
      ],
      body,
    );
    expect(infer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const answer = JSON.parse(infer.slice(infer.indexOf('\r\n\r\n') + 4)) as {
      outputs: { name: string; data: number[] }[];
    };
    const expected = await runDirect(mlpCopy, inputs, ['label']);
    expect(answer.outputs.map((o) => o.name)).toEqual(['label']);
    expect(answer.outputs[0]!.data).toEqual(
      Array.from(expected.label!.data as BigInt64Array, Number),
    );
  });

  it('answers a protocol version mismatch with E_PROTOCOL_VERSION, then closes', async () => {
    const client = await connectClient(guarded.url, { hello: false });
    client.send({ type: 'hello', protocolVersion: 99, client: { name: 't', version: '0' } });
    const error = await client.nextOf('error');
    expect([error.id, error.code]).toEqual([null, 'E_PROTOCOL_VERSION']);
    expect((await client.closed).code).toBe(1002);
  });

  it('requires hello first', async () => {
    const client = await connectClient(guarded.url, { hello: false });
    client.send({ type: 'ping', nonce: 1 });
    expect((await client.nextOf('error')).code).toBe('E_PROTOCOL');
    expect((await client.closed).code).toBe(1002);
  });
});

/** A frame with the Tandem prefix around an arbitrary header (and optional body). */
function rawFrame(header: string, body = new Uint8Array(0), version = 1): Uint8Array {
  const headerBytes = Buffer.from(header, 'utf8');
  const bodyStart =
    body.length === 0 ? 12 + headerBytes.length : (12 + headerBytes.length + 7) & ~7;
  const frame = new Uint8Array(bodyStart + body.length);
  frame.set([0x54, 0x4e, 0x44, 0x4d, version, 0, 0, 0]);
  new DataView(frame.buffer).setUint32(8, headerBytes.length, true);
  frame.set(headerBytes, 12);
  frame.set(body, bodyStart);
  return frame;
}

/**
 * `count` frames that are each malformed for a certain reason (too short, wrong magic, truncated,
 * wrong version, reserved bytes set, not JSON, unknown or server-side type, unknown dtype, bytes
 * past the end, header length past the end, text frames), drawn from a seeded generator.
 */
function malformedFrames(count: number, seed: number): (Uint8Array | string)[] {
  const prng = createPrng(seed);
  const valid = encodeMessage({ type: 'infer', id: 'm', model: 'mlp', inputs: mlpInput(1) });
  const randomBytes = (length: number): Uint8Array =>
    Uint8Array.from({ length }, () => prng.integer(0, 255));
  const makers: (() => Uint8Array | string)[] = [
    () => randomBytes(prng.integer(0, 11)),
    () => {
      const bytes = randomBytes(prng.integer(12, 200));
      bytes[0] = 0x00;
      return bytes;
    },
    () => valid.slice(0, prng.integer(1, valid.length - 1)),
    () => {
      const bytes = valid.slice();
      bytes[4] = prng.integer(2, 255);
      return bytes;
    },
    () => {
      const bytes = valid.slice();
      bytes[prng.integer(5, 7)] = prng.integer(1, 255);
      return bytes;
    },
    () => rawFrame(`{"type":"infer","id":${'['.repeat(prng.integer(1, 9))}`),
    () => rawFrame(`{"type":"x-${prng.nextUint32().toString(36)}"}`),
    () => encodeMessage({ type: 'pong', nonce: prng.integer(0, 1000) }),
    () =>
      rawFrame(
        '{"type":"infer","id":"d","model":"mlp","inputs":[{"name":"x","dtype":"complex64","dims":[1],"offset":0,"byteLength":8}]}',
        new Uint8Array(8),
      ),
    () => Uint8Array.from([...valid, ...randomBytes(prng.integer(1, 16))]),
    () => {
      const bytes = valid.slice();
      new DataView(bytes.buffer).setUint32(8, valid.length + prng.integer(1, 1000), true);
      return bytes;
    },
    () => `{"type":"ping","nonce":${prng.integer(0, 99)}}`,
  ];
  return Array.from({ length: count }, (_, i) => makers[i % makers.length]!());
}

const MALFORMED_CODES = [
  'E_PROTOCOL',
  'E_PROTOCOL_VERSION',
  'E_UNKNOWN_MESSAGE',
  'E_UNKNOWN_DTYPE',
];
/** The ids those errors carry: none, or the id of an infer whose header was readable. */
const MALFORMED_IDS = [null, 'm', 'd'];

describe('ws-gateway: bad input gets a code and the server keeps serving', () => {
  const MAX_PAYLOAD_BYTES = 64 * 1024;
  let ctx: TestServer;
  let lenient: TestServer;
  let bystander: TestClient;

  beforeAll(async () => {
    const setup = async (dir: string): Promise<void> => {
      await writeModelFile(dir, 'mlp', 1, MLP.bytes);
    };
    [ctx, lenient] = await Promise.all([
      startServer(setup, { maxPayloadBytes: MAX_PAYLOAD_BYTES, maxProtocolErrors: 100 }),
      startServer(setup, { maxProtocolErrors: 20_000 }),
    ]);
    // A well-behaved client on the same server, checked after each kind of abuse.
    bystander = await connectClient(ctx.url);
    await expectServing(bystander, 'bystander-0');
  });
  afterAll(async () => {
    await bystander.close();
    await Promise.all([ctx.close(), lenient.close()]);
  });

  it('answers wrong dtype, rank, dims, inputs and outputs with their codes', async () => {
    const client = await connectClient(ctx.url);
    const x = (dtype: 'float32' | 'int32', dims: number[]): TensorMap => {
      const n = dims.reduce((a, b) => a * b, 1);
      return dtype === 'int32'
        ? { x: { dtype, dims, data: new Int32Array(n) } }
        : { x: { dtype, dims, data: new Float32Array(n) } };
    };
    const cases: [string, TensorMap, string[] | undefined, string][] = [
      ['dtype', x('int32', [1, MLP.features]), undefined, 'E_INPUT_DTYPE'],
      ['rank', x('float32', [MLP.features]), undefined, 'E_INPUT_SHAPE'],
      ['rank3', x('float32', [1, 1, MLP.features]), undefined, 'E_INPUT_SHAPE'],
      ['dims', x('float32', [1, MLP.features + 1]), undefined, 'E_INPUT_SHAPE'],
      ['missing', {}, undefined, 'E_INPUT_MISSING'],
      ['unknown-input', { ...mlpInput(1), extra: mlpInput(1).x! }, undefined, 'E_INPUT_MISSING'],
      ['unknown-output', mlpInput(1), ['probs', 'logits'], 'E_OUTPUT_NOT_FOUND'],
    ];
    for (const [id, inputs, outputs, code] of cases) {
      const log = await client.infer({
        id,
        model: 'mlp',
        inputs,
        ...(outputs === undefined ? {} : { outputs }),
      });
      expect(errorCodeOf(log), id).toBe(code);
      expect(log.error?.retryable, id).toBe(false);
      // Rejected up front: no progress was ever reported for it.
      expect(log.progress, id).toEqual([]);
    }
    const unknown = await client.infer({ id: 'nope', model: 'no-such-model', inputs: mlpInput(1) });
    expect(errorCodeOf(unknown)).toBe('E_MODEL_NOT_FOUND');
    // A warm of an unknown model is a connection-level error, not a crash.
    client.send({ type: 'warm', model: 'no-such-model' });
    const warmError = await client.nextOf('error', (m) => m.id === null);
    expect(warmError.code).toBe('E_MODEL_NOT_FOUND');
    // The same connection and another one still get results.
    await expectServing(client, 'after-bad-input');
    await expectServing(bystander, 'bystander-1');
    await client.close();
  });

  it('refuses a malformed infer whose id it can read as that job, so its sender is not left waiting', async () => {
    const client = await connectClient(ctx.url);
    // Each is well-formed but for one field; a client that sent it waits for its id.
    const frames = {
      'bad-priority': rawFrame(
        '{"type":"infer","id":"bad-priority","model":"mlp","priority":11,"inputs":[]}',
      ),
      'bad-deadline': rawFrame(
        '{"type":"infer","id":"bad-deadline","model":"mlp","deadlineMs":-1,"inputs":[]}',
      ),
      'bad-output': rawFrame(
        '{"type":"infer","id":"bad-output","model":"mlp","outputs":[""],"inputs":[]}',
      ),
    };
    for (const [id, frame] of Object.entries(frames)) {
      client.sendRaw(frame);
      const error = await client.nextOf('error');
      expect([error.id, error.code], id).toEqual([id, 'E_PROTOCOL']);
    }
    // No readable id (not an infer, or an id that is no id): a connection-level error, as before.
    client.sendRaw(rawFrame('{"type":"infer","id":7,"model":"mlp","inputs":[]}'));
    expect((await client.nextOf('error')).id).toBeNull();
    client.sendRaw(rawFrame('{"type":"cancel","id":"x","extra":[}'));
    expect((await client.nextOf('error')).id).toBeNull();
    await expectServing(client, 'after-malformed-infer');
    await client.close();
  });

  it('closes with 1009 on a frame over maxPayloadBytes; others keep being served', async () => {
    const client = await connectClient(ctx.url);
    expect(client.welcome!.limits.maxPayloadBytes).toBe(MAX_PAYLOAD_BYTES);
    const rows = Math.ceil(MAX_PAYLOAD_BYTES / (4 * MLP.features)) + 1;
    client.send({ type: 'infer', id: 'big', model: 'mlp', inputs: mlpInput(rows) });
    expect((await client.closed).code).toBe(1009);
    await expectServing(bystander, 'bystander-2');
  });

  it('answers 10,000 malformed frames with codes, then closes 1008; others are served', async () => {
    const client = await connectClient(ctx.url);
    for (const frame of malformedFrames(10_000, 11)) client.sendRaw(frame);
    const closed = await client.closed;
    expect(closed.code).toBe(1008);
    const errors = client.received.filter((m): m is ErrorMessage => m.type === 'error');
    // Every malformed frame up to the limit was answered with a coded error: connection-level,
    // or addressed to the infer's id where its header could be read.
    expect(errors).toHaveLength(100);
    for (const error of errors) {
      expect(MALFORMED_IDS).toContain(error.id);
      expect(MALFORMED_CODES).toContain(error.code);
    }
    expect(client.received.some((m) => m.type === 'result')).toBe(false);
    await expectServing(bystander, 'bystander-3');
    const live = await fetch(`${ctx.url}/v2/health/live`);
    expect(live.status).toBe(200);
  });

  it('answers each of 10,000 malformed frames when allowed, and the connection still works', async () => {
    const client = await connectClient(lenient.url);
    const frames = malformedFrames(10_000, 12);
    for (const frame of frames) client.sendRaw(frame);
    // Frames are answered in order: after the pong every error is in.
    await client.roundTrip();
    const errors = client.pending().filter((m): m is ErrorMessage => m.type === 'error');
    expect(errors).toHaveLength(frames.length);
    const codes = new Set(errors.map((error) => error.code));
    for (const code of codes) expect(MALFORMED_CODES).toContain(code);
    // Every kind of malformation produced its own code somewhere in the run.
    expect([...codes].sort()).toEqual([...MALFORMED_CODES].sort());
    expect(new Set(errors.map((error) => error.id))).toEqual(new Set(MALFORMED_IDS));
    await expectServing(client, 'after-malformed');
    await client.close();
  });

  it('drops a peer that stops answering heartbeats', async () => {
    const beat = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      { heartbeatIntervalMs: 100 },
    );
    try {
      const dead = await connectClient(beat.url, { autoPong: false });
      const alive = await connectClient(beat.url);
      // A silent peer is terminated (no closing handshake: 1006 on this side).
      expect((await dead.closed).code).toBe(1006);
      await expectServing(alive, 'alive');
      expect(alive.closeInfo).toBeUndefined();
      const metrics = await scrapeMetrics(beat.url);
      expect(metricValue(metrics, 'tandem_websocket_connections')).toBe(1);
      await alive.close();
    } finally {
      await beat.close();
    }
  });
});

describe('ws-gateway: disconnect mid-job and resume', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeSlowModel(dir);
    });
    const warm = await fetch(`${ctx.url}/v1/models/slow/warm?wait=true`, { method: 'POST' });
    expect(warm.status).toBe(200);
  });
  afterAll(async () => {
    await ctx.close();
  });

  /** Expects exactly one result for `id` on `client`, and a second resume to find nothing. */
  async function expectOneResult(client: TestClient, id: string, seed: number): Promise<void> {
    const log = await client.collectJob(id);
    const result = resultOf(log);
    expectSameTensors(result.outputs, { y: slowInput(64, seed).x! });
    await client.acknowledged(id);
    await client.roundTrip();
    expect(
      client.pending().filter((m) => (m.type === 'result' || m.type === 'error') && m.id === id),
    ).toEqual([]);
    client.send({ type: 'resume', ids: [id] });
    expect(errorCodeOf(await client.collectJob(id))).toBe('E_JOB_NOT_FOUND');
  }

  it('delivers exactly one result to a client that reconnects while its jobs run', async () => {
    // This client never acknowledges: a result that reached it before it left stays resumable.
    const first = await connectClient(ctx.url, { autoPong: false });
    const ids = ['r-1', 'r-2', 'r-3', 'r-4'];
    ids.forEach((id, index) => {
      first.send({ type: 'infer', id, model: 'slow', inputs: slowInput(64, index) });
    });
    // The server has accepted the last job once it reports progress for it.
    await first.nextOf('progress', (m) => m.event.jobId === 'r-4');
    await first.close();
    const second = await connectClient(ctx.url);
    second.send({ type: 'resume', ids });
    for (const [index, id] of ids.entries()) await expectOneResult(second, id, index);
    await second.close();
  });

  it('delivers exactly one result to a client that reconnects after its job finished', async () => {
    const jobsDone = async (): Promise<number> =>
      metricValue(await scrapeMetrics(ctx.url), 'tandem_jobs_total', { model: 'slow' }) ?? 0;
    const before = await jobsDone();
    const first = await connectClient(ctx.url);
    first.send({ type: 'infer', id: 'f-1', model: 'slow', inputs: slowInput(64, 5) });
    await first.nextOf('progress', (m) => m.event.jobId === 'f-1');
    await first.terminate();
    // No event tells a disconnected client its job ended: a bounded poll of /metrics.
    for (let i = 0; i < 200 && (await jobsDone()) <= before; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(await jobsDone()).toBe(before + 1);
    const second = await connectClient(ctx.url);
    second.send({ type: 'resume', ids: ['f-1'] });
    await expectOneResult(second, 'f-1', 5);
    await second.close();
  });

  it('forgets a result once the client has it (it answered a ping sent after the result)', async () => {
    const client = await connectClient(ctx.url);
    client.send({ type: 'infer', id: 'k-1', model: 'slow', inputs: slowInput(64, 6) });
    await expectOneResult(client, 'k-1', 6);
    const other = await connectClient(ctx.url);
    other.send({ type: 'resume', ids: ['k-1'] });
    expect(errorCodeOf(await other.collectJob('k-1'))).toBe('E_JOB_NOT_FOUND');
    await Promise.all([client.close(), other.close()]);
  });

  it('acknowledges a burst of outcomes with fewer pings than outcomes, and forgets them all', async () => {
    const client = await connectClient(ctx.url);
    const ids = Array.from({ length: 24 }, (_, i) => `b-${i}`);
    ids.forEach((id, i) =>
      client.send({ type: 'infer', id, model: 'slow', inputs: slowInput(1, i), progress: false }),
    );
    for (const id of ids) resultOf(await client.collectJob(id));
    await client.acknowledged(ids.at(-1)!);
    await client.roundTrip();
    expect(client.acknowledgementPings).toBeGreaterThan(0);
    expect(client.acknowledgementPings).toBeLessThan(ids.length);
    client.send({ type: 'resume', ids });
    for (const id of ids) expect(errorCodeOf(await client.collectJob(id))).toBe('E_JOB_NOT_FOUND');
    await client.close();
  });

  it('keeps a sent result resumable while the client has not acknowledged it', async () => {
    // A peer that never answers pings cannot prove it read the result: it stays resumable.
    const deaf = await connectClient(ctx.url, { autoPong: false });
    deaf.send({ type: 'infer', id: 'u-1', model: 'slow', inputs: slowInput(64, 8) });
    expectSameTensors(resultOf(await deaf.collectJob('u-1')).outputs, { y: slowInput(64, 8).x! });
    await deaf.roundTrip();
    await deaf.terminate();
    const second = await connectClient(ctx.url);
    second.send({ type: 'resume', ids: ['u-1'] });
    await expectOneResult(second, 'u-1', 8);
    await second.close();
  });

  it('keeps sending progress to a client that resumed before the server saw its old connection close', async () => {
    // A client that finds its connection dead reconnects and resumes at once; the server may
    // only notice the old connection's end later (a heartbeat or two). That end must not take
    // the job's progress away from the new connection.
    const openConnections = async (): Promise<number> =>
      (await ctx.server.metrics.connections.get()).values[0]?.value ?? 0;
    const filler = await connectClient(ctx.url);
    filler.send({ type: 'infer', id: 'p-long', model: 'slow', inputs: slowInput(4096) });
    await filler.nextOf(
      'progress',
      (m) => m.event.jobId === 'p-long' && m.event.stage === 'running',
    );
    filler.send({ type: 'infer', id: 'p-ahead', model: 'slow', inputs: slowInput(1) });
    await filler.nextOf(
      'progress',
      (m) => m.event.jobId === 'p-ahead' && m.event.stage === 'queued',
    );

    const old = await connectClient(ctx.url);
    old.send({ type: 'infer', id: 'p-job', model: 'slow', inputs: slowInput(64, 9) });
    await old.nextOf('progress', (m) => m.event.jobId === 'p-job' && m.event.queuePosition === 1);
    const resumed = await connectClient(ctx.url);
    resumed.send({ type: 'resume', ids: ['p-job'] });
    await resumed.nextOf('progress', (m) => m.event.jobId === 'p-job');
    await old.close();
    // No message tells a test the server has handled a close: a bounded poll of its gauge.
    for (let i = 0; i < 200 && (await openConnections()) > 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await openConnections()).toBe(2);
    resumed.takeProgress('p-job');

    // The job moves up the queue and runs: the resumed connection hears both.
    filler.send({ type: 'cancel', id: 'p-ahead' });
    const log = await resumed.collectJob('p-job');
    expectSameTensors(resultOf(log).outputs, { y: slowInput(64, 9).x! });
    expect(stagesOf(log.progress)).toContain('running');
    expect(log.progress.some((event) => event.queuePosition === 0)).toBe(true);
    for (const id of ['p-long', 'p-ahead']) await filler.collectJob(id);
    await Promise.all([resumed.close(), filler.close()]);
  });

  it('refuses an id in flight under the same key on another connection with E_DUPLICATE_JOB', async () => {
    // Ids are unique per API key, not per connection (a resume on a new connection finds the
    // job by it); this server has no keys, so every caller shares one.
    const first = await connectClient(ctx.url);
    first.send({ type: 'infer', id: 'd-long', model: 'slow', inputs: slowInput(4096) });
    await first.nextOf(
      'progress',
      (m) => m.event.jobId === 'd-long' && m.event.stage === 'running',
    );
    first.send({ type: 'infer', id: 'd-1', model: 'slow', inputs: slowInput(64, 10) });
    await first.nextOf('progress', (m) => m.event.jobId === 'd-1' && m.event.stage === 'queued');
    const second = await connectClient(ctx.url);
    second.send({ type: 'infer', id: 'd-1', model: 'slow', inputs: slowInput(64, 11) });
    const refused = await second.collectJob('d-1');
    expect(errorCodeOf(refused)).toBe('E_DUPLICATE_JOB');
    expect(refused.error?.retryable).toBe(false);
    // The job in flight is untouched: its own client gets its own result.
    await first.collectJob('d-long');
    expectSameTensors(resultOf(await first.collectJob('d-1')).outputs, {
      y: slowInput(64, 10).x!,
    });
    await Promise.all([first.close(), second.close()]);
  });

  it('answers a resume of an id it never saw with E_JOB_NOT_FOUND', async () => {
    const client = await connectClient(ctx.url);
    client.send({ type: 'resume', ids: ['never'] });
    expect(errorCodeOf(await client.collectJob('never'))).toBe('E_JOB_NOT_FOUND');
    await client.close();
  });
});

describe('ws-gateway: a refused upgrade has the HTTP error shape', () => {
  it('answers an upgrade while draining with 503, Retry-After and a retryable body, as HTTP routes do', async () => {
    const ctx = await startServer(async (dir) => {
      await writeSlowModel(dir);
    });
    const client = await connectClient(ctx.url);
    // A long job keeps the server draining while the upgrade is tried.
    client.send({ type: 'infer', id: 'held', model: 'slow', inputs: slowInput(4096) });
    await client.nextOf('progress', (m) => m.event.jobId === 'held' && m.event.stage === 'running');
    const closed = ctx.close();
    // Draining starts inside close() with no event for it: a bounded poll of readiness.
    for (let i = 0; i < 200; i++) {
      if ((await fetch(`${ctx.url}/v2/health/ready`)).status === 503) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const refused = await refusedUpgrade(ctx.url);
    const http = await fetch(`${ctx.url}/v2/models/slow/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [1, 256], data: Array<number>(256).fill(0) },
        ],
      }),
    });
    expect(refused.status).toBe(503);
    expect(http.status).toBe(503);
    const body: unknown = JSON.parse(refused.body);
    expect(body).toEqual({
      error: 'the server is shutting down',
      code: 'E_SHUTTING_DOWN',
      retryable: true,
      retryAfterMs: 1000,
    });
    const httpBody = (await http.json()) as object;
    expect(Object.keys(body as object).sort()).toEqual(Object.keys(httpBody).sort());
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers['retry-after']).toBe(http.headers.get('retry-after'));
    resultOf(await client.collectJob('held'));
    await closed;
  });

  it('says a refusal that retrying cannot fix is not retryable, and sends no Retry-After', async () => {
    const ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      { origins: ['https://app.example'] },
    );
    const refused = await refusedUpgrade(ctx.url, { origin: 'https://evil.example' });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toEqual({
      error: 'origin https://evil.example is not allowed',
      code: 'E_FORBIDDEN_ORIGIN',
      retryable: false,
    });
    expect(refused.headers['retry-after']).toBeUndefined();
    await ctx.close();
  });
});

describe('ws-gateway: API key in hello (allowKeyInHello)', () => {
  const KEY = 'tk_test_bob';
  const keys = [{ id: 'bob', sha256: hashApiKey(KEY) }];
  let inHello: TestServer;
  let strict: TestServer;

  beforeAll(async () => {
    const setup = async (dir: string): Promise<void> => {
      await writeModelFile(dir, 'mlp', 1, MLP.bytes);
    };
    [inHello, strict] = await Promise.all([
      startServer(setup, { apiKeys: keys, allowKeyInHello: true }),
      startServer(setup, { apiKeys: keys }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([inHello.close(), strict.close()]);
  });

  it('accepts the key in hello when allowed, and runs jobs as that key', async () => {
    const client = await connectClient(inHello.url, { apiKey: KEY, keyIn: 'hello' });
    await expectServing(client, 'hello-key');
    const usage = await fetch(`${inHello.url}/v1/usage`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    const rows = ((await usage.json()) as { usage: { key: string; model: string; jobs: number }[] })
      .usage;
    expect(rows.map(({ key, model, jobs }) => ({ key, model, jobs }))).toEqual([
      { key: 'bob', model: 'mlp', jobs: 1 },
    ]);
    await client.close();
  });

  it('answers a wrong or missing key in hello with E_UNAUTHORIZED, then closes 1008', async () => {
    for (const apiKey of ['tk_test_mallory', undefined]) {
      const client = await connectClient(inHello.url, { hello: false });
      client.send({
        type: 'hello',
        protocolVersion: PROTOCOL_VERSION,
        client: { name: 't', version: '0' },
        ...(apiKey === undefined ? {} : { apiKey }),
      });
      // A job sent right after the refused hello is never run.
      client.send({ type: 'infer', id: 'sneaky', model: 'mlp', inputs: mlpInput(1) });
      const error = await client.nextOf('error');
      expect([error.id, error.code], String(apiKey)).toEqual([null, 'E_UNAUTHORIZED']);
      expect((await client.closed).code, String(apiKey)).toBe(1008);
      expect(client.received.some((m) => m.type === 'welcome' || m.type === 'result')).toBe(false);
    }
  });

  it('still checks a key in the upgrade: a wrong one gets 401, a right one needs none in hello', async () => {
    const wrong = await refusedUpgrade(inHello.url, {
      protocols: ['tandem.v1', 'tandem.key.tk_test_mallory'],
    });
    expect([wrong.status, wrong.code]).toEqual([401, 'E_UNAUTHORIZED']);
    const client = await connectClient(inHello.url, { apiKey: KEY, keyIn: 'bearer' });
    await expectServing(client, 'upgrade-key');
    await client.close();
  });

  it('without allowKeyInHello, refuses an upgrade that carries no key (401) and accepts one that does', async () => {
    const refused = await refusedUpgrade(strict.url);
    expect([refused.status, refused.code]).toEqual([401, 'E_UNAUTHORIZED']);
    for (const keyIn of ['subprotocol', 'bearer'] as const) {
      const client = await connectClient(strict.url, { apiKey: KEY, keyIn });
      await expectServing(client, `strict-${keyIn}`);
      await client.close();
    }
  });
});

/** Elements of {@link buildExpandModel}'s output: 4 MiB of float32 from a 4-byte input. */
const BIG_ELEMENTS = 1 << 20;

/** `y` = `x` (float32 `[1]`) repeated BIG_ELEMENTS times: a large result for a tiny request. */
function buildExpandModel(): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', dtype: 'float32', dims: [1] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: [BIG_ELEMENTS] }],
    initializers: [
      { name: 'shape', dtype: 'int64', dims: [1], data: new BigInt64Array([BigInt(BIG_ELEMENTS)]) },
    ],
    nodes: [{ opType: 'Expand', inputs: ['x', 'shape'], outputs: ['y'] }],
  });
}

function bigInput(value: number): TensorMap {
  return { x: { dtype: 'float32', dims: [1], data: new Float32Array([value]) } };
}

describe('ws-gateway: a client that stops reading (maxBufferedBytes)', () => {
  /** Results queued for the paused client: far more than loopback's socket buffers absorb. */
  const BIG_JOBS = 8;
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'big', 1, buildExpandModel());
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
        // Loaded by `warm` only to mark a point in the paused client's stream (see below).
        for (const name of ['mark-1', 'mark-2'])
          await writeModelFile(dir, name, 1, buildTinyModel().bytes);
      },
      { maxBufferedBytes: 1 << 20, progressIntervalMs: 0 },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('drops its progress events, never its results, and answers its new jobs with E_BUSY', async () => {
    const slow = await connectClient(ctx.url);
    const bystander = await connectClient(ctx.url);
    slow.send({ type: 'warm', model: 'big' });
    await slow.nextOf('model', (m) => m.model.name === 'big' && m.model.state === 'ready');

    // The client stops reading its socket: what the server writes piles up in its buffer.
    slow.socket.pause();
    const ids = Array.from({ length: BIG_JOBS }, (_, i) => `big-${i}`);
    for (const [i, id] of ids.entries())
      slow.send({ type: 'infer', id, model: 'big', inputs: bigInput(i + 1) });
    // Queued behind them: it starts once all but the last result sit in the buffer.
    slow.send({ type: 'infer', id: 'behind', model: 'big', inputs: bigInput(-1) });
    // A socket's messages are handled in order: once the bystander hears mark-1 loading, the
    // server has accepted every job above.
    slow.send({ type: 'warm', model: 'mark-1' });
    await bystander.nextOf('model', (m) => m.model.name === 'mark-1');
    // FIFO: when this result is out, so is every result of the paused client.
    const probe = await bystander.infer({ id: 'bystander-big', model: 'big', inputs: bigInput(7) });
    expect(resultOf(probe).outputs.y?.dims).toEqual([BIG_ELEMENTS]);
    await expectServing(bystander, 'bystander-mlp');

    slow.send({ type: 'infer', id: 'refused', model: 'mlp', inputs: mlpInput(1) });
    slow.send({ type: 'warm', model: 'mark-2' });
    await bystander.nextOf('model', (m) => m.model.name === 'mark-2');

    slow.socket.resume();
    for (const [i, id] of ids.entries()) {
      const y = resultOf(await slow.collectJob(id)).outputs.y!;
      expect(y.dims, id).toEqual([BIG_ELEMENTS]);
      expect(
        (y.data as Float32Array).every((value) => value === i + 1),
        id,
      ).toBe(true);
    }
    const behind = await slow.collectJob('behind');
    expect((resultOf(behind).outputs.y?.data as Float32Array)[0]).toBe(-1);
    // The server reports `running` for every job it starts; this one's was dropped.
    expect(stagesOf(behind.progress)).not.toContain('running');
    const refused = await slow.collectJob('refused');
    expect(errorCodeOf(refused)).toBe('E_BUSY');
    expect(refused.error?.retryable).toBe(true);
    expect(refused.error?.retryAfterMs).toBeGreaterThan(0);
    expect(refused.progress).toEqual([]);

    // Reading again, the client is served as before, progress included.
    await slow.roundTrip();
    const after = await slow.infer({ id: 'after', model: 'big', inputs: bigInput(3) });
    expect((resultOf(after).outputs.y?.data as Float32Array)[0]).toBe(3);
    expect(stagesOf(after.progress)).toEqual(['queued', 'running']);
    expect(slow.closeInfo).toBeUndefined();
    await Promise.all([slow.close(), bystander.close()]);
  });
});

describe('ws-gateway: a connection that never says hello (helloTimeoutMs)', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      { helloTimeoutMs: 200 },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('is told E_PROTOCOL and closed with 1008; a client that says hello stays', async () => {
    const silent = await connectClient(ctx.url, { hello: false });
    const polite = await connectClient(ctx.url);
    const error = await silent.nextOf('error');
    expect([error.id, error.code]).toEqual([null, 'E_PROTOCOL']);
    expect((await silent.closed).code).toBe(1008);
    // The connection that said hello is not cut, and is served after the silent one is gone.
    await expectServing(polite, 'after-timeout');
    await polite.close();
  });
});

describe('ws-gateway: connections waiting to say hello (maxPendingHellos)', () => {
  const KEY = 'tk_test_pending';
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      {
        apiKeys: [{ id: 'pending', sha256: hashApiKey(KEY) }],
        allowKeyInHello: true,
        // Long: the silent sockets below must not be cut while the test holds them.
        helloTimeoutMs: 60_000,
        maxPendingHellos: 2,
      },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('refuses upgrades with 503 E_BUSY past the cap, and takes them again once one says hello', async () => {
    // Keyless sockets, as a client that means to send its key in hello opens them.
    const first = await connectClient(ctx.url, { hello: false });
    const second = await connectClient(ctx.url, { hello: false });
    const refused = await refusedUpgrade(ctx.url, { protocols: ['tandem.v1'] });
    expect(refused.status).toBe(503);
    expect((JSON.parse(refused.body) as { code: string }).code).toBe('E_BUSY');
    await first.hello(KEY);
    const third = await connectClient(ctx.url, { apiKey: KEY, keyIn: 'hello' });
    await expectServing(third, 'after-hello');
    // Those that said hello hold no place: one more silent socket fills the cap again.
    const fourth = await connectClient(ctx.url, { hello: false });
    expect((await refusedUpgrade(ctx.url, { protocols: ['tandem.v1'] })).status).toBe(503);
    await Promise.all([first.close(), second.close(), third.close(), fourth.close()]);
  });
});

describe('ws-gateway: every refusal counted once in tandem_rejections_total', () => {
  const KEY = 'tk_test_carol';
  /** A key with room for one job a minute: its second job is refused. */
  const SCARCE_KEY = 'tk_test_dave';
  const MAX_PAYLOAD_BYTES = 64 * 1024;
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      {
        apiKeys: [
          { id: 'carol', sha256: hashApiKey(KEY) },
          { id: 'dave', sha256: hashApiKey(SCARCE_KEY), ratePerMinute: 1 },
        ],
        origins: ['https://app.example'],
        maxPayloadBytes: MAX_PAYLOAD_BYTES,
      },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('counts refused upgrades, rate limits, unknown models, bad input and bad frames by code', async () => {
    expect((await refusedUpgrade(ctx.url)).status).toBe(401);
    const foreign = await refusedUpgrade(ctx.url, {
      origin: 'https://evil.example',
      protocols: ['tandem.v1', `tandem.key.${KEY}`],
    });
    expect(foreign.status).toBe(403);

    const client = await connectClient(ctx.url, { apiKey: KEY });
    const unknown = await client.infer({ id: 'u', model: 'made-up-name', inputs: mlpInput(1) });
    expect(errorCodeOf(unknown)).toBe('E_MODEL_NOT_FOUND');
    // Refused by the model's own input check (which counts it): counted once, not twice.
    const wrongShape: TensorMap = {
      x: { dtype: 'float32', dims: [1, MLP.features + 1], data: new Float32Array(17) },
    };
    const shape = await client.infer({ id: 's', model: 'mlp', inputs: wrongShape });
    expect(errorCodeOf(shape)).toBe('E_INPUT_SHAPE');
    client.sendRaw(Uint8Array.from([1, 2, 3]));
    expect((await client.nextOf('error', (m) => m.id === null)).code).toBe('E_PROTOCOL');
    await expectServing(client, 'served');

    const scarce = await connectClient(ctx.url, { apiKey: SCARCE_KEY });
    resultOf(await scarce.infer({ id: 'first', model: 'mlp', inputs: mlpInput(1) }));
    const limited = await scarce.infer({ id: 'second', model: 'mlp', inputs: mlpInput(1) });
    expect(errorCodeOf(limited)).toBe('E_RATE_LIMITED');

    const oversize = await connectClient(ctx.url, { apiKey: KEY });
    const rows = Math.ceil(MAX_PAYLOAD_BYTES / (4 * MLP.features)) + 1;
    oversize.send({ type: 'infer', id: 'big', model: 'mlp', inputs: mlpInput(rows) });
    expect((await oversize.closed).code).toBe(1009);

    const metrics = await scrapeMetrics(ctx.url);
    const rejections = (code: string, model: string): number | undefined =>
      metricValue(metrics, 'tandem_rejections_total', { code, model });
    // No model (or one the server does not know): the empty label value.
    expect(rejections('E_UNAUTHORIZED', '')).toBe(1);
    expect(rejections('E_FORBIDDEN_ORIGIN', '')).toBe(1);
    expect(rejections('E_MODEL_NOT_FOUND', '')).toBe(1);
    expect(rejections('E_PROTOCOL', '')).toBe(1);
    expect(rejections('E_PAYLOAD_TOO_LARGE', '')).toBe(1);
    expect(rejections('E_INPUT_SHAPE', 'mlp')).toBe(1);
    expect(rejections('E_RATE_LIMITED', 'mlp')).toBe(1);
    // A name a client made up never becomes a label value (series would grow without bound).
    expect(metrics).not.toContain('made-up-name');
    await Promise.all([client.close(), scarce.close()]);
  });
});

describe('ws-gateway: dynamic batching (model.json maxBatch)', () => {
  /** Jobs sent at once, one row each: exactly one full batch. */
  const JOBS = 8;
  let ctx: TestServer;
  let mlpPath: string;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      mlpPath = await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      // A long maxDelayMs: the batch runs when its JOBS rows are in, not when a timer fires, so
      // the jobs below always share one run however the connections interleave.
      writeModelConfig(dir, 'mlp', 1, { maxBatch: JOBS, maxDelayMs: 10_000 });
      // Two inputs whose leading dims are named apart (as paddle2onnx names them), each passed
      // through: a job may give them different sizes and still be a valid job.
      await writeModelFile(
        dir,
        'pair',
        1,
        buildModel({
          inputs: [
            { name: 'a', dtype: 'float32', dims: ['n', 2] },
            { name: 'b', dtype: 'float32', dims: ['m', 2] },
          ],
          outputs: [
            { name: 'ya', dtype: 'float32', dims: ['n', 2] },
            { name: 'yb', dtype: 'float32', dims: ['m', 2] },
          ],
          nodes: [
            { opType: 'Identity', inputs: ['a'], outputs: ['ya'] },
            { opType: 'Identity', inputs: ['b'], outputs: ['yb'] },
          ],
        }),
      );
      writeModelConfig(dir, 'pair', 1, { maxBatch: 4, maxDelayMs: 10_000 });
    });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('runs concurrent requests from several connections as one batch, each answered with its own row', async () => {
    const clients = await Promise.all(
      Array.from({ length: JOBS / 2 }, () => connectClient(ctx.url)),
    );
    const jobs = Array.from({ length: JOBS }, (_, i) => ({
      client: clients[i % clients.length]!,
      id: `batch-${i}`,
      inputs: mlpInput(1, 100 + i),
    }));
    for (const { client, id, inputs } of jobs)
      client.send({ type: 'infer', id, model: 'mlp', inputs });
    const logs = await Promise.all(jobs.map(({ client, id }) => client.collectJob(id)));
    for (const [i, log] of logs.entries()) {
      expectSameTensors(resultOf(log).outputs, await runDirect(mlpPath, jobs[i]!.inputs));
    }
    const metrics = await scrapeMetrics(ctx.url);
    const ran = metricValue(metrics, 'tandem_run_seconds_count', { model: 'mlp' });
    expect(metricValue(metrics, 'tandem_jobs_total', { model: 'mlp' })).toBe(JOBS);
    expect(ran).toBeGreaterThanOrEqual(1);
    expect(ran).toBeLessThan(JOBS);
    await Promise.all(clients.map((client) => client.close()));
  });

  it("runs a job whose inputs disagree on the batch dimension alone: it fails no other job's run", async () => {
    const rows = (n: number, seed: number): Tensor => ({
      dtype: 'float32',
      dims: [n, 2],
      data: Float32Array.from({ length: n * 2 }, (_, k) => seed * 100 + k),
    });
    const client = await connectClient(ctx.url);
    // Four one-row jobs fill a batch at once (maxBatch 4); `odd` has 1 row of a but 2 of b.
    const jobs = [
      { id: 'n-1', inputs: { a: rows(1, 1), b: rows(1, 2) } },
      { id: 'odd', inputs: { a: rows(1, 3), b: rows(2, 4) } },
      { id: 'n-2', inputs: { a: rows(1, 5), b: rows(1, 6) } },
      { id: 'n-3', inputs: { a: rows(1, 7), b: rows(1, 8) } },
      { id: 'n-4', inputs: { a: rows(1, 9), b: rows(1, 10) } },
    ];
    for (const { id, inputs } of jobs) client.send({ type: 'infer', id, model: 'pair', inputs });
    for (const { id, inputs } of jobs) {
      const result = resultOf(await client.collectJob(id));
      expectSameTensors(result.outputs, { ya: inputs.a, yb: inputs.b });
    }
    await client.close();
  });
});

describe("ws-gateway: a key's concurrency limit (maxConcurrent)", () => {
  const KEY = 'tk_test_erin';
  /** Rows of the job that holds the instance: hundreds of ms, far longer than the probes. */
  const LONG_ROWS = 1024;
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir);
      },
      { apiKeys: [{ id: 'erin', sha256: hashApiKey(KEY), maxConcurrent: 2 }] },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('refuses jobs past the limit with E_RATE_LIMITED on any connection of the key, and completes the others', async () => {
    const first = await connectClient(ctx.url, { apiKey: KEY });
    const second = await connectClient(ctx.url, { apiKey: KEY });
    // The model is cold and the first job long, so both stay in flight while the probes go out;
    // the second waits behind the first.
    first.send({ type: 'infer', id: 'c-1', model: 'slow', inputs: slowInput(LONG_ROWS, 1) });
    first.send({ type: 'infer', id: 'c-2', model: 'slow', inputs: slowInput(1, 2) });
    await first.nextOf('progress', (m) => m.event.jobId === 'c-2');
    for (const [client, id] of [
      [second, 'c-3'],
      [first, 'c-4'],
    ] as const) {
      const refused = await client.infer({ id, model: 'slow', inputs: slowInput(1, 3) });
      expect(errorCodeOf(refused), id).toBe('E_RATE_LIMITED');
      expect(refused.error?.retryable, id).toBe(true);
      expect(refused.error?.retryAfterMs, id).toBeGreaterThan(0);
    }
    for (const [id, rows, seed] of [
      ['c-1', LONG_ROWS, 1],
      ['c-2', 1, 2],
    ] as const) {
      expectSameTensors(resultOf(await first.collectJob(id)).outputs, {
        y: slowInput(rows, seed).x!,
      });
    }
    // Their slots are free again once their results are out.
    const again = await second.infer({ id: 'c-5', model: 'slow', inputs: slowInput(1, 5) });
    expectSameTensors(resultOf(again).outputs, { y: slowInput(1, 5).x! });
    await Promise.all([first.close(), second.close()]);
  });
});
