// The client's WebSocket remote runtime against a real server on loopback: results equal to
// onnxruntime-node, progress, estimates (per model version), cancellation (also while still
// connecting), a warm whose first connection drops before the welcome (sent on the next one), the
// server's payload limit, an unreachable server, and a server that dies mid-job and comes back on
// the same port (the job is resumed or retried: one answer).

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  decodeMessage,
  type ModelManifest,
  type ProgressEvent,
  type TensorMap,
} from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { WebSocketRemote, type WebSocketLike } from '@tandem/client';
import {
  buildMlpClassifier,
  buildTileModel,
  createPrng,
  fillUniform,
  slowInput,
  writeModelFile,
  writeSlowModel,
} from '@tandem/test-support';
import {
  rejectionCode as codeOf,
  connectClient,
  startCli,
  type CliProcess,
} from '@tandem/test-support';

const createSocket = (url: string, protocols: string[]): WebSocketLike =>
  new WebSocket(url, protocols) as unknown as WebSocketLike;
const mlp: ModelManifest = { name: 'mlp' };
const slow: ModelManifest = { name: 'slow' };

function options(
  jobId: string,
  events: ProgressEvent[] = [],
  signal = new AbortController().signal,
) {
  return { jobId, priority: 5, signal, onProgress: (e: ProgressEvent) => events.push(e) };
}

function mlpInput(rows: number, seed: number): TensorMap {
  const data = fillUniform(new Float32Array(rows * 8), createPrng(seed), -1, 1);
  return { x: { dtype: 'float32', dims: [rows, 8], data } };
}

/**
 * Sockets that count the `result` messages for job `id` arriving on every connection a remote
 * opens: a job's promise settles once whatever arrives, so only the wire shows a duplicate.
 */
function resultsOnWire(id: string): {
  createSocket: (url: string, protocols: string[]) => WebSocketLike;
  count(): number;
  /** Index (0-based) of each connection a result for `id` arrived on. */
  connections(): number[];
} {
  const arrivedOn: number[] = [];
  let opened = 0;
  return {
    createSocket(url, protocols) {
      const index = opened++;
      const socket = new WebSocket(url, protocols);
      socket.on('message', (data: Buffer | Buffer[] | ArrayBuffer) => {
        const message = decodeMessage(Array.isArray(data) ? data : new Uint8Array(data as Buffer));
        if (message.type === 'result' && message.id === id) arrivedOn.push(index);
      });
      return socket as unknown as WebSocketLike;
    },
    count: () => arrivedOn.length,
    connections: () => [...arrivedOn],
  };
}

/**
 * Sockets that watch the `model` messages arriving on every connection a remote opens: `ready`
 * resolves with the index (0-based) of the connection on which the server first said that `name`
 * is ready, as it does in answer to a `warm`.
 */
function readyOnWire(name: string): {
  createSocket: (url: string, protocols: string[]) => WebSocketLike;
  ready: Promise<number>;
} {
  let opened = 0;
  let heard!: (index: number) => void;
  const ready = new Promise<number>((resolve) => (heard = resolve));
  return {
    createSocket(url, protocols) {
      const index = opened++;
      const socket = new WebSocket(url, protocols);
      socket.on('message', (data: Buffer | Buffer[] | ArrayBuffer) => {
        const message = decodeMessage(Array.isArray(data) ? data : new Uint8Array(data as Buffer));
        if (
          message.type === 'model' &&
          message.model.name === name &&
          message.model.state === 'ready'
        )
          heard(index);
      });
      return socket as unknown as WebSocketLike;
    },
    ready,
  };
}

/**
 * A TCP proxy on loopback in front of `target` that passes the client's bytes on at once but holds
 * the server's (the upgrade answer included) until `release()`: a connection that stays
 * "connecting" for exactly as long as a test needs, with a real server behind it. With
 * `dropFirstBefore`, the first connection is dropped (both sides) instead of passing on the server
 * bytes that would complete that pattern: a network failure that strikes, however fast the
 * server, before a given message reaches the client.
 */
async function holdingProxy(
  target: string,
  dropFirstBefore?: Buffer,
): Promise<{
  url: string;
  /** Resolves once a client connection has reached the proxy. */
  accepted: Promise<void>;
  release(): void;
  /** Drops every connection through the proxy (as a network failure would); it keeps listening. */
  cut(): void;
  close(): Promise<void>;
}> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const held: (() => void)[] = [];
  let released = false;
  let accept!: () => void;
  const accepted = new Promise<void>((resolve) => (accept = resolve));
  let connections = 0;
  const proxy = createTcpServer((client) => {
    const upstream = connect(Number(port), hostname);
    const watched = connections++ === 0 ? dropFirstBefore : undefined;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    // Unread, the server's bytes wait in the upstream socket until the pipe starts.
    const forward = (): void => {
      if (watched === undefined) {
        upstream.pipe(client);
        return;
      }
      // The last bytes of the previous chunk too: the pattern may straddle two reads.
      let tail = Buffer.alloc(0);
      upstream.on('data', (chunk: Buffer) => {
        const at = Buffer.concat([tail, chunk]).indexOf(watched);
        if (at >= 0) {
          // What came before the pattern still goes through (a progress event, say), then the
          // connection ends as a failing network ends it: no closing handshake.
          upstream.destroy();
          client.end(chunk.subarray(0, Math.max(0, at - tail.byteLength)));
          return;
        }
        tail = Buffer.from(chunk.subarray(Math.max(0, chunk.byteLength - watched.byteLength + 1)));
        client.write(chunk);
      });
    };
    if (released) forward();
    else held.push(forward);
    accept();
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const { port: proxyPort } = proxy.address() as { port: number };
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    accepted,
    release() {
      released = true;
      for (const forward of held.splice(0)) forward();
    },
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      proxy.close();
      await once(proxy, 'close');
    },
  };
}

/** Jobs of `model` the server has run to completion, from its Prometheus metrics. */
async function jobsRun(serverUrl: string, model: string): Promise<number> {
  const text = await (await fetch(`${serverUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('tandem_jobs_total{') && line.includes(`model="${model}"`))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

describe('WebSocketRemote against a real server', () => {
  let dir: string;
  let server: TandemServer;
  let url: string;
  let remote: WebSocketRemote;
  let mlpPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-remote-'));
    mlpPath = await writeModelFile(
      dir,
      'mlp',
      1,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 3 }).bytes,
    );
    await writeSlowModel(dir);
    server = await createServer({ port: 0, catalog: false, modelsDir: dir });
    url = await server.listen();
    remote = new WebSocketRemote({ url, createSocket });
  });

  afterAll(async () => {
    await remote.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a model with outputs equal to onnxruntime-node, streaming progress', async () => {
    const inputs = mlpInput(4, 1);
    const events: ProgressEvent[] = [];
    const result = await remote.run(mlp, inputs, options('r-1', events));
    const session = await ort.InferenceSession.create(mlpPath);
    const direct = await session.run({
      x: new ort.Tensor('float32', inputs.x!.data as Float32Array, [4, 8]),
    });
    await session.release();
    expect(
      Buffer.from(
        (result.outputs.probs!.data as Float32Array).buffer,
        (result.outputs.probs!.data as Float32Array).byteOffset,
        48,
      ),
    ).toEqual(
      Buffer.from(
        (direct.probs!.data as Float32Array).buffer,
        (direct.probs!.data as Float32Array).byteOffset,
        48,
      ),
    );
    expect(Array.from(result.outputs.label!.data as BigInt64Array)).toEqual(
      Array.from(direct.label!.data as BigInt64Array),
    );
    expect(result.cold).toBe(true);
    expect(result.backend).toBe('cpu');
    expect(events.map((e) => e.stage)).toContain('loading');
    for (let i = 1; i < events.length; i++)
      expect(events[i]!.fraction).toBeGreaterThanOrEqual(events[i - 1]!.fraction);
  });

  it('sends a large input as the fragments of one message and reads messages as fragments where the socket can, same outputs', async () => {
    // As createTandem's Node socket does (the ws package can send fragments and hand a message
    // over as its fragments; a browser cannot).
    let fragmented = 0;
    let socket: WebSocket | undefined;
    const fragmenting = new WebSocketRemote({
      url,
      createSocket: (socketUrl, protocols) => {
        socket = new WebSocket(socketUrl, protocols);
        const own = socket;
        const sendFragments = (parts: readonly Uint8Array[]): void => {
          fragmented += 1;
          parts.forEach((part, i) => own.send(part, { fin: i === parts.length - 1 }));
        };
        return Object.assign(own, {
          sendFragments,
          readsFragments: true,
        }) as unknown as WebSocketLike;
      },
    });
    // 4,000 rows of 8 floats: 128,000 bytes, past ZERO_COPY_MIN_BYTES.
    const inputs = mlpInput(4000, 7);
    const result = await fragmenting.run(mlp, inputs, options('r-large'));
    // Every message (welcome, progress, the result) was read from its fragments.
    expect(socket?.binaryType).toBe('fragments');
    await fragmenting.close();
    expect(fragmented).toBe(1);
    const session = await ort.InferenceSession.create(mlpPath);
    const direct = await session.run({
      x: new ort.Tensor('float32', inputs.x!.data as Float32Array, [4000, 8]),
    });
    await session.release();
    expect(result.outputs.probs!.data).toEqual(direct.probs!.data);
    expect(result.outputs.label!.data).toEqual(direct.label!.data);
  });
  it('estimates from the server measurements once the model has run', async () => {
    await remote.run(mlp, mlpInput(1, 2), options('r-2'));
    const estimate = await remote.estimate(mlp);
    expect(estimate.available).toBe(true);
    expect(estimate.cold).toBe(false);
    expect(estimate.ms).toBeGreaterThan(0);
    expect((await remote.estimate({ name: 'nope' })).available).toBe(false);
  });

  it('cancels a queued job with E_CANCELLED and stays usable', async () => {
    await remote.warm(slow);
    const busy = remote.run(slow, slowInput(512, 1), options('busy'));
    const abort = new AbortController();
    let queuedNow!: () => void;
    const isQueued = new Promise<void>((resolve) => (queuedNow = resolve));
    const queued = remote.run(slow, slowInput(1, 2), {
      ...options('queued', [], abort.signal),
      onProgress: () => queuedNow(),
    });
    // Cancel once the server has queued it (its first progress event says so).
    await isQueued;
    abort.abort();
    expect(await codeOf(queued)).toBe('E_CANCELLED');
    await busy;
    const after = await remote.run(mlp, mlpInput(1, 3), options('after'));
    expect(after.outputs.probs?.dims).toEqual([1, 3]);
  });

  it('a cancel while connecting ends the call with E_CANCELLED, and the job is never sent', async () => {
    const proxy = await holdingProxy(url);
    const connecting = new WebSocketRemote({ url: proxy.url, createSocket });
    try {
      const before = await jobsRun(url, 'mlp');
      const abort = new AbortController();
      const job = connecting.run(
        mlp,
        mlpInput(1, 8),
        options('while-connecting', [], abort.signal),
      );
      // The socket has reached the server, whose answer the proxy holds: the call is connecting.
      await proxy.accepted;
      abort.abort();
      // The connection then completes; a cancelled call must not go out on it.
      proxy.release();
      expect(await codeOf(job)).toBe('E_CANCELLED');
      // One job after it on the same connection: the server ran that one only.
      await connecting.run(mlp, mlpInput(1, 9), options('after-connecting'));
      expect(await jobsRun(url, 'mlp')).toBe(before + 1);
    } finally {
      await connecting.close();
      await proxy.close();
    }
  });

  /**
   * A remote that connects through a proxy passing everything until the server's bytes hold
   * `cutAt` (then it cuts), and that reconnects within milliseconds.
   */
  const throughCuttingProxy = async (
    cutAt: string,
    createSocket: (url: string, protocols: string[]) => WebSocketLike,
  ): Promise<{ proxy: Awaited<ReturnType<typeof holdingProxy>>; remote: WebSocketRemote }> => {
    const proxy = await holdingProxy(url, Buffer.from(cutAt));
    proxy.release();
    const remote = new WebSocketRemote({
      url: proxy.url,
      createSocket,
      reconnectMinDelayMs: 20,
      reconnectMaxDelayMs: 200,
    });
    return { proxy, remote };
  };

  it('resumes a job after its connection drops mid-run: one result, the job run once', async () => {
    // Cut when the job runs, or at the latest before its result reaches the client: on a busy
    // machine the run can end before the client has heard that it started.
    const wire = resultsOnWire('dropped-1');
    const { proxy, remote: dropping } = await throughCuttingProxy(
      '{"type":"result","id":"dropped-1"',
      wire.createSocket,
    );
    try {
      await dropping.warm(slow);
      const before = await jobsRun(url, 'slow');
      let runningNow!: () => void;
      const isRunning = new Promise<void>((resolve) => (runningNow = resolve));
      const inputs = slowInput(256, 6);
      const job = dropping.run(slow, inputs, {
        ...options('dropped-1'),
        onProgress: (event) => {
          if (event.stage === 'running') runningNow();
        },
      });
      await isRunning;
      proxy.cut(); // the server keeps running the job; the client reconnects and resumes it
      const result = await job;
      expect(result.outputs.y?.dims).toEqual([256, 256]);
      const y = result.outputs.y!.data as Float32Array;
      expect(Buffer.from(y.buffer, y.byteOffset, y.byteLength)).toEqual(
        Buffer.from((inputs.x!.data as Float32Array).buffer),
      );
      await dropping.run(slow, slowInput(1, 7), options('dropped-2'));
      // One result, on the connection made after the drop.
      expect(wire.connections()).toEqual([1]);
      // Resumed, not retried: the server ran it once (and the one after it).
      expect(await jobsRun(url, 'slow')).toBe(before + 2);
    } finally {
      await dropping.close();
      await proxy.close();
    }
  });

  it('a job cancelled while its connection is down is cancelled on the server: asked about it later, the server says E_CANCELLED, never a result', async () => {
    const proxy = await holdingProxy(url);
    proxy.release();
    let firstClosed!: () => void;
    const closed = new Promise<void>((resolve) => (firstClosed = resolve));
    let opened = 0;
    const remote = new WebSocketRemote({
      url: proxy.url,
      reconnectMinDelayMs: 20,
      reconnectMaxDelayMs: 200,
      createSocket: (socketUrl, protocols) => {
        const socket = new WebSocket(socketUrl, protocols);
        if (opened++ === 0) socket.on('close', () => firstClosed());
        return socket as unknown as WebSocketLike;
      },
    });
    try {
      await remote.warm(slow);
      let runningNow!: () => void;
      const isRunning = new Promise<void>((resolve) => (runningNow = resolve));
      const abort = new AbortController();
      const job = remote.run(slow, slowInput(8192, 8), {
        ...options('gone-1', [], abort.signal),
        onProgress: (event) => {
          if (event.stage === 'running') runningNow();
        },
      });
      await isRunning;
      // The server keeps the job running for a resume that, cancelled, the client never sends.
      proxy.cut();
      await closed;
      abort.abort();
      expect(await codeOf(job)).toBe('E_CANCELLED');
      // The remote reconnects for the cancel, and stays usable.
      const next = await remote.run(slow, slowInput(2, 9), options('after-1'));
      expect(next.outputs.y?.dims).toEqual([2, 256]);
      const probe = await connectClient(url);
      try {
        probe.send({ type: 'resume', ids: ['gone-1'] });
        const told = await probe.collectJob('gone-1');
        expect(told.result).toBeUndefined();
        expect(told.error?.code).toBe('E_CANCELLED');
      } finally {
        await probe.close();
      }
    } finally {
      await remote.close();
      await proxy.close();
    }
  });

  it('a warm() whose connection drops before the welcome goes out on the next one: the server wakes the model', async () => {
    // The first connection is cut as the server's welcome comes, before the client hears it.
    const wire = readyOnWire('slow');
    const { proxy, remote: waking } = await throughCuttingProxy(
      '{"type":"welcome"',
      wire.createSocket,
    );
    try {
      await waking.warm(slow);
      // The server answers a warm with the model's ready state: it came on the second connection.
      expect(await wire.ready).toBe(1);
    } finally {
      await waking.close();
      await proxy.close();
    }
  });

  it('reports a server error with its code', async () => {
    const bad: TensorMap = { x: { dtype: 'int32', dims: [1, 8], data: new Int32Array(8) } };
    expect(await codeOf(remote.run(mlp, bad, options('bad')))).toBe('E_INPUT_DTYPE');
  });
});

describe('WebSocketRemote against a server with a small payload limit', () => {
  let dir: string;
  let server: TandemServer;
  let url: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-limit-'));
    await writeModelFile(
      dir,
      'mlp',
      1,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 3 }).bytes,
    );
    await writeSlowModel(dir);
    server = await createServer({
      port: 0,
      catalog: false,
      modelsDir: dir,
      maxPayloadBytes: 64 * 1024,
    });
    url = await server.listen();
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails an oversized job alone with E_PAYLOAD_TOO_LARGE; the connection and the job in flight carry on', async () => {
    let opened = 0;
    const limited = new WebSocketRemote({
      url,
      createSocket: (socketUrl, protocols) => {
        opened += 1;
        return createSocket(socketUrl, protocols);
      },
    });
    try {
      await limited.warm(slow);
      let runningNow!: () => void;
      const isRunning = new Promise<void>((resolve) => (runningNow = resolve));
      // 32 rows of 256 floats: 32 KiB, under the limit.
      const inFlight = limited.run(slow, slowInput(32, 3), {
        ...options('in-flight'),
        onProgress: (event) => {
          if (event.stage === 'running') runningNow();
        },
      });
      await isRunning;
      // 4,000 rows of 8 floats: 128,000 bytes, over the limit.
      expect(await codeOf(limited.run(mlp, mlpInput(4000, 4), options('oversized')))).toBe(
        'E_PAYLOAD_TOO_LARGE',
      );
      expect((await inFlight).outputs.y?.dims).toEqual([32, 256]);
      // The same connection runs the next job: nothing was dropped or reconnected.
      await limited.run(mlp, mlpInput(4, 5), options('after-oversized'));
      expect(opened).toBe(1);
    } finally {
      await limited.close();
    }
  });
});

describe('WebSocketRemote with a socket that caps the messages it receives', () => {
  let dir: string;
  let server: TandemServer;
  let url: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-result-limit-'));
    // y is x repeated 1,024 times: 4 KiB of result per input float.
    await writeModelFile(dir, 'tile', 1, buildTileModel(1024));
    // A short result TTL: a client that kept resuming a result it cannot take would, after it,
    // hear E_JOB_NOT_FOUND rather than loop until the test times out.
    server = await createServer({ port: 0, catalog: false, modelsDir: dir, resultTtlMs: 2000 });
    url = await server.listen();
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a result over the cap fails its job with E_PAYLOAD_TOO_LARGE, not resumed into the same close; the next job runs', async () => {
    const tile: ModelManifest = { name: 'tile' };
    let opened = 0;
    const capped = new WebSocketRemote({
      url,
      createSocket: (socketUrl, protocols) => {
        opened += 1;
        // The ws package's own cap, lowered: 64 KiB.
        return new WebSocket(socketUrl, protocols, {
          maxPayload: 64 * 1024,
        }) as unknown as WebSocketLike;
      },
    });
    const x = (n: number): TensorMap => ({
      x: { dtype: 'float32', dims: [n], data: Float32Array.from({ length: n }, (_, i) => i) },
    });
    try {
      // 64 floats tiled: a 256 KiB result, which the client's socket refuses (1009).
      expect(await codeOf(capped.run(tile, x(64), options('over-cap')))).toBe(
        'E_PAYLOAD_TOO_LARGE',
      );
      expect(opened).toBe(1);
      // 4 floats tiled: a 16 KiB result, on a new connection.
      const result = await capped.run(tile, x(4), options('under-cap'));
      expect(result.outputs.y?.dims).toEqual([4096]);
      expect(Array.from((result.outputs.y?.data as Float32Array).subarray(0, 8))).toEqual([
        0, 1, 2, 3, 0, 1, 2, 3,
      ]);
      expect(opened).toBe(2);
    } finally {
      await capped.close();
    }
  });
});

describe('WebSocketRemote against a server with two versions of a model', () => {
  let dir: string;
  let server: TandemServer;
  let remote: WebSocketRemote;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-versions-'));
    // 10 is the latest: versions compare as numbers, though "10" sorts before "9" as text.
    await writeModelFile(
      dir,
      'mlp',
      9,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 9 }).bytes,
    );
    await writeModelFile(
      dir,
      'mlp',
      10,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 4, seed: 10 }).bytes,
    );
    server = await createServer({ port: 0, catalog: false, modelsDir: dir });
    remote = new WebSocketRemote({ url: await server.listen(), createSocket });
  });

  afterAll(async () => {
    await remote.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('estimates the version asked for, else the one the server runs (its latest)', async () => {
    const v9 = { name: 'mlp', version: '9' };
    const v10 = { name: 'mlp', version: '10' };
    expect((await remote.estimate(v9)).cold).toBe(true);
    await remote.run(v9, mlpInput(1, 1), options('v9'));
    expect((await remote.estimate(v9)).cold).toBe(false);
    // Running 9 loaded 9 only.
    expect((await remote.estimate(v10)).cold).toBe(true);
    expect((await remote.estimate(mlp)).cold).toBe(true);
    expect((await remote.estimate({ name: 'mlp', version: '11' })).available).toBe(false);
    // No version: the server runs 10 (four classes), after which that one is warm.
    const latest = await remote.run(mlp, mlpInput(1, 2), options('latest'));
    expect(latest.outputs.probs?.dims).toEqual([1, 4]);
    expect(latest.cold).toBe(true);
    expect((await remote.estimate(mlp)).cold).toBe(false);
    expect((await remote.estimate(v10)).cold).toBe(false);
  });
});

describe('WebSocketRemote when the server is not there', () => {
  it('is unavailable and fails fast with E_NETWORK', async () => {
    const remote = new WebSocketRemote({
      url: 'http://127.0.0.1:9',
      createSocket,
      connectTimeoutMs: 2000,
    });
    expect((await remote.estimate(mlp)).available).toBe(false);
    expect(await codeOf(remote.run(mlp, mlpInput(1, 1), options('x')))).toBe('E_NETWORK');
    await remote.close();
  });
});

describe('WebSocketRemote across a server restart', () => {
  let child: ChildProcess | undefined;
  let dir: string;

  afterEach(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  });

  const serve = (port: number): Promise<CliProcess> =>
    startCli(['serve', '--port', String(port), '--models', dir, '--no-catalog', '--quiet']);

  it('reconnects and resumes or retries the job: exactly one result', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-restart-'));
    await writeSlowModel(dir);
    const first = await serve(0);
    child = first.child;
    const port = Number(new URL(first.url).port);
    const wire = resultsOnWire('restart-1');
    const remote = new WebSocketRemote({
      url: first.url,
      createSocket: wire.createSocket,
      reconnectMinDelayMs: 50,
      reconnectMaxDelayMs: 500,
      jobReconnectTimeoutMs: 30_000,
    });
    await remote.warm(slow);
    let runningNow!: () => void;
    const isRunning = new Promise<void>((resolve) => (runningNow = resolve));
    const job = remote.run(slow, slowInput(256, 4), {
      ...options('restart-1'),
      onProgress: (event) => {
        if (event.stage === 'running') runningNow();
      },
    });
    let results = 0;
    void job.then(() => results++);
    await isRunning;
    // The server dies mid-job, then a new one starts on the same port.
    await first.stop('SIGKILL');
    const second = await serve(port);
    child = second.child;
    const result = await job;
    expect(result.outputs.y?.dims).toEqual([256, 256]);
    expect(Array.from((result.outputs.y!.data as Float32Array).subarray(0, 4))).toEqual(
      Array.from((slowInput(256, 4).x!.data as Float32Array).subarray(0, 4)),
    );
    // One more round trip on the same runtime: nothing else arrives for the finished job.
    await remote.run(slow, slowInput(1, 5), options('restart-2'));
    expect(results).toBe(1);
    expect(wire.count()).toBe(1);
    await remote.close();
  });
});
