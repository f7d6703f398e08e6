// createTandem in Node against a real server: where each call runs and why, fallback when the
// server is down, a model that needs a backend this device lacks going remote, cancellation (the
// server dropping a running job, a compile the next call picks up), the model file store behind
// tandem.cache (a delete also lets go of the compiled session), prefetch (again after a delete), a
// result larger than the ws package takes by default on the built-in Node socket, and one progress
// sequence per job that never goes backwards and ends at 1.

import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  decodeServerMessage,
  parseModelManifest,
  type ProgressEvent,
  type ServerMessage,
  type TensorMap,
} from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { createTandem, type Job, type Tandem, type WebSocketLike } from '@tandem/client';
import {
  buildMlpClassifier,
  buildTileModel,
  createPrng,
  fillUniform,
  rejectionCode,
  slowInput,
  writeModelFile,
  writeSlowModel,
} from '@tandem/test-support';

function clsInput(seed: number): TensorMap {
  const data = fillUniform(new Float32Array(3 * 48 * 192), createPrng(seed), 0, 1);
  return { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } };
}

async function collect(job: AsyncIterable<ProgressEvent>): Promise<ProgressEvent[]> {
  const events: ProgressEvent[] = [];
  for await (const event of job) events.push(event);
  return events;
}

function expectMonotoneToOne(events: readonly ProgressEvent[]): void {
  expect(events.length).toBeGreaterThan(1);
  for (let i = 1; i < events.length; i++)
    expect(events[i]!.fraction).toBeGreaterThanOrEqual(events[i - 1]!.fraction);
  expect(events.at(-1)).toMatchObject({ stage: 'done', fraction: 1 });
  expect(events.slice(0, -1).every((e) => e.fraction < 1)).toBe(true);
}

describe('createTandem with a server', () => {
  let server: TandemServer;
  let tandem: Tandem;

  beforeAll(async () => {
    server = await createServer({ port: 0 });
    const url = await server.listen();
    tandem = createTandem({ server: url });
  });

  afterAll(async () => {
    await tandem.close();
    await server.close();
  });

  it('runs remote-only on the server, with progress ending at 1', async () => {
    const job = tandem.run('paddleocr-cls', clsInput(1), { placement: 'remote-only' });
    const [result, events] = await Promise.all([job, collect(job)]);
    expect(result.placement).toBe('remote');
    expect(result.backend).toBe('cpu');
    expect(result.fallback).toBeUndefined();
    expect(result.outputs['softmax_0.tmp_0']?.dims).toEqual([1, 2]);
    expectMonotoneToOne(events);
  });

  it('runs local-only on this device (wasm), downloading from the server', async () => {
    const job = tandem.run('paddleocr-cls', clsInput(2), { placement: 'local-only' });
    const [result, events] = await Promise.all([job, collect(job)]);
    expect(result.placement).toBe('local');
    expect(result.backend).toBe('wasm');
    expect(events.map((e) => e.stage)).toContain('download');
    expect(events.find((e) => e.stage === 'download')?.total).toBeGreaterThan(0);
    expectMonotoneToOne(events);
    expect((await tandem.cache.list()).map((m) => m.name)).toContain('paddleocr-cls');
  });

  it('auto: a model that needs WebGPU, which Node lacks, goes to the server and says why', async () => {
    const gpuOnly = createTandem({
      server: server.url!,
      models: {
        needsGpu: {
          name: 'paddleocr-cls',
          url: `${server.url!}/v1/models/paddleocr-cls/versions/1/model.onnx`,
          bytes: 578_966,
          sha256: 'a'.repeat(64),
          placement: { minBackend: 'webgpu' },
        },
      },
    });
    const result = await gpuOnly.run('needsGpu', clsInput(3));
    expect(result.placement).toBe('remote');
    expect(result.reason).toContain('webgpu');
    await gpuOnly.close();
  });

  it('refuses call options the protocol cannot carry with E_INVALID_ARGUMENT before they reach the server, where a remote call waited for ever', async () => {
    // Each of these made the server refuse the whole infer frame as malformed, answering no job.
    const bad = [
      { priority: 11 },
      { priority: 2.5 },
      { deadlineMs: -1 },
      { deadlineMs: Number.NaN },
      { outputs: [''] },
    ];
    for (const options of bad) {
      const job = tandem.run('paddleocr-cls', clsInput(5), {
        placement: 'remote-only',
        ...options,
      });
      expect(await rejectionCode(job)).toBe('E_INVALID_ARGUMENT');
    }
    // An unknown placement failed E_INTERNAL inside the router; an unknown warm side did nothing.
    const placement = 'anywhere' as unknown as 'auto';
    expect(await rejectionCode(tandem.run('paddleocr-cls', clsInput(5), { placement }))).toBe(
      'E_INVALID_ARGUMENT',
    );
    expect(() => createTandem({ placement })).toThrow(
      expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }),
    );
    const where = 'server' as unknown as 'remote';
    expect(await rejectionCode(tandem.warm('paddleocr-cls', { where }))).toBe('E_INVALID_ARGUMENT');
    const result = await tandem.run('paddleocr-cls', clsInput(5), {
      placement: 'remote-only',
      priority: 10,
      deadlineMs: 0.5e6,
      outputs: ['softmax_0.tmp_0'],
    });
    expect(result.placement).toBe('remote');
  });

  it('cancels with E_CANCELLED', async () => {
    const job = tandem.run('paddleocr-cls', clsInput(4), { placement: 'remote-only' });
    job.cancel();
    expect(await rejectionCode(job)).toBe('E_CANCELLED');
  });

  for (const placement of ['remote-only', 'local-only', 'auto'] as const) {
    it(`an onProgress that throws fails its own call (${placement}) with the error as cause, on neither side again; the client runs on`, async () => {
      const thrown = new Error('a broken progress handler');
      let calls = 0;
      const job = tandem.run('paddleocr-cls', clsInput(40), {
        placement,
        onProgress: () => {
          calls++;
          throw thrown;
        },
      });
      const error: unknown = await job.then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(error).toMatchObject({ code: 'E_INTERNAL' });
      expect((error as Error).cause).toBe(thrown);
      // Told once, and not again for a fallback or for the end of the call.
      expect(calls).toBe(1);
      const next = await tandem.run('paddleocr-cls', clsInput(41), { placement });
      expect(next.outputs).toBeDefined();
    });
  }
});

/**
 * A TCP server that accepts connections and never answers (a server stuck before its first byte):
 * `accepted(n)` resolves once the nth connection has come.
 */
async function silentServer(): Promise<{
  url: string;
  accepted(n: number): Promise<void>;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const waiting: { n: number; resolve: () => void }[] = [];
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    for (const waiter of waiting.filter((w) => w.n <= sockets.size)) waiter.resolve();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    accepted: (n) =>
      n <= sockets.size
        ? Promise.resolve()
        : new Promise((resolve) => waiting.push({ n, resolve })),
    async close() {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('createTandem and a server that never answers', () => {
  it('cancels a call while its manifest is fetched, and while the server is asked for an estimate: E_CANCELLED at once, ending in a cancelled event', async () => {
    const silent = await silentServer();
    const tandem = createTandem({
      server: silent.url,
      // Far longer than the test may take: the cancel, not this, must end the call.
      connectTimeoutMs: 3_600_000,
      models: { inline: { name: 'inline' }, fetched: `${silent.url}/fetched.json` },
    });
    try {
      const fetching = tandem.run('fetched', clsInput(30));
      await silent.accepted(1);
      fetching.cancel();
      expect(await rejectionCode(fetching)).toBe('E_CANCELLED');
      expect(fetching.lastProgress?.stage).toBe('cancelled');
      // The WebSocket connection the estimate waits for is the second one.
      const estimating = tandem.run('inline', clsInput(31));
      await silent.accepted(2);
      estimating.cancel();
      expect(await rejectionCode(estimating)).toBe('E_CANCELLED');
      expect(estimating.lastProgress?.stage).toBe('cancelled');
    } finally {
      await tandem.close();
      await silent.close();
    }
  });
});

describe('createTandem with the server down', () => {
  it('auto and prefer-remote fall back to local and say so; prefer-local reports no fallback', async () => {
    const server = await createServer({ port: 0 });
    const url = await server.listen();
    const manifest: unknown = await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json();
    const models = {
      cls: {
        ...(manifest as object),
        url: `${url}/v1/models/paddleocr-cls/versions/1/model.onnx`,
      } as never,
    };
    // Download and compile while the server is up, then stop it: the model is here, the server gone.
    const tandem = createTandem({ server: url, models, connectTimeoutMs: 1000 });
    await tandem.warm('cls', { where: 'local' });
    await server.close();
    const result = await tandem.run('cls', clsInput(5));
    expect(result.placement).toBe('local');
    expect(result.fallback).toMatchObject({ from: 'remote', code: 'E_NETWORK' });
    const preferRemote = await tandem.run('cls', clsInput(6), { placement: 'prefer-remote' });
    expect(preferRemote.placement).toBe('local');
    expect(preferRemote.fallback).toMatchObject({ from: 'remote', code: 'E_NETWORK' });
    // The call meant to run here and did: the server being down changed nothing.
    const preferLocal = await tandem.run('cls', clsInput(7), { placement: 'prefer-local' });
    expect(preferLocal.placement).toBe('local');
    expect(preferLocal.fallback).toBeUndefined();
    await tandem.close();
  });
});

describe('createTandem and the server payload limit', () => {
  it('a request over maxPayloadBytes falls back to local under prefer-remote; remote-only reports E_PAYLOAD_TOO_LARGE', async () => {
    // The classifier's input is 110,592 bytes; the server takes 64 KiB.
    const server = await createServer({ port: 0, maxPayloadBytes: 64 * 1024 });
    const tandem = createTandem({ server: await server.listen() });
    try {
      const result = await tandem.run('paddleocr-cls', clsInput(8), { placement: 'prefer-remote' });
      expect(result.placement).toBe('local');
      expect(result.fallback).toMatchObject({ from: 'remote', code: 'E_PAYLOAD_TOO_LARGE' });
      expect(
        await rejectionCode(tandem.run('paddleocr-cls', clsInput(9), { placement: 'remote-only' })),
      ).toBe('E_PAYLOAD_TOO_LARGE');
    } finally {
      await tandem.close();
      await server.close();
    }
  });

  it("when the fallback fails too, the error is the last side's and names the first failure, kept as its cause", async () => {
    const server = await createServer({ port: 0, maxPayloadBytes: 64 * 1024 });
    const url = await server.listen();
    const manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json(),
    );
    // The server refuses the input as too large; this device's copy fails its check.
    const broken = { ...manifest, sha256: '0'.repeat(64) };
    const tandem = createTandem({ server: url, models: { 'paddleocr-cls': broken } });
    try {
      const job = tandem.run('paddleocr-cls', clsInput(10), { placement: 'prefer-remote' });
      const error: unknown = await job.then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(error).toMatchObject({ code: 'E_INTEGRITY' });
      expect((error as Error).cause).toMatchObject({ code: 'E_PAYLOAD_TOO_LARGE' });
    } finally {
      await tandem.close();
      await server.close();
    }
  });
});

describe('createTandem in Node and a result larger than ws takes by default', () => {
  it('receives a result over 100 MiB (the ws package caps messages there unless told otherwise)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-large-result-'));
    // y is x repeated 1,024 times: 25,700 floats in, 105,267,200 bytes out (100 MiB is 104,857,600).
    await writeModelFile(dir, 'tile', 1, buildTileModel(1024));
    // A short result TTL: a client that kept resuming a result its socket refuses would hear
    // E_JOB_NOT_FOUND soon, rather than loop until the test times out.
    const server = await createServer({
      port: 0,
      catalog: false,
      modelsDir: dir,
      resultTtlMs: 2000,
    });
    const tandem = createTandem({ server: await server.listen(), placement: 'remote-only' });
    try {
      const n = 25_700;
      const x = Float32Array.from({ length: n }, (_, i) => i);
      const result = await tandem.run('tile', { x: { dtype: 'float32', dims: [n], data: x } });
      const y = result.outputs.y!;
      expect(y.dims).toEqual([n * 1024]);
      const data = y.data as Float32Array;
      expect(data.byteLength).toBeGreaterThan(100 * 1024 * 1024);
      let mismatches = 0;
      for (let i = 0; i < data.length; i++) if (data[i] !== i % n) mismatches++;
      expect(mismatches).toBe(0);
    } finally {
      await tandem.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('createTandem keepWarm', () => {
  it('keeps a server model loaded past its idle timeout while open, and lets it scale to zero after', async () => {
    const server = await createServer({ port: 0, idleTimeoutMs: 400 });
    const url = await server.listen();
    const state = async (): Promise<string | undefined> => {
      const body = (await (await fetch(`${url}/v1/models`)).json()) as {
        models: { name: string; state: string }[];
      };
      return body.models.find((m) => m.name === 'paddleocr-cls')?.state;
    };
    /** Polls (bounded) until the model reaches `want`. */
    const until = async (want: string): Promise<void> => {
      for (let i = 0; i < 100 && (await state()) !== want; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(await state()).toBe(want);
    };
    const tandem = createTandem({
      server: url,
      keepWarm: { models: ['paddleocr-cls'], intervalMs: 100 },
    });
    await until('ready');
    // Four idle timeouts with no job at all: the pings keep it loaded the whole time.
    const seen = new Set<string | undefined>();
    const watchUntil = Date.now() + 1600;
    while (Date.now() < watchUntil) {
      seen.add(await state());
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect([...seen]).toEqual(['ready']);
    await tandem.close();
    await until('unloaded');
    await server.close();
  });
});

describe('createTandem cancellation', () => {
  it('cancels mid-download, mid-queue and mid-run with E_CANCELLED; worker and socket stay usable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-cancel-'));
    await writeSlowModel(dir);
    const server = await createServer({ port: 0, modelsDir: dir });
    const url = await server.listen();
    const tandem = createTandem({ server: url });
    const cancelAt = (stage: string) => {
      const abort = new AbortController();
      return {
        signal: abort.signal,
        onProgress: (event: ProgressEvent) => {
          if (event.stage === stage) abort.abort();
        },
      };
    };
    // Mid-download (local): the first byte-progress event cancels.
    const download = tandem.run(
      'paddleocr-det',
      { x: { dtype: 'float32', dims: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) } },
      { placement: 'local-only', ...cancelAt('download') },
    );
    expect(await rejectionCode(download)).toBe('E_CANCELLED');
    // Mid-queue (remote): a long job holds the server; the next one is cancelled while queued.
    const busy = tandem.run('slow', slowInput(512, 1), { placement: 'remote-only' });
    const queued = tandem.run('slow', slowInput(1, 2), {
      placement: 'remote-only',
      ...cancelAt('queued'),
    });
    expect(await rejectionCode(queued)).toBe('E_CANCELLED');
    // The job's one progress sequence ends with 'cancelled', on its side, never going back.
    const queuedEvents = await collect(queued);
    expect(queuedEvents.at(-1)).toMatchObject({ stage: 'cancelled', where: 'remote' });
    for (let i = 1; i < queuedEvents.length; i++)
      expect(queuedEvents[i]!.fraction).toBeGreaterThanOrEqual(queuedEvents[i - 1]!.fraction);
    expect((await busy).placement).toBe('remote');
    // Mid-run (local).
    const cls = {
      x: { dtype: 'float32', dims: [1, 3, 48, 192], data: new Float32Array(3 * 48 * 192) },
    } as const;
    const running = tandem.run('paddleocr-cls', cls, {
      placement: 'local-only',
      ...cancelAt('running'),
    });
    expect(await rejectionCode(running)).toBe('E_CANCELLED');
    // Nothing leaked: both sides still answer.
    expect((await tandem.run('paddleocr-cls', cls, { placement: 'local-only' })).placement).toBe(
      'local',
    );
    expect(
      (await tandem.run('slow', slowInput(1, 3), { placement: 'remote-only' })).placement,
    ).toBe('remote');
    await tandem.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('createTandem cancelling work in progress', () => {
  it('cancels a remote job while it runs: the server answers it E_CANCELLED, never with a result, and runs the next job', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-cancel-running-'));
    await writeSlowModel(dir);
    const server = await createServer({ port: 0, modelsDir: dir, catalog: false });
    const url = await server.listen();
    // Every message the server sent, heard beside the client on its own (real) socket.
    const heard: ServerMessage[] = [];
    const tandem = createTandem({
      server: url,
      placement: 'remote-only',
      createSocket: (socketUrl, protocols) => {
        const socket = new WebSocket(socketUrl, protocols);
        socket.on('message', (data: WebSocket.RawData) => {
          // A copy at offset 0: the decoder views tensors in place, 8-byte aligned.
          heard.push(
            decodeServerMessage(new Uint8Array(Array.isArray(data) ? Buffer.concat(data) : data)),
          );
        });
        return socket as unknown as WebSocketLike;
      },
    });
    /** What the server told the client about one job, in order. */
    const told = (id: string): string[] =>
      heard.flatMap((message) => {
        if (message.type === 'progress')
          return message.event.jobId === id ? [`progress:${message.event.stage}`] : [];
        if (message.type === 'error') return message.id === id ? [`error:${message.code}`] : [];
        if (message.type === 'result') return message.id === id ? ['result'] : [];
        return [];
      });
    try {
      // 2048 rows keep the server's instance busy for a few hundred ms: the cancel, sent when the
      // client hears 'running', reaches the server (on loopback) long before the run could end.
      const running: Job = tandem.run('slow', slowInput(2048, 1), {
        onProgress: (event) => {
          if (event.stage === 'running') running.cancel();
        },
      });
      expect(await rejectionCode(running)).toBe('E_CANCELLED');
      expect((await collect(running)).at(-1)).toMatchObject({
        stage: 'cancelled',
        where: 'remote',
      });
      // The next job waits for the cancelled run to leave the instance (one run at a time), so by
      // its result everything the server would ever say about the cancelled one has been heard.
      const nextJob = tandem.run('slow', slowInput(2, 2));
      const next = await nextJob;
      expect(next.placement).toBe('remote');
      expect(next.outputs.y!.data).toEqual(slowInput(2, 2).x!.data); // y = x · I · … · I
      const cancelled = told(running.id);
      expect(cancelled).toContain('progress:running');
      expect(cancelled.at(-1)).toBe('error:E_CANCELLED');
      expect(cancelled).not.toContain('result');
      expect(told(nextJob.id).at(-1)).toBe('result');
    } finally {
      await tandem.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cancels a local job in its compile stage with E_CANCELLED; the compile goes on, and the next call runs on it', async () => {
    const server = await createServer({ port: 0 });
    const url = await server.listen();
    const tandem = createTandem({ server: url, placement: 'local-only' });
    try {
      const compiling = tandem.run('paddleocr-cls', clsInput(8), {
        onProgress: (event) => {
          if (event.stage === 'compile') compiling.cancel();
        },
      });
      expect(await rejectionCode(compiling)).toBe('E_CANCELLED');
      const stages = (await collect(compiling)).map((event) => event.stage);
      expect(stages.slice(-2)).toEqual(['compile', 'cancelled']);
      // onnxruntime cannot stop a session half made: the call stopped waiting, and the session,
      // once made, serves the next calls instead of being made twice. A warm() waits for it.
      await tandem.warm('paddleocr-cls', { where: 'local' });
      const nextJob = tandem.run('paddleocr-cls', clsInput(9));
      const [next, events] = await Promise.all([nextJob, collect(nextJob)]);
      expect(next.placement).toBe('local');
      expect(next.cold).toBe(false);
      expect(events.map((event) => event.stage)).toEqual(['resolve', 'running', 'done']);
    } finally {
      await tandem.close();
      await server.close();
    }
  });
});

describe('createTandem close', () => {
  it('ends jobs in flight on both sides with E_CANCELLED, falls back to neither, and refuses new calls', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-close-'));
    await writeSlowModel(dir);
    const server = await createServer({ port: 0, modelsDir: dir });
    const url = await server.listen();
    const tandem = createTandem({ server: url });
    try {
      await tandem.warm('paddleocr-det', { where: 'local' });
      const running = (
        model: string,
        inputs: TensorMap,
        placement: 'prefer-remote' | 'prefer-local',
      ) => {
        let signal!: () => void;
        const started = new Promise<void>((resolve) => (signal = resolve));
        const job = tandem.run(model, inputs, {
          placement,
          onProgress: (event) => {
            if (event.stage === 'running') signal();
          },
        });
        return { job, started };
      };
      // Both placements allow a fallback, which closing must not start.
      const remote = running('slow', slowInput(512, 4), 'prefer-remote');
      await remote.started;
      const det = new Float32Array(3 * 320 * 320);
      const local = running(
        'paddleocr-det',
        { x: { dtype: 'float32', dims: [1, 3, 320, 320], data: det } },
        'prefer-local',
      );
      await local.started;
      await tandem.close();
      expect(await rejectionCode(remote.job)).toBe('E_CANCELLED');
      expect(await rejectionCode(local.job)).toBe('E_CANCELLED');
      expect((await collect(remote.job)).at(-1)).toMatchObject({
        stage: 'cancelled',
        where: 'remote',
      });
      expect(await rejectionCode(tandem.run('slow', slowInput(1, 5)))).toBe('E_CANCELLED');
      expect(await rejectionCode(tandem.warm('slow'))).toBe('E_CANCELLED');
    } finally {
      await tandem.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('tandem.cache in Node', () => {
  it('lists the file a local run stored with its bytes, estimates them, and deletes it', async () => {
    const server = await createServer({ port: 0 });
    const url = await server.listen();
    const manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json(),
    );
    const tandem = createTandem({ server: url, placement: 'local-only' });
    try {
      expect(await tandem.cache.list()).toEqual([]);
      expect(await tandem.cache.estimate()).toMatchObject({ modelBytes: 0 });
      const first = await tandem.run('paddleocr-cls', clsInput(10));
      expect(first.timings.downloadMs).toBeGreaterThan(0);
      // Node has no Cache Storage: the file is kept in this client's memory.
      expect(await tandem.cache.list()).toEqual([
        {
          name: 'paddleocr-cls',
          url: `${url}/v1/models/paddleocr-cls/versions/1/model.onnx`,
          bytes: manifest.bytes,
          sha256: manifest.sha256,
          storage: 'memory',
        },
      ]);
      expect(await tandem.cache.estimate()).toMatchObject({ modelBytes: manifest.bytes });
      expect(await tandem.cache.delete('paddleocr-cls')).toBe(1);
      expect(await tandem.cache.list()).toEqual([]);
      expect(await tandem.cache.estimate()).toMatchObject({ modelBytes: 0 });
      expect(await tandem.cache.delete('paddleocr-cls')).toBe(0);
      // The file is gone, and the compiled session with it, not the client: the model still runs
      // here, downloaded and compiled again.
      const job = tandem.run('paddleocr-cls', clsInput(11));
      const [after, events] = await Promise.all([job, collect(job)]);
      expect(after.placement).toBe('local');
      expect(after.cold).toBe(true);
      expect(after.timings.downloadMs).toBeGreaterThan(0);
      expect(events.map((e) => e.stage)).toEqual(expect.arrayContaining(['download', 'compile']));
    } finally {
      await tandem.close();
      await server.close();
    }
  });

  it('deletes a model during a local run: the run finishes on its session, the next one is cold', async () => {
    const server = await createServer({ port: 0 });
    const url = await server.listen();
    const tandem = createTandem({ server: url, placement: 'local-only' });
    try {
      expect((await tandem.run('paddleocr-cls', clsInput(12))).cold).toBe(true);
      let deleted: Promise<number> | undefined;
      const during = await tandem.run('paddleocr-cls', clsInput(13), {
        onProgress: (event) => {
          if (event.stage === 'running') deleted ??= tandem.cache.delete('paddleocr-cls');
        },
      });
      expect(during.cold).toBe(false);
      expect(await deleted).toBe(1);
      const after = await tandem.run('paddleocr-cls', clsInput(13));
      expect(after.cold).toBe(true);
      expect(after.timings.downloadMs).toBeGreaterThan(0);
      // The same input on the new session: the run during the delete was not cut short.
      const name = Object.keys(after.outputs)[0]!;
      expect(Array.from(during.outputs[name]!.data as Float32Array)).toEqual(
        Array.from(after.outputs[name]!.data as Float32Array),
      );
    } finally {
      await tandem.close();
      await server.close();
    }
  });
});

describe('createTandem and two model names on the same files', () => {
  it('lists both names after one download; deleting one keeps the files and session the other runs on, deleting both removes them', async () => {
    const server = await createServer({ port: 0 });
    const requests = fileRequests(server);
    const url = await server.listen();
    const manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json(),
    );
    const tandem = createTandem({
      server: url,
      placement: 'local-only',
      models: { first: { ...manifest, name: 'first' }, second: { ...manifest, name: 'second' } },
    });
    try {
      expect((await tandem.run('first', clsInput(20))).timings.downloadMs).toBeGreaterThan(0);
      const second = tandem.run('second', clsInput(20));
      const [secondResult, secondEvents] = await Promise.all([second, collect(second)]);
      expect(secondEvents.map((e) => e.stage)).not.toContain('download');
      expect(secondResult.timings.downloadMs).toBe(0);
      expect(requests.count()).toBe(1);
      expect((await tandem.cache.list()).map((m) => [m.name, m.bytes])).toEqual([
        ['first', manifest.bytes],
        ['second', manifest.bytes],
      ]);
      expect(await tandem.cache.estimate()).toMatchObject({ modelBytes: manifest.bytes });
      // 'first' still lists the files: they stay, and so does its compiled session.
      expect(await tandem.cache.delete('second')).toBe(0);
      expect((await tandem.cache.list()).map((m) => m.name)).toEqual(['first']);
      expect((await tandem.run('first', clsInput(21))).cold).toBe(false);
      expect(requests.count()).toBe(1);
      expect(await tandem.cache.delete('first')).toBe(1);
      expect(await tandem.cache.list()).toEqual([]);
      const again = await tandem.run('second', clsInput(22));
      expect(again.cold).toBe(true);
      expect(again.timings.downloadMs).toBeGreaterThan(0);
      expect(requests.count()).toBe(2);
    } finally {
      await tandem.close();
      await server.close();
    }
  });
});

/** Counts the server's requests for model files; `nth(n)` resolves once the nth has come. */
function fileRequests(server: TandemServer): { count(): number; nth(n: number): Promise<void> } {
  let count = 0;
  const waiting: { n: number; resolve: () => void }[] = [];
  server.fastify.addHook('onRequest', async (request) => {
    if (!request.url.endsWith('/model.onnx')) return;
    count += 1;
    for (const waiter of waiting.filter((w) => w.n <= count)) waiter.resolve();
  });
  return {
    count: () => count,
    nth: (n) =>
      n <= count ? Promise.resolve() : new Promise((resolve) => waiting.push({ n, resolve })),
  };
}

describe('createTandem prefetch', () => {
  it('downloads a model the server just ran, in the background, for local runs later; again after a delete', async () => {
    const server = await createServer({ port: 0 });
    const downloads = fileRequests(server);
    const url = await server.listen();
    const cls = {
      x: { dtype: 'float32', dims: [1, 3, 48, 192], data: new Float32Array(3 * 48 * 192) },
    } as const;
    const names = async (tandem: Tandem) => (await tandem.cache.list()).map((m) => m.name);
    const withPrefetch = createTandem({ server: url, prefetch: true });
    try {
      expect(
        (await withPrefetch.run('paddleocr-cls', cls, { placement: 'prefer-remote' })).placement,
      ).toBe('remote');
      // The download runs after the result: the server sees it asked for.
      await downloads.nth(1);
      // A local warm-up waits for that download (or reads what it stored): no second one.
      await withPrefetch.warm('paddleocr-cls', { where: 'local' });
      expect(await names(withPrefetch)).toEqual(['paddleocr-cls']);
      expect(downloads.count()).toBe(1);
      // Deleted, the model is prefetched again the next time the server runs it.
      expect(await withPrefetch.cache.delete('paddleocr-cls')).toBe(1);
      expect(await names(withPrefetch)).toEqual([]);
      expect(
        (await withPrefetch.run('paddleocr-cls', cls, { placement: 'prefer-remote' })).placement,
      ).toBe('remote');
      await downloads.nth(2);
      await withPrefetch.warm('paddleocr-cls', { where: 'local' });
      expect(await names(withPrefetch)).toEqual(['paddleocr-cls']);
      expect(downloads.count()).toBe(2);
    } finally {
      await withPrefetch.close();
    }
    // Off by default: nothing is downloaded.
    const without = createTandem({ server: url });
    await without.run('paddleocr-cls', cls, { placement: 'prefer-remote' });
    expect(await without.cache.list()).toEqual([]);
    expect(downloads.count()).toBe(2);
    await without.close();
    await server.close();
  });
});

describe('createTandem and a model with external data', () => {
  it('runs it local-only from a page on another origin: the .onnx and its weights file downloaded from the server under one byte total, outputs as onnxruntime-node computes them from the same files; a delete removes both', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-external-data-'));
    const mlp = buildMlpClassifier({
      features: 24,
      hidden: 64,
      classes: 5,
      seed: 41,
      externalData: 'weights.bin',
    });
    const weights = mlp.externalData!;
    const modelPath = await writeModelFile(dir, 'mlp', 1, mlp.bytes);
    await writeFile(join(dirname(modelPath), weights.location), weights.bytes);
    const server = await createServer({ port: 0, catalog: false, modelsDir: dir });
    const requested: string[] = [];
    server.fastify.addHook('onRequest', async (request) => {
      if (request.url.includes('/versions/')) requested.push(request.url);
    });
    // As a page on another origin than the server's: the manifest's root-relative file URLs are
    // the server's, not the page's (a page at app.invalid cannot answer them).
    const tandem = createTandem({
      server: await server.listen(),
      placement: 'local-only',
      baseUrl: 'http://app.invalid/page/',
    });
    const x = fillUniform(new Float32Array(3 * 24), createPrng(42), -2, 2);
    const inputs = (): TensorMap => ({ x: { dtype: 'float32', dims: [3, 24], data: x.slice() } });
    try {
      const job = tandem.run('mlp', inputs());
      const [result, events] = await Promise.all([job, collect(job)]);
      expect(result).toMatchObject({ placement: 'local', backend: 'wasm', cold: true });
      expectMonotoneToOne(events);
      // One byte sequence over both files, its total (the .onnx and its weights) known from the
      // first event on.
      const total = mlp.bytes.byteLength + weights.bytes.byteLength;
      const downloads = events.filter((e) => e.stage === 'download');
      expect(downloads[0]).toMatchObject({ loaded: 0, total });
      expect(downloads.every((e) => e.total === total)).toBe(true);
      expect(downloads.at(-1)?.loaded).toBe(total);
      expect(requested).toEqual([
        '/v1/models/mlp/versions/1/model.onnx',
        '/v1/models/mlp/versions/1/files/weights.bin',
      ]);
      // onnxruntime-node reads weights.bin beside model.onnx by itself.
      const session = await ort.InferenceSession.create(modelPath);
      const direct = await session.run({ x: new ort.Tensor('float32', x.slice(), [3, 24]) });
      await session.release();
      const probs = result.outputs.probs!.data as Float32Array;
      const expected = direct.probs!.data as Float32Array;
      expect(result.outputs.probs!.dims).toEqual([3, 5]);
      expect(probs.length).toBe(expected.length);
      for (let i = 0; i < probs.length; i++)
        expect(Math.abs(probs[i]! - expected[i]!)).toBeLessThan(1e-5);
      expect(Array.from(result.outputs.label!.data as BigInt64Array)).toEqual(
        Array.from(direct.label!.data as BigInt64Array),
      );
      expect(await tandem.cache.list()).toEqual([
        expect.objectContaining({
          name: 'mlp',
          bytes: total,
          storage: 'memory',
          externalData: [
            expect.objectContaining({ path: 'weights.bin', bytes: weights.bytes.byteLength }),
          ],
        }),
      ]);
      expect(await tandem.cache.estimate()).toMatchObject({ modelBytes: total });
      // Deleted, every file goes and the next run fetches both again.
      expect(await tandem.cache.delete('mlp')).toBe(2);
      const again = tandem.run('mlp', inputs());
      const [after, afterEvents] = await Promise.all([again, collect(again)]);
      expect(after.cold).toBe(true);
      expect(afterEvents.find((e) => e.stage === 'download')?.total).toBe(total);
      expect(requested).toHaveLength(4);
      expect(Array.from(after.outputs.probs!.data as Float32Array)).toEqual(Array.from(probs));
    } finally {
      await tandem.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('createTandem remote progress', () => {
  it('carries queue positions and ETAs from the server, one rising sequence per job', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-queue-'));
    await writeSlowModel(dir);
    const server = await createServer({ port: 0, modelsDir: dir });
    const url = await server.listen();
    const tandem = createTandem({ server: url });
    try {
      await tandem.warm('slow');
      // Measured run times give the server its ETAs: one run first.
      await tandem.run('slow', slowInput(64, 1), { placement: 'remote-only' });
      const busy = tandem.run('slow', slowInput(512, 2), { placement: 'remote-only' });
      const behind = [3, 4].map((seed) =>
        tandem.run('slow', slowInput(8, seed), { placement: 'remote-only' }),
      );
      const [events] = await Promise.all([collect(behind[1]!), busy, ...behind]);
      const queued = events.filter((e) => e.stage === 'queued');
      expect(queued.length).toBeGreaterThan(0);
      // Two jobs were ahead of it when it arrived: the busy one running and one waiting.
      expect(queued[0]!.queuePosition).toBeGreaterThanOrEqual(1);
      expect(queued.every((e) => e.etaMs !== undefined && e.etaMs >= 0)).toBe(true);
      for (let i = 1; i < queued.length; i++)
        expect(queued[i]!.queuePosition!).toBeLessThanOrEqual(queued[i - 1]!.queuePosition!);
      expect(events.find((e) => e.stage === 'running')?.etaMs).toBeGreaterThan(0);
      expect(events.every((e) => e.where === 'remote')).toBe(true);
      expectMonotoneToOne(events);
    } finally {
      await tandem.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * An HTTP server on loopback that serves the files of `upstream` (a Tandem server) at about
 * `bytesPerSecond`, as a slow link would: what this device measures its bandwidth on.
 */
async function throttledFiles(
  upstream: string,
  bytesPerSecond: number,
): Promise<{ url: string; close: () => Promise<void> }> {
  const { createServer: createHttpServer } = await import('node:http');
  const chunk = 16 * 1024;
  const http = createHttpServer((request, response) => {
    void (async () => {
      const body = new Uint8Array(await (await fetch(`${upstream}${request.url}`)).arrayBuffer());
      response.writeHead(200, { 'content-length': body.byteLength });
      for (let offset = 0; offset < body.byteLength; offset += chunk) {
        if (!response.write(body.subarray(offset, offset + chunk))) await once(response, 'drain');
        await new Promise((resolve) => setTimeout(resolve, (chunk / bytesPerSecond) * 1000));
      }
      response.end();
    })();
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const { port } = http.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      http.closeAllConnections();
      return new Promise((resolve) => http.close(() => resolve()));
    },
  };
}

describe('createTandem auto with one side measured', () => {
  it('sends a model whose download alone (at the measured bandwidth) outlasts the measured server to the server, and says why', async () => {
    const server = await createServer({ port: 0 });
    const url = await server.listen();
    // About 1 MB/s: the 0.6 MB classifier measures it; the 4.7 MB detector would take ~5 s.
    const files = await throttledFiles(url, 1024 * 1024);
    const manifestAt = async (name: string) => {
      const manifest = parseModelManifest(
        await (await fetch(`${url}/v1/models/${name}/manifest`)).json(),
      );
      return { ...manifest, url: `${files.url}/v1/models/${name}/versions/1/model.onnx` };
    };
    const tandem = createTandem({
      server: url,
      models: {
        'paddleocr-cls': await manifestAt('paddleocr-cls'),
        'paddleocr-det': await manifestAt('paddleocr-det'),
      },
    });
    const det = () =>
      ({
        x: { dtype: 'float32', dims: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) },
      }) as const;
    try {
      await tandem.run('paddleocr-cls', clsInput(20), { placement: 'local-only' });
      // The server's cold start, then a measured warm run.
      await tandem.run('paddleocr-det', det(), { placement: 'remote-only' });
      await tandem.run('paddleocr-det', det(), { placement: 'remote-only' });
      const result = await tandem.run('paddleocr-det', det());
      expect(result.placement).toBe('remote');
      expect(result.fallback).toBeUndefined();
      expect(result.reason).toMatch(
        /^auto: remote ~\d+ ms vs local at least ~\d+ ms \(wasm, download ~\d+ ms/,
      );
      // Nothing was downloaded for it.
      expect((await tandem.cache.list()).map((model) => model.name)).toEqual(['paddleocr-cls']);
    } finally {
      await tandem.close();
      await files.close();
      await server.close();
    }
  });
});

describe('createTandem progress across a fallback', () => {
  it('a local failure mid-download and mid-compile, then the server: the server cold start moves the bar on from where the local side left it, one rising sequence to 1', async () => {
    const server = await createServer({ port: 0 });
    const url = await server.listen();
    const manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json(),
    );
    // Not an ONNX model, with its true sha256: downloaded and checked, then the compile fails.
    const notOnnxUrl = `${url}/v1/models/paddleocr-cls/manifest`;
    const notOnnx = new Uint8Array(await (await fetch(notOnnxUrl)).arrayBuffer());
    const { createHash } = await import('node:crypto');
    const tandem = createTandem({
      server: url,
      models: {
        // The download fails its check (E_INTEGRITY).
        badHash: { ...manifest, sha256: '0'.repeat(64) },
        // The compile fails (E_MODEL_LOAD_FAILED).
        notOnnx: {
          ...manifest,
          url: notOnnxUrl,
          bytes: notOnnx.byteLength,
          sha256: createHash('sha256').update(notOnnx).digest('hex'),
        },
      },
    });
    try {
      for (const [model, code, lastLocal] of [
        ['badHash', 'E_INTEGRITY', 'download'],
        ['notOnnx', 'E_MODEL_LOAD_FAILED', 'compile'],
      ] as const) {
        const job = tandem.run(model, clsInput(30), { placement: 'prefer-local' });
        const [result, events] = await Promise.all([job, collect(job)]);
        expect(result.placement).toBe('remote');
        expect(result.fallback).toMatchObject({ from: 'local', code });
        expectMonotoneToOne(events);
        const local = events.filter((e) => e.where === 'local');
        const remote = events.filter((e) => e.where === 'remote');
        expect(local.at(-1)?.stage).toBe(lastLocal);
        expect(events.indexOf(remote[0]!)).toBe(local.length); // every local event first
        // The server's own stages, each further along the bar than the last local event.
        const leftAt = local.at(-1)!.fraction;
        const stages = remote.map((e) => e.stage);
        expect(stages[0]).toBe('queued');
        expect(stages).toContain('running');
        for (const stage of ['loading', 'warmup', 'running'] as const) {
          const event = remote.find((e) => e.stage === stage);
          if (event !== undefined) expect(event.fraction, stage).toBeGreaterThan(leftAt);
        }
      }
    } finally {
      await tandem.close();
      await server.close();
    }
  });
});

describe('createTandem deadlines across a fallback', () => {
  it("a server fallback gets what is left of the call's deadline, not a new one: E_DEADLINE_EXCEEDED naming the local failure", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-deadline-'));
    await writeSlowModel(dir);
    const server = await createServer({ port: 0, modelsDir: dir, catalog: false });
    const url = await server.listen();
    // The 0.27 MB model at 128 KB/s: the local side fails its check 2 s or more into the call.
    const files = await throttledFiles(url, 128 * 1024);
    const manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/slow/manifest`)).json(),
    );
    const tandem = createTandem({
      server: url,
      models: {
        slow: {
          ...manifest,
          url: `${files.url}/v1/models/slow/versions/1/model.onnx`,
          sha256: '0'.repeat(64),
        },
      },
    });
    try {
      await tandem.warm('slow');
      // The download alone takes about 2 s (the throttle makes it no faster): the deadline has
      // passed when the local side fails its check, so the server is not asked at all. With a
      // fresh deadline the server answered this one-row job at once.
      const late = tandem.run('slow', slowInput(1, 2), {
        placement: 'prefer-local',
        deadlineMs: 100,
      });
      const [error, events] = await Promise.all([
        late.then(
          () => undefined,
          (failure: unknown) => failure,
        ),
        collect(late),
      ]);
      expect(error).toMatchObject({ code: 'E_DEADLINE_EXCEEDED' });
      expect((error as Error).cause).toMatchObject({ code: 'E_INTEGRITY' });
      expect(events.filter((e) => e.where === 'remote')).toEqual([]);
    } finally {
      await tandem.close();
      await files.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
