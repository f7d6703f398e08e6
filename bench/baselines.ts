// Baselines the server benches compare against, measured in the same run: onnxruntime-node used
// directly, a plain ws echo server (the floor for any WebSocket protocol), the thinnest ws server
// that runs a model in a worker thread (the floor for any server that keeps its event loop free),
// and a hand-written fastify JSON endpoint (the usual way people put a model behind HTTP).

import Fastify from 'fastify';
import * as ort from 'onnxruntime-node';
import { Worker } from 'node:worker_threads';
import { WebSocket, WebSocketServer } from 'ws';
import type { Tensor } from '@tandem/shared';

/** onnxruntime-node's session.run, used directly on the main thread. */
export async function rawSession(path: string): Promise<{
  run(inputs: Record<string, Tensor>): Promise<void>;
  release(): Promise<void>;
}> {
  const session = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all' });
  return {
    async run(inputs) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(inputs))
        feeds[name] = new ort.Tensor(t.dtype, t.data, t.dims);
      await session.run(feeds);
    },
    release: () => session.release(),
  };
}

/**
 * A ws server that echoes every binary message back, and `clients` clients to time it. The
 * clients read a message as its fragments, as Tandem's bench client (and @tandem/client in Node)
 * does, so both sides of a comparison do the same client work.
 */
export async function startEchoServer(clients = 1): Promise<{
  /** Sends `bytes` on client `lane` (0 by default) and resolves with the echo's fragments. */
  roundTrip(bytes: Uint8Array, lane?: number): Promise<Buffer[]>;
  close(): Promise<void>;
}> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (socket) =>
    socket.on('message', (data) => socket.send(data as Buffer, { binary: true })),
  );
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const { port } = wss.address() as { port: number };
  const sockets = await Promise.all(
    Array.from({ length: clients }, async () => {
      const client = new WebSocket(`ws://127.0.0.1:${port}`);
      client.binaryType = 'fragments';
      await new Promise((resolve) => client.once('open', resolve));
      // Echoes come back in order on one socket: a FIFO of waiters matches them.
      const waiters: ((data: Buffer[]) => void)[] = [];
      client.on('message', (data: Buffer[]) => waiters.shift()?.(data));
      return { client, waiters };
    }),
  );
  return {
    roundTrip(bytes, lane = 0) {
      const { client, waiters } = sockets[lane] as (typeof sockets)[number];
      return new Promise((resolve) => {
        waiters.push(resolve);
        client.send(bytes);
      });
    },
    async close() {
      for (const { client } of sockets) client.close();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/**
 * The worker of {@link startThinModelServer}: runs the model on each float32 input it is handed
 * and hands the first output back. (Plain CommonJS, evaluated as the worker's source.)
 */
const THIN_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require('onnxruntime-node');
const created = ort.InferenceSession.create(workerData.path, { graphOptimizationLevel: 'all' });
parentPort.on('message', async ({ id, bytes }) => {
  const session = await created;
  const input = new ort.Tensor('float32', new Float32Array(bytes), workerData.dims);
  const results = await session.run({ [session.inputNames[0]]: input });
  const output = results[session.outputNames[0]].data;
  parentPort.postMessage({ id, output }, [output.buffer]);
});`;

/**
 * The thinnest WebSocket server that keeps its event loop free: each binary message is a float32
 * input of `dims` (raw bytes, no header), handed to one worker thread running onnxruntime-node
 * (transferred, not copied), whose first output goes back as raw bytes. No protocol, no checks,
 * no queue: what any server doing the same job pays at least.
 */
export async function startThinModelServer(
  path: string,
  dims: readonly number[],
): Promise<{
  /** Sends `data` and resolves with the model's first output. */
  infer(data: Float32Array): Promise<Float32Array>;
  close(): Promise<void>;
}> {
  const worker = new Worker(THIN_WORKER_SOURCE, { eval: true, workerData: { path, dims } });
  const waiting = new Map<number, WebSocket>();
  let nextId = 0;
  worker.on('message', ({ id, output }: { id: number; output: Float32Array }) => {
    waiting.get(id)?.send(output);
    waiting.delete(id);
  });
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 256 * 1024 * 1024,
  });
  wss.on('connection', (socket) =>
    socket.on('message', (data: Buffer) => {
      const id = nextId++;
      waiting.set(id, socket);
      // A large message arrives in a buffer of its own: moved to the worker as it is.
      const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
      const bytes = whole
        ? data.buffer
        : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
      worker.postMessage({ id, bytes }, [bytes as ArrayBuffer]);
    }),
  );
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const { port } = wss.address() as { port: number };
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  client.binaryType = 'arraybuffer';
  await new Promise((resolve) => client.once('open', resolve));
  // Answers come back in order: a FIFO of waiters matches them.
  const waiters: ((data: ArrayBuffer) => void)[] = [];
  client.on('message', (data: ArrayBuffer) => waiters.shift()?.(data));
  return {
    infer(data) {
      return new Promise((resolve) => {
        waiters.push((reply) => resolve(new Float32Array(reply)));
        client.send(data);
      });
    },
    async close() {
      client.close();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await worker.terminate();
    },
  };
}

/**
 * The usual hand-written endpoint: POST JSON `{ inputs: { name: { dims, data: number[] } } }`,
 * run onnxruntime-node, answer JSON number arrays.
 */
export async function startJsonEndpoint(path: string): Promise<{
  infer(inputs: Record<string, Tensor>): Promise<void>;
  close(): Promise<void>;
}> {
  const session = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all' });
  const app = Fastify({ bodyLimit: 256 * 1024 * 1024 });
  app.post('/infer', async (request) => {
    const body = request.body as { inputs: Record<string, { dims: number[]; data: number[] }> };
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(body.inputs))
      feeds[name] = new ort.Tensor('float32', Float32Array.from(t.data), t.dims);
    const results = await session.run(feeds);
    const outputs: Record<string, { dims: readonly number[]; data: number[] }> = {};
    for (const [name, value] of Object.entries(results))
      outputs[name] = { dims: value.dims, data: Array.from(value.data as Float32Array) };
    return { outputs };
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    async infer(inputs) {
      const payload: Record<string, { dims: readonly number[]; data: number[] }> = {};
      for (const [name, t] of Object.entries(inputs))
        payload[name] = { dims: t.dims, data: Array.from(t.data as Float32Array) };
      const response = await fetch(`${url}/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: payload }),
      });
      const json = (await response.json()) as { outputs: Record<string, { data: number[] }> };
      for (const output of Object.values(json.outputs)) Float32Array.from(output.data);
    },
    async close() {
      await app.close();
      await session.release();
    },
  };
}
