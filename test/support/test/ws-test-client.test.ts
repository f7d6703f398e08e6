// The test client against a scripted stand-in server (plain `ws`, no Tandem server: test support
// depends only on the shared protocol): hello/welcome, the inbox that keeps early messages, one
// job's progress and outcome, the ping barrier, raw frames, close codes and refused upgrades.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  PROTOCOL_VERSION,
  decodeClientMessage,
  encodeMessage,
  type ServerMessage,
} from '@tandem/shared';
import {
  TestClient,
  connectClient,
  openRawSocket,
  refusedUpgrade,
  toStreamUrl,
} from '../src/ws-test-client.js';

/** Answers like a Tandem server would, just enough for the client: see the cases below. */
function script(socket: WebSocket): void {
  const send = (message: ServerMessage): void => {
    socket.send(encodeMessage(message));
  };
  socket.on('message', (data, isBinary) => {
    if (!isBinary) return socket.close(1008, 'binary only');
    const message = decodeClientMessage(new Uint8Array(data as Buffer));
    switch (message.type) {
      case 'hello':
        // An unsolicited message before the welcome: the inbox must keep it for later.
        send({ type: 'model', model: { name: 'm', version: '1', state: 'loading', instances: 0 } });
        return send({
          type: 'welcome',
          protocolVersion: PROTOCOL_VERSION,
          server: { name: 'stand-in', version: '0' },
          models: [],
          limits: { maxPayloadBytes: 1024, maxQueue: 1, heartbeatIntervalMs: 1000, resultTtlMs: 1 },
        });
      case 'infer': {
        const base = { jobId: message.id, model: message.model, where: 'remote' as const };
        send({ type: 'progress', event: { ...base, stage: 'queued', fraction: 0, elapsedMs: 0 } });
        send({
          type: 'progress',
          event: { ...base, stage: 'running', fraction: 0.5, elapsedMs: 1 },
        });
        if (message.model === 'fails') {
          return send({
            type: 'error',
            id: message.id,
            code: 'E_MODEL_NOT_FOUND',
            message: 'no such model',
            retryable: false,
          });
        }
        return send({
          type: 'result',
          id: message.id,
          model: message.model,
          version: '1',
          outputs: message.inputs,
          backend: 'cpu',
          coldStart: false,
          timings: { queueMs: 0, loadMs: 0, warmupMs: 0, runMs: 0, totalMs: 0 },
        });
      }
      case 'ping':
        return send({ type: 'pong', nonce: message.nonce });
      default:
        return socket.close(4000, message.type);
    }
  });
}

describe('ws-test-client', () => {
  let http: Server;
  let url: string;

  beforeAll(async () => {
    http = createServer();
    const wss = new WebSocketServer({ noServer: true });
    http.on('upgrade', (request, socket, head) => {
      if (request.headers.authorization !== 'Bearer ok') {
        const body = '{"code":"E_UNAUTHORIZED"}';
        socket.end(
          `HTTP/1.1 401 Unauthorized\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
        return;
      }
      wss.handleUpgrade(request, socket, head, script);
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });

  it('maps a base URL to the stream endpoint and keeps explicit paths', () => {
    expect(toStreamUrl('http://h:1')).toBe('ws://h:1/v1/stream');
    expect(toStreamUrl('https://h/')).toBe('wss://h/v1/stream');
    expect(toStreamUrl('ws://h:1/other')).toBe('ws://h:1/other');
  });

  it('captures the status, body and code of a refused upgrade', async () => {
    const refused = await refusedUpgrade(url);
    expect(refused.status).toBe(401);
    expect(refused.code).toBe('E_UNAUTHORIZED');
    await expect(connectClient(url)).rejects.toThrow(/401/);
  });

  it('says hello, keeps messages that came early, and collects a job in order', async () => {
    const client = await connectClient(url, { apiKey: 'ok', keyIn: 'bearer' });
    expect(client.welcome?.server.name).toBe('stand-in');
    // The model message arrived before anyone asked for it.
    expect((await client.nextOf('model')).model.state).toBe('loading');
    const inputs = { x: { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) } } as const;
    const log = await client.infer({ id: 'a', model: 'm', inputs });
    expect(log.progress.map((event) => event.stage)).toEqual(['queued', 'running']);
    expect(log.result?.outputs.x?.data).toEqual(new Float32Array([1, 2]));
    const failed = await client.infer({ id: 'b', model: 'fails', inputs });
    expect(failed.error?.code).toBe('E_MODEL_NOT_FOUND');
    await client.roundTrip();
    expect(client.pending()).toEqual([]);
    expect((await client.close()).code).toBe(1000);
  });

  it('sends raw frames, reports the close code and fails waits on close', async () => {
    const client = await connectClient(url, { apiKey: 'ok', keyIn: 'bearer' });
    const waiting = client.nextOf('result', () => true, 60_000);
    client.sendRaw('text');
    expect((await client.closed).code).toBe(1008);
    await expect(waiting).rejects.toThrow(/closed \(1008/);
    await expect(client.nextOf('pong')).rejects.toThrow(/closed/);
  });

  it('times out a wait that nothing answers', async () => {
    const opened = await openRawSocket(url, { headers: { authorization: 'Bearer ok' } });
    expect(opened.kind).toBe('open');
    if (opened.kind !== 'open') return;
    const client = new TestClient(opened.socket);
    await expect(client.nextOf('welcome', () => true, 50)).rejects.toThrow(/within 50 ms/);
    await client.close();
  });
});
