// A minimal Tandem WebSocket client for benchmarks: hello, then infer calls matched to results by
// id. (The real client library is @tandem/client; benches measure the server and protocol alone.)

import { WebSocket } from 'ws';
import {
  PROTOCOL_VERSION,
  TandemError,
  decodeServerMessage,
  encodeMessageParts,
  type ClientMessage,
  type ResultMessage,
  type TensorMap,
} from '@tandem/shared';

/** A connected benchmark client. */
export interface BenchClient {
  infer(model: string, inputs: TensorMap, options?: { progress?: boolean }): Promise<ResultMessage>;
  /** Sends raw bytes and resolves on the next message (for the echo comparison). */
  close(): Promise<void>;
  /** Progress messages received so far. */
  readonly progressMessages: number;
}

let nextId = 0;

/** Connects to a Tandem server's /v1/stream and completes the hello/welcome exchange. */
export async function connectBenchClient(baseUrl: string): Promise<BenchClient> {
  const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/stream`, ['tandem.v1']);
  // As @tandem/client's Node socket reads: each message as its fragments, a large output read
  // where it arrived (see decodeMessage).
  socket.binaryType = 'fragments';
  const pending = new Map<
    string,
    { resolve: (r: ResultMessage) => void; reject: (e: Error) => void }
  >();
  let progressMessages = 0;
  let welcomed: (() => void) | undefined;
  socket.on('message', (data: Buffer[]) => {
    const message = decodeServerMessage(data);
    if (message.type === 'welcome') welcomed?.();
    else if (message.type === 'progress') progressMessages++;
    else if (message.type === 'result') {
      pending.get(message.id)?.resolve(message);
      pending.delete(message.id);
    } else if (message.type === 'error' && message.id !== null) {
      pending.get(message.id)?.reject(new TandemError(message.code, message.message));
      pending.delete(message.id);
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  // As @tandem/client's Node socket sends: a large input as the fragments of one message, from
  // the input's own memory (see encodeMessageParts).
  const send = (message: ClientMessage): void => {
    const parts = encodeMessageParts(message, { pooled: true });
    if (parts.length === 1) {
      socket.send(parts[0] as Uint8Array);
      return;
    }
    const last = parts.length - 1;
    parts.forEach((part, index) => socket.send(part, { binary: true, fin: index === last }));
  };
  await new Promise<void>((resolve) => {
    welcomed = resolve;
    send({
      type: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      client: { name: 'bench', version: '0' },
    });
  });
  return {
    infer(model, inputs, options = {}) {
      const id = `b${nextId++}`;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        send({
          type: 'infer',
          id,
          model,
          inputs,
          ...(options.progress === false ? { progress: false } : {}),
        });
      });
    },
    async close() {
      socket.close();
      await new Promise((resolve) => socket.once('close', resolve));
    },
    get progressMessages() {
      return progressMessages;
    },
  };
}
