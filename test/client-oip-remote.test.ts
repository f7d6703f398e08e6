// The client's OIP v2 HTTP transport against a real server's HTTP side (what it would send to
// Triton or KServe): binary tensors both ways, a subset of outputs, coded errors, the server's
// `tandem_*` response parameters (backend, cold start, timings), and createTandem with
// `remote: 'oip'`. Then against raw HTTP servers on loopback: ones that answer as a foreign OIP
// server would (no Tandem parameters, or malformed ones; readiness as the only hint of a cold
// start), and ones that hold their answers, for what a real server only does at a bad moment: a
// cancel while the response body is arriving, and a readiness probe that never answers.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type RequestListener,
  type ServerResponse,
} from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromFloat16Bits, type ProgressEvent, type TensorMap } from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { OipRemote, createTandem } from '@tandem/client';
import {
  buildMlpClassifier,
  createPrng,
  fillUniform,
  rejectionCode,
  writeModelFile,
} from '@tandem/test-support';

function mlpInput(rows: number, seed: number): TensorMap {
  return {
    x: {
      dtype: 'float32',
      dims: [rows, 8],
      data: fillUniform(new Float32Array(rows * 8), createPrng(seed), -1, 1),
    },
  };
}

function options(
  jobId: string,
  events: ProgressEvent[] = [],
  signal = new AbortController().signal,
) {
  return { jobId, priority: 5, signal, onProgress: (e: ProgressEvent) => events.push(e) };
}

/** A raw HTTP server on loopback; `close` also ends the responses it is still holding. */
async function rawServer(
  listener: RequestListener,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createHttpServer(listener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('OipRemote against a real server', () => {
  let dir: string;
  let server: TandemServer;
  let url: string;
  let mlpPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-oip-'));
    mlpPath = await writeModelFile(
      dir,
      'mlp',
      1,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 5 }).bytes,
    );
    // Run by one test only: its first call is a cold start.
    await writeModelFile(
      dir,
      'fresh',
      1,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 7 }).bytes,
    );
    server = await createServer({ port: 0, catalog: false, modelsDir: dir });
    url = await server.listen();
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs with binary tensors both ways, equal to onnxruntime-node', async () => {
    const remote = new OipRemote({ url });
    const inputs = mlpInput(3, 1);
    const events: ProgressEvent[] = [];
    const result = await remote.run({ name: 'mlp' }, inputs, options('o-1', events));
    const session = await ort.InferenceSession.create(mlpPath);
    const direct = await session.run({
      x: new ort.Tensor('float32', inputs.x!.data as Float32Array, [3, 8]),
    });
    await session.release();
    expect(Array.from(result.outputs.probs!.data as Float32Array)).toEqual(
      Array.from(direct.probs!.data as Float32Array),
    );
    expect(Array.from(result.outputs.label!.data as BigInt64Array)).toEqual(
      Array.from(direct.label!.data as BigInt64Array),
    );
    expect(events.map((e) => e.stage)).toEqual(['queued', 'running']);
    expect((await remote.estimate({ name: 'mlp' })).ms).toBeGreaterThan(0);
  });

  it('returns only the requested outputs and keeps error codes', async () => {
    const remote = new OipRemote({ url });
    const result = await remote.run({ name: 'mlp' }, mlpInput(1, 2), {
      ...options('o-2'),
      outputs: ['label'],
    });
    expect(Object.keys(result.outputs)).toEqual(['label']);
    const bad: TensorMap = { x: { dtype: 'float32', dims: [1, 7], data: new Float32Array(7) } };
    expect(await rejectionCode(remote.run({ name: 'mlp' }, bad, options('o-3')))).toBe(
      'E_INPUT_SHAPE',
    );
    expect(await rejectionCode(remote.run({ name: 'nope' }, bad, options('o-4')))).toBe(
      'E_MODEL_NOT_FOUND',
    );
    expect((await remote.estimate({ name: 'nope' })).available).toBe(false);
  });

  it("reports the server's backend, its cold start and its timings, from the response parameters", async () => {
    const tandem = createTandem({
      server: url,
      remote: 'oip',
      models: { fresh: { name: 'fresh' } },
    });
    try {
      const first = await tandem.run('fresh', mlpInput(1, 7));
      const second = await tandem.run('fresh', mlpInput(1, 8));
      expect(first).toMatchObject({ placement: 'remote', backend: 'cpu', cold: true });
      expect(second).toMatchObject({ placement: 'remote', backend: 'cpu', cold: false });
      // The server's own figures: a load only for the cold start.
      expect(first.timings.loadMs).toBeGreaterThan(0);
      expect(second.timings.loadMs).toBe(0);
      for (const { timings } of [first, second]) {
        expect(timings.queueMs).toBeGreaterThanOrEqual(0);
        expect(timings.runMs).toBeGreaterThan(0);
        expect(timings.totalMs).toBeGreaterThanOrEqual(timings.runMs);
      }
    } finally {
      await tandem.close();
    }
  });

  it('serves createTandem with remote: oip', async () => {
    const tandem = createTandem({ server: url, remote: 'oip', models: { mlp: { name: 'mlp' } } });
    const result = await tandem.run('mlp', mlpInput(2, 3));
    expect(result.placement).toBe('remote');
    expect(result.outputs.probs?.dims).toEqual([2, 3]);
    await tandem.close();
  });
});

describe('OipRemote against servers that answer as they like', () => {
  /**
   * An OIP server that answers readiness with `state.ready` (a status) and every infer with one
   * JSON output and `state.parameters` as the response's parameters, when given.
   */
  async function cannedServer(state: { ready: number; parameters?: unknown }) {
    return rawServer((request, response) => {
      request.resume();
      if (request.url?.endsWith('/ready') === true) {
        response.writeHead(state.ready, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ name: 'mlp', ready: state.ready === 200 }));
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          model_name: 'mlp',
          outputs: [{ name: 'y', datatype: 'FP32', shape: [1], data: [0.5] }],
          ...(state.parameters === undefined ? {} : { parameters: state.parameters }),
        }),
      );
    });
  }

  it('takes the backend, cold start and timings a server gives as tandem_* parameters', async () => {
    const server = await cannedServer({
      ready: 200,
      parameters: {
        tandem_backend: 'cuda',
        tandem_cold_start: true,
        tandem_queue_ms: 1.5,
        tandem_load_ms: 20,
        tandem_warmup_ms: 5,
        tandem_run_ms: 2.25,
        tandem_total_ms: 30,
        other_server_entry: 'ignored',
      },
    });
    const remote = new OipRemote({ url: server.url });
    try {
      expect((await remote.estimate({ name: 'mlp' })).available).toBe(true);
      const result = await remote.run({ name: 'mlp' }, mlpInput(1, 9), options('o-canned-1'));
      expect(Array.from(result.outputs.y!.data as Float32Array)).toEqual([0.5]);
      expect(result).toMatchObject({
        backend: 'cuda',
        cold: true,
        timings: { queueMs: 1.5, loadMs: 25, runMs: 2.25 },
      });
    } finally {
      await server.close();
    }
  });

  it('ignores malformed tandem_* parameters, and without them reads a cold start from readiness', async () => {
    const state: { ready: number; parameters?: unknown } = {
      ready: 200,
      parameters: {
        tandem_backend: 'quantum',
        tandem_cold_start: 'yes',
        tandem_queue_ms: '1',
        tandem_load_ms: -3,
        tandem_run_ms: null,
      },
    };
    const server = await cannedServer(state);
    const remote = new OipRemote({ url: server.url });
    try {
      await remote.estimate({ name: 'mlp' });
      const malformed = await remote.run({ name: 'mlp' }, mlpInput(1, 10), options('o-canned-2'));
      expect(malformed).toMatchObject({ backend: 'cpu', cold: false });
      expect(malformed.timings).not.toHaveProperty('queueMs');
      expect(malformed.timings).not.toHaveProperty('loadMs');
      expect(malformed.timings.runMs).toBeGreaterThan(0); // the round trip, as the client saw it

      // A foreign server (no Tandem parameters) whose model was not ready before the call: the
      // call waited for it to load. Ready before the next one: warm.
      delete state.parameters;
      state.ready = 400;
      expect((await remote.estimate({ name: 'mlp' })).available).toBe(false);
      const loading = await remote.run({ name: 'mlp' }, mlpInput(1, 11), options('o-canned-3'));
      expect(loading).toMatchObject({ backend: 'cpu', cold: true });
      state.ready = 200;
      await remote.estimate({ name: 'mlp' });
      const ready = await remote.run({ name: 'mlp' }, mlpInput(1, 12), options('o-canned-4'));
      expect(ready.cold).toBe(false);
    } finally {
      await server.close();
    }
  });
});

describe('OipRemote against servers that answer FP16 as JSON and say what is retryable', () => {
  it("reads FP16 JSON values as half floats, and keeps the error body's retryable", async () => {
    let answer: 'fp16' | 'error' = 'fp16';
    const server = await rawServer((request, response) => {
      request.resume();
      if (request.url?.endsWith('/ready') === true) {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ name: 'mlp', ready: true }));
        return;
      }
      if (answer === 'error') {
        // A code whose default is not retryable, said to be retryable this time.
        response.writeHead(400, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: 'try again', code: 'E_RUNTIME', retryable: true }));
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          model_name: 'mlp',
          outputs: [{ name: 'y', datatype: 'FP16', shape: [3], data: [0.5, -2, 65504] }],
        }),
      );
    });
    const remote = new OipRemote({ url: server.url });
    try {
      await remote.estimate({ name: 'mlp' });
      const result = await remote.run({ name: 'mlp' }, mlpInput(1, 20), options('o-fp16'));
      const y = result.outputs.y!;
      expect(y.dtype).toBe('float16');
      expect(Array.from(y.data as Uint16Array, fromFloat16Bits)).toEqual([0.5, -2, 65504]);

      answer = 'error';
      const error = await remote
        .run({ name: 'mlp' }, mlpInput(1, 21), options('o-retry'))
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'E_RUNTIME', retryable: true });
    } finally {
      await server.close();
    }
  });
});

describe('OipRemote against servers that hold their answers', () => {
  it('a cancel while the response body is arriving ends the job with E_CANCELLED', async () => {
    // Headers and the first bytes of the body go out; the rest never does.
    const server = await rawServer((request, response) => {
      request.resume();
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': 1024,
      });
      response.write(new Uint8Array(16));
    });
    let headersArrived!: () => void;
    const arrived = new Promise<void>((resolve) => (headersArrived = resolve));
    const remote = new OipRemote({
      url: server.url,
      // The platform's fetch, observed: the response has arrived and its body is being read.
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        headersArrived();
        return response;
      },
    });
    try {
      const abort = new AbortController();
      const job = remote.run({ name: 'mlp' }, mlpInput(1, 4), options('o-body', [], abort.signal));
      await arrived;
      abort.abort();
      expect(await rejectionCode(job)).toBe('E_CANCELLED');
    } finally {
      await server.close();
    }
  });

  it(
    'a readiness probe that never answers makes the server unavailable within connectTimeoutMs',
    { timeout: 15_000 },
    async () => {
      const server = await rawServer(() => undefined);
      const remote = new OipRemote({ url: server.url, connectTimeoutMs: 200 });
      try {
        const estimate = await remote.estimate({ name: 'mlp' });
        expect(estimate).toMatchObject({ available: false, code: 'E_NETWORK' });
      } finally {
        await server.close();
      }
    },
  );

  it(
    'createTandem with remote: oip runs auto locally when the server hangs, within its connectTimeoutMs',
    { timeout: 30_000 },
    async () => {
      // The model file is served; every OIP request is held. The server records how long the
      // client waited for the readiness probe before giving up on it.
      const file = buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 6 }).bytes;
      let probeEnded!: (heldMs: number) => void;
      const probeHeldMs = new Promise<number>((resolve) => (probeEnded = resolve));
      const held: ServerResponse[] = [];
      const server = await rawServer((request, response) => {
        if (request.url === '/files/mlp.onnx') {
          response.writeHead(200, { 'content-type': 'application/octet-stream' });
          response.end(file);
          return;
        }
        const arrivedAt = performance.now();
        held.push(response);
        if (request.url?.endsWith('/ready') === true)
          response.on('close', () => probeEnded(performance.now() - arrivedAt));
      });
      const tandem = createTandem({
        server: server.url,
        remote: 'oip',
        connectTimeoutMs: 300,
        models: {
          mlp: {
            name: 'mlp',
            url: `${server.url}/files/mlp.onnx`,
            bytes: file.byteLength,
            sha256: createHash('sha256').update(file).digest('hex'),
          },
        },
      });
      try {
        const result = await tandem.run('mlp', mlpInput(2, 5));
        expect(result.placement).toBe('local');
        expect(result.outputs.probs?.dims).toEqual([2, 3]);
        expect(result.fallback).toMatchObject({ from: 'remote', code: 'E_NETWORK' });
        // The client's 300 ms, not OipRemote's own 5000 ms default: createTandem passed it on.
        expect(await probeHeldMs).toBeLessThan(2_500);
      } finally {
        await tandem.close();
        await server.close();
      }
    },
  );
});
