// WebSocketRemote's pure pieces (backoff, URLs) and its connection state machine, driven through
// a fake socket and fake timers: heartbeats that count missed pongs per connection, refusals
// (bad key, wrong version, forbidden origin) that end calls at once instead of reconnecting, jobs
// and warms that find no open connection to be sent on (they wait for the next one; a warm goes
// out once per model version), the server's payload limit (checked before sending; a 1009 close
// fails the oversized job alone, or the jobs waiting for an answer too large for the socket), and
// model statuses kept per version. Jobs against a real server are tested in
// test/client-websocket-remote.test.ts.

import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  PROTOCOL_VERSION,
  decodeClientMessage,
  encodeMessage,
  type ClientMessage,
  type ErrorCode,
  type ModelStatus,
  type ServerMessage,
} from '@tandem/shared';
import { rejectionCode } from '@tandem/test-support';
import {
  WebSocketRemote,
  backoffDelayMs,
  streamUrl,
  type WebSocketLike,
} from '../src/websocket-remote.js';

/** A socket the test plays the server of: it opens, answers and closes when told. */
class FakeSocket implements WebSocketLike {
  binaryType = '';
  readyState = 0;
  readonly sent: ClientMessage[] = [];
  closedWith: number | undefined;
  /**
   * Set, close() only starts the closing handshake, which a dead peer never answers: no close
   * event comes (the `ws` package waits 30 s before it gives up on one).
   */
  deadPeer = false;
  onopen: WebSocketLike['onopen'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;
  onmessage: WebSocketLike['onmessage'] = null;

  send(data: Uint8Array): void {
    // Copied first: the client encodes into pooled buffers.
    this.sent.push(decodeClientMessage(data.slice()));
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === 3) return;
    this.closedWith = code;
    if (this.deadPeer) {
      this.readyState = 2;
      return;
    }
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  /**
   * Refuses a message from the server as too large, as the `ws` package's socket does past its
   * `maxPayload`: an error naming the cause, then a close with 1006 (it never hears the server's
   * close frame back).
   */
  refuseTooLarge(): void {
    const error = Object.assign(new RangeError('Max payload size exceeded'), {
      code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
    });
    this.onerror?.({ type: 'error', error, message: error.message });
    this.close(1006);
  }

  receive(message: ServerMessage): void {
    this.onmessage?.({ data: encodeMessage(message) });
  }

  welcome(
    maxPayloadBytes = 1 << 20,
    models: readonly ModelStatus[] = [{ name: 'm', version: '1', state: 'ready', instances: 1 }],
  ): void {
    this.receive({
      type: 'welcome',
      protocolVersion: PROTOCOL_VERSION,
      server: { name: 'fake', version: '0' },
      models,
      limits: {
        maxPayloadBytes,
        maxQueue: 8,
        heartbeatIntervalMs: 1000,
        resultTtlMs: 1000,
      },
    });
  }

  count(type: ClientMessage['type']): number {
    return this.sent.filter((message) => message.type === type).length;
  }

  /** Ids of the `infer` messages sent on this socket, in order. */
  inferred(): string[] {
    return this.sent.flatMap((message) => (message.type === 'infer' ? [message.id] : []));
  }

  /** Answers job `id` with a result of one output. */
  answer(id: string): void {
    this.receive({
      type: 'result',
      id,
      model: 'm',
      version: '1',
      outputs: { y: { dtype: 'float32', dims: [1], data: new Float32Array(1) } },
      backend: 'cpu',
      coldStart: false,
      timings: { queueMs: 0, loadMs: 0, warmupMs: 0, runMs: 1, totalMs: 1 },
    });
  }
}

function fakeRemote(heartbeatIntervalMs = 1000) {
  const sockets: FakeSocket[] = [];
  const remote = new WebSocketRemote({
    url: 'http://127.0.0.1:1',
    createSocket: () => {
      const socket = new FakeSocket();
      sockets.push(socket);
      return socket;
    },
    heartbeatIntervalMs,
    reconnectMinDelayMs: 10,
    reconnectMaxDelayMs: 10,
    jobReconnectTimeoutMs: 60_000,
    random: () => 0,
  });
  return { remote, sockets };
}

const jobOptions = (jobId: string) => ({
  jobId,
  priority: 5,
  signal: new AbortController().signal,
  onProgress: () => undefined,
});

const inputs = { x: { dtype: 'float32', dims: [1], data: new Float32Array(1) } } as const;

/** An input of 2 MiB: over the fake server's default limit of 1 MiB. */
const largeInputs = {
  x: { dtype: 'float32', dims: [1 << 19], data: new Float32Array(1 << 19) },
} as const;

/** A remote connected to a fake server that announced `maxPayloadBytes` (and `models`). */
async function connectedRemote(
  maxPayloadBytes?: number,
  models?: readonly ModelStatus[],
  heartbeatIntervalMs?: number,
): Promise<ReturnType<typeof fakeRemote>> {
  const fake = fakeRemote(heartbeatIntervalMs);
  const connecting = fake.remote.connect();
  fake.sockets[0]!.open();
  fake.sockets[0]!.welcome(maxPayloadBytes, models);
  await connecting;
  return fake;
}

/** Fake timers for every test of the describe block this is called in. */
function withFakeTimers(): void {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}

describe('backoffDelayMs', () => {
  it('grows exponentially up to the cap, with full jitter in between', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const delay = backoffDelayMs(attempt, 250, 10_000, () => r);
          expect(delay).toBeGreaterThanOrEqual(250);
          expect(delay).toBeLessThanOrEqual(Math.min(10_000, 250 * 2 ** attempt));
        },
      ),
    );
    expect(backoffDelayMs(3, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelayMs(30, 100, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelayMs(5, 100, 10_000, () => 0)).toBe(100);
  });
});

describe('streamUrl', () => {
  it('maps http(s) base URLs to the ws(s) stream endpoint and keeps ws URLs', () => {
    expect(streamUrl('http://127.0.0.1:8080')).toBe('ws://127.0.0.1:8080/v1/stream');
    expect(streamUrl('https://api.example.com/tandem/')).toBe(
      'wss://api.example.com/tandem/v1/stream',
    );
    expect(streamUrl('wss://api.example.com/v1/stream')).toBe('wss://api.example.com/v1/stream');
  });
});

describe('WebSocketRemote connection state', () => {
  withFakeTimers();

  it('counts missed pongs per connection: after a reconnect it takes two again to drop', async () => {
    const { remote, sockets } = fakeRemote(1000);
    const first = remote.connect();
    sockets[0]!.open();
    sockets[0]!.welcome();
    await first;
    // A job in flight, so the remote reconnects when the connection drops.
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j-1'));
    void job.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sockets[0]!.count('ping')).toBe(1); // unanswered when the connection drops
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.welcome();
    // Two pings go unanswered on the new connection before the third tick drops it.
    await vi.advanceTimersByTimeAsync(2000);
    expect(sockets[1]!.count('ping')).toBe(2);
    expect(sockets[1]!.closedWith).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1000);
    expect(sockets[1]!.closedWith).toBe(4000);
    await remote.close();
    expect(await rejectionCode(job)).toBe('E_CANCELLED');
  });

  it('a connection the heartbeat finds dead is replaced at once, without waiting for its close: its job resumes and a new job runs', async () => {
    const { remote, sockets } = fakeRemote(1000);
    const first = remote.connect();
    sockets[0]!.open();
    sockets[0]!.welcome();
    await first;
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j-1'));
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[0]!.inferred()).toEqual(['j-1']);
    // The peer is gone without a word: no pong, and no close event for the socket's close().
    sockets[0]!.deadPeer = true;
    await vi.advanceTimersByTimeAsync(3000);
    expect(sockets[0]!.closedWith).toBe(4000);
    // A job made now waits for the next connection like the one in flight.
    const next = remote.run({ name: 'm' }, inputs, jobOptions('j-2'));
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[1]!.sent.filter((message) => message.type === 'resume')).toEqual([
      { type: 'resume', ids: ['j-1'] },
    ]);
    expect(sockets[1]!.inferred()).toEqual(['j-2']);
    sockets[1]!.answer('j-1');
    sockets[1]!.answer('j-2');
    expect(await rejectionCode(job)).toBe('ok');
    expect(await rejectionCode(next)).toBe('ok');
    await remote.close();
  });

  for (const code of ['E_UNAUTHORIZED', 'E_PROTOCOL_VERSION', 'E_FORBIDDEN_ORIGIN'] as const) {
    it(`${code} from the server ends calls with that code and does not reconnect`, async () => {
      const { remote, sockets } = fakeRemote();
      const refuse = (socket: FakeSocket, refused: ErrorCode): void => {
        socket.receive({ type: 'error', id: null, code: refused, message: 'no', retryable: false });
        socket.close(1008, 'refused');
      };
      // Refused on connecting: the waiting calls get the code (a warm too: it is not retried).
      const connecting = remote.connect();
      const warming = remote.warm({ name: 'm' });
      sockets[0]!.open();
      refuse(sockets[0]!, code);
      expect(await rejectionCode(connecting)).toBe(code);
      expect(await rejectionCode(warming)).toBe(code);
      // Refused with a job in flight: the job gets the code; nothing reconnects.
      const again = remote.connect();
      sockets[1]!.open();
      sockets[1]!.welcome();
      await again;
      const job = remote.run({ name: 'm' }, inputs, jobOptions('j-2'));
      await vi.advanceTimersByTimeAsync(0);
      expect(sockets[1]!.count('infer')).toBe(1);
      refuse(sockets[1]!, code);
      expect(await rejectionCode(job)).toBe(code);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(sockets).toHaveLength(2);
      await remote.close();
    });
  }
});

describe('WebSocketRemote jobs that find no open connection to be sent on', () => {
  withFakeTimers();

  it('a job whose connection closes after connect() resolved, before its infer went out, is sent on the next connection', async () => {
    const { remote, sockets } = await connectedRemote();
    // run() waits for connect() first: the close lands between that and the infer, with no job
    // in flight yet to make the remote reconnect.
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j'));
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets[0]!.inferred()).toEqual([]);
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    // Sent afresh, not resumed: the server never had it.
    expect(sockets[1]!.inferred()).toEqual(['j']);
    expect(sockets[1]!.count('resume')).toBe(0);
    sockets[1]!.answer('j');
    expect(await rejectionCode(job)).toBe('ok');
    await remote.close();
  });

  it('a job whose remote is closed while it waits for the connection ends at once with E_CANCELLED', async () => {
    const { remote, sockets } = await connectedRemote();
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j'));
    await remote.close();
    // No timer left to wait for: the answer is there without moving the clock.
    expect(await rejectionCode(job)).toBe('E_CANCELLED');
    expect(sockets[0]!.inferred()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('such a job fails with E_NETWORK after jobReconnectTimeoutMs when no connection comes back', async () => {
    const { remote, sockets } = await connectedRemote();
    let outcome: string | undefined;
    void rejectionCode(remote.run({ name: 'm' }, inputs, jobOptions('j'))).then(
      (code) => (outcome = code),
    );
    sockets[0]!.close(1006);
    // The next connection is attempted but never opens.
    await vi.advanceTimersByTimeAsync(59_999);
    expect(sockets).toHaveLength(2);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(outcome).toBe('E_NETWORK');
    await remote.close();
  });

  it('a job cancelled while its connection is down is cancelled on the server once a connection comes back, not resumed', async () => {
    const { remote, sockets } = await connectedRemote();
    const controller = new AbortController();
    const job = remote.run({ name: 'm' }, inputs, {
      ...jobOptions('j'),
      signal: controller.signal,
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[0]!.inferred()).toEqual(['j']);
    sockets[0]!.close(1006);
    controller.abort();
    expect(await rejectionCode(job)).toBe('E_CANCELLED');
    // The server kept the job for a resume and would run it to the end: the remote reconnects
    // to cancel it, though nothing else waits for a connection.
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[1]!.sent.filter((message) => message.type === 'cancel')).toEqual([
      { type: 'cancel', id: 'j' },
    ]);
    expect(sockets[1]!.count('resume')).toBe(0);
    await remote.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("lets go of the call's signal once the job is answered or fails: a long-lived signal keeps no job (and its inputs)", async () => {
    const { remote, sockets } = await connectedRemote();
    const shared = new AbortController();
    const answered = remote.run({ name: 'm' }, inputs, {
      ...jobOptions('a'),
      signal: shared.signal,
    });
    const failed = remote.run({ name: 'm' }, inputs, { ...jobOptions('b'), signal: shared.signal });
    await vi.advanceTimersByTimeAsync(0);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(2);
    sockets[0]!.answer('a');
    sockets[0]!.receive({
      type: 'error',
      id: 'b',
      code: 'E_RUNTIME',
      message: 'failed',
      retryable: false,
    });
    expect(await rejectionCode(answered)).toBe('ok');
    expect(await rejectionCode(failed)).toBe('E_RUNTIME');
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    await remote.close();
  });

  it('a resubmission that finds its connection closing goes out as an infer on the next connection', async () => {
    const { remote, sockets } = await connectedRemote();
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j'));
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[0]!.inferred()).toEqual(['j']);
    // The server lost the job (it restarted); its answer is read while the socket is closing.
    sockets[0]!.readyState = 2;
    sockets[0]!.receive({
      type: 'error',
      id: 'j',
      code: 'E_JOB_NOT_FOUND',
      message: 'no such job',
      retryable: false,
    });
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    sockets[1]!.open();
    sockets[1]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    // Resumed instead, it would only hear E_JOB_NOT_FOUND again.
    expect(sockets[1]!.inferred()).toEqual(['j']);
    expect(sockets[1]!.count('resume')).toBe(0);
    sockets[1]!.answer('j');
    expect(await rejectionCode(job)).toBe('ok');
    await remote.close();
  });
});

describe('WebSocketRemote warms that find no open connection to be sent on', () => {
  withFakeTimers();

  /** The `warm` messages sent on every socket the remote opened, in order. */
  const warmsSent = (sockets: readonly FakeSocket[]): ClientMessage[] =>
    sockets.flatMap((socket) => socket.sent.filter((message) => message.type === 'warm'));

  it('a warm whose connection is closing when it is to be sent goes out on the next connection, once', async () => {
    const { remote, sockets } = await connectedRemote();
    // connect() resolved (the remote was welcomed), but the socket is going down: its close
    // comes after the warm.
    sockets[0]!.readyState = 2;
    const warming = remote.warm({ name: 'm', version: '1' });
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    expect(await rejectionCode(warming)).toBe('ok');
    expect(sockets[1]!.sent.filter((message) => message.type === 'warm')).toEqual([
      { type: 'warm', model: 'm', version: '1' },
    ]);
    expect(warmsSent(sockets)).toHaveLength(1);
    await remote.close();
  });

  it('a warm whose connection closes as it is called (after connect() resolved) still reaches a connection, once', async () => {
    const { remote, sockets } = await connectedRemote();
    const warming = remote.warm({ name: 'm' });
    // The close lands before anything else runs, as it can between connect() and the send.
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    for (const socket of sockets.slice(1)) {
      socket.open();
      socket.welcome();
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(await rejectionCode(warming)).toBe('ok');
    expect(warmsSent(sockets)).toEqual([{ type: 'warm', model: 'm' }]);
    await remote.close();
  });

  it('warms called while disconnected, whose connection then drops before its welcome, go out on the next connection: one per model version', async () => {
    const { remote, sockets } = await connectedRemote();
    // Down with nothing in flight: the remote reconnects only when asked.
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(1);
    const warming = [
      remote.warm({ name: 'm' }),
      remote.warm({ name: 'm' }),
      remote.warm({ name: 'm', version: '1' }),
      remote.warm({ name: 'm', version: '1' }),
    ];
    // The warms started a connection; it drops before the server welcomes it.
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(3);
    sockets[2]!.open();
    sockets[2]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    expect(await Promise.all(warming.map(rejectionCode))).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(sockets[2]!.sent.filter((message) => message.type === 'warm')).toEqual([
      { type: 'warm', model: 'm' },
      { type: 'warm', model: 'm', version: '1' },
    ]);
    expect(warmsSent(sockets)).toHaveLength(2);
    // Sent once: a later connection does not send them again.
    sockets[2]!.close(1006);
    const after = remote.connect();
    await vi.advanceTimersByTimeAsync(10);
    sockets.at(-1)!.open();
    sockets.at(-1)!.welcome();
    await after;
    expect(warmsSent(sockets)).toHaveLength(2);
    await remote.close();
  });

  it('a warm is given up with E_NETWORK after jobReconnectTimeoutMs with no connection, and with E_CANCELLED at close(), leaving no timer', async () => {
    const { remote, sockets } = await connectedRemote();
    sockets[0]!.close(1006);
    let outcome: string | undefined;
    void rejectionCode(remote.warm({ name: 'm' })).then((code) => (outcome = code));
    // The connection it starts never opens.
    await vi.advanceTimersByTimeAsync(59_999);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(outcome).toBe('E_NETWORK');
    const closing = remote.warm({ name: 'm' });
    await remote.close();
    expect(await rejectionCode(closing)).toBe('E_CANCELLED');
    expect(warmsSent(sockets)).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('WebSocketRemote resuming a job the server could not look up just now', () => {
  withFakeTimers();

  /** A job sent on the first connection, resumed on the second (welcomed). */
  async function resumed(): Promise<{
    job: Promise<unknown>;
    sockets: FakeSocket[];
    remote: WebSocketRemote;
  }> {
    // Heartbeats far apart: the fake server answers no ping, and these tests run for a minute.
    const { remote, sockets } = await connectedRemote(undefined, undefined, 3_600_000);
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j'));
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[0]!.inferred()).toEqual(['j']);
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    sockets[1]!.open();
    sockets[1]!.welcome();
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[1]!.count('resume')).toBe(1);
    return { job, sockets, remote };
  }

  const unavailable = (retryAfterMs?: number): ServerMessage => ({
    type: 'error',
    id: 'j',
    code: 'E_QUEUE_UNAVAILABLE',
    message: 'redis did not answer',
    retryable: true,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });

  it('asks again after a retryable error instead of failing the job (a fallback would run it twice)', async () => {
    const { job, sockets, remote } = await resumed();
    sockets[1]!.receive(unavailable(250));
    await vi.advanceTimersByTimeAsync(249);
    expect(sockets[1]!.count('resume')).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets[1]!.count('resume')).toBe(2);
    sockets[1]!.answer('j');
    expect(await rejectionCode(job)).toBe('ok');
    expect(sockets[1]!.inferred()).toEqual([]);
    await remote.close();
  });

  it('fails the job with that error once jobReconnectTimeoutMs has passed since the first resume', async () => {
    const { job, sockets, remote } = await resumed();
    let outcome: string | undefined;
    void rejectionCode(job).then((code) => (outcome = code));
    // Every second an answer that the job cannot be looked up (no retryAfterMs: a second).
    const started = Date.now();
    while (outcome === undefined && Date.now() - started < 120_000) {
      sockets[1]!.receive(unavailable());
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(outcome).toBe('E_QUEUE_UNAVAILABLE');
    // Asked about once a second for the minute jobReconnectTimeoutMs allows, then no more.
    expect(Date.now() - started).toBeLessThanOrEqual(61_000);
    expect(sockets[1]!.count('resume')).toBeGreaterThanOrEqual(59);
    await remote.close();
  });

  it('a retryable error to an infer is not a resume: the job fails with it', async () => {
    const { remote, sockets } = await connectedRemote();
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j'));
    await vi.advanceTimersByTimeAsync(0);
    sockets[0]!.receive({ ...unavailable(), code: 'E_BUSY' } as ServerMessage);
    expect(await rejectionCode(job)).toBe('E_BUSY');
    await remote.close();
  });

  it("remembers an E_BUSY's retryAfterMs for that model's estimates, not another's", async () => {
    const models: ModelStatus[] = ['m', 'other'].map((name) => ({
      name,
      version: '1',
      state: 'ready',
      instances: 1,
    }));
    const { remote, sockets } = await connectedRemote(undefined, models);
    expect((await remote.estimate({ name: 'm' })).busyForMs).toBeUndefined();
    const job = remote.run({ name: 'm' }, inputs, jobOptions('j'));
    await vi.advanceTimersByTimeAsync(0);
    sockets[0]!.receive({ ...unavailable(60_000), code: 'E_BUSY' } as ServerMessage);
    expect(await rejectionCode(job)).toBe('E_BUSY');
    const busyForMs = (await remote.estimate({ name: 'm' })).busyForMs;
    expect(busyForMs).toBeGreaterThan(50_000);
    expect(busyForMs).toBeLessThanOrEqual(60_000);
    expect((await remote.estimate({ name: 'other' })).busyForMs).toBeUndefined();
    await remote.close();
  });
});

describe('WebSocketRemote and the server payload limit', () => {
  withFakeTimers();

  it('fails an infer over the welcome maxPayloadBytes alone with E_PAYLOAD_TOO_LARGE, unsent', async () => {
    const { remote, sockets } = await connectedRemote(1 << 20);
    const small = remote.run({ name: 'm' }, inputs, jobOptions('small'));
    const large = remote.run({ name: 'm' }, largeInputs, jobOptions('large'));
    void large.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    // Never sent, so the server never closes the connection over it.
    expect(sockets[0]!.inferred()).toEqual(['small']);
    expect(await rejectionCode(large)).toBe('E_PAYLOAD_TOO_LARGE');
    // The other job and the connection carry on.
    sockets[0]!.answer('small');
    expect(await rejectionCode(small)).toBe('ok');
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.closedWith).toBeUndefined();
    expect(remote.connected).toBe(true);
    await remote.close();
  });

  it('a 1009 close fails the job sent over the limit with E_PAYLOAD_TOO_LARGE, unresent; the others resume', async () => {
    // The welcome announced more than the server (or a proxy before it) takes.
    const { remote, sockets } = await connectedRemote(64 << 20);
    const before = remote.run({ name: 'm' }, inputs, jobOptions('before'));
    const large = remote.run({ name: 'm' }, largeInputs, jobOptions('large'));
    const after = remote.run({ name: 'm' }, inputs, jobOptions('after'));
    void large.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[0]!.inferred()).toEqual(['before', 'large', 'after']);
    sockets[0]!.close(1009, 'Max payload size exceeded');
    await vi.advanceTimersByTimeAsync(10);
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    sockets[1]!.welcome(64 << 20);
    await vi.advanceTimersByTimeAsync(0);
    const resume = sockets[1]!.sent.find((message) => message.type === 'resume');
    expect(resume).toEqual({ type: 'resume', ids: ['before', 'after'] });
    expect(sockets[1]!.count('infer')).toBe(0);
    expect(await rejectionCode(large)).toBe('E_PAYLOAD_TOO_LARGE');
    sockets[1]!.answer('before');
    sockets[1]!.answer('after');
    expect(await rejectionCode(before)).toBe('ok');
    expect(await rejectionCode(after)).toBe('ok');
    await remote.close();
  });

  const refusals = {
    // A proxy between them refused it.
    'a 1009 close after the server took every request whole': (socket: FakeSocket) =>
      socket.close(1009, 'Max payload size exceeded'),
    // The client's own socket refused it (ws past its maxPayload).
    "the client's socket refusing a message as too large": (socket: FakeSocket) =>
      socket.refuseTooLarge(),
  };
  for (const [what, refuse] of Object.entries(refusals)) {
    it(`${what} fails the jobs waiting for an answer on it: none is resumed into the same refusal`, async () => {
      // A result too large for the connection: resumed, the server would send it again on the
      // next connection, and it would be refused again.
      const { remote, sockets } = await connectedRemote(64 << 20);
      const large = remote.run({ name: 'm' }, largeInputs, jobOptions('large'));
      const small = remote.run({ name: 'm' }, inputs, jobOptions('small'));
      await vi.advanceTimersByTimeAsync(0);
      sockets[0]!.receive({
        type: 'progress',
        event: {
          jobId: 'large',
          model: 'm',
          where: 'remote',
          stage: 'running',
          fraction: 0.5,
          elapsedMs: 1,
        },
      });
      refuse(sockets[0]!);
      expect(await rejectionCode(large)).toBe('E_PAYLOAD_TOO_LARGE');
      expect(await rejectionCode(small)).toBe('E_PAYLOAD_TOO_LARGE');
      // Nobody waits, so nothing reconnects until the next call, which runs as usual.
      await vi.advanceTimersByTimeAsync(1000);
      expect(sockets).toHaveLength(1);
      const next = remote.run({ name: 'm' }, inputs, jobOptions('next'));
      await vi.advanceTimersByTimeAsync(0);
      sockets[1]!.open();
      sockets[1]!.welcome(64 << 20);
      await vi.advanceTimersByTimeAsync(0);
      expect(sockets[1]!.inferred()).toEqual(['next']);
      expect(sockets[1]!.count('resume')).toBe(0);
      sockets[1]!.answer('next');
      expect(await rejectionCode(next)).toBe('ok');
      await remote.close();
    });
  }

  it('a job resubmitted after a reconnect is checked against the new connection limit', async () => {
    const { remote, sockets } = await connectedRemote(64 << 20);
    const large = remote.run({ name: 'm' }, largeInputs, jobOptions('large'));
    void large.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    sockets[0]!.close(1006);
    await vi.advanceTimersByTimeAsync(10);
    // The server came back with a smaller limit and without the job.
    sockets[1]!.open();
    sockets[1]!.welcome(1 << 20);
    await vi.advanceTimersByTimeAsync(0);
    sockets[1]!.receive({
      type: 'error',
      id: 'large',
      code: 'E_JOB_NOT_FOUND',
      message: 'no such job',
      retryable: false,
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets[1]!.count('infer')).toBe(0);
    expect(await rejectionCode(large)).toBe('E_PAYLOAD_TOO_LARGE');
    expect(sockets[1]!.closedWith).toBeUndefined();
    await remote.close();
  });
});

describe('WebSocketRemote model statuses', () => {
  const status = (version: string, state: ModelStatus['state']): ModelStatus => ({
    name: 'm',
    version,
    state,
    instances: state === 'ready' ? 1 : 0,
    estimates: { loadMs: 40, warmupMs: 5, runMs: 2 },
  });

  it('keeps one status per version and estimates the version asked for, else the latest', async () => {
    // Versions compare as numbers: 10 is the latest, though it sorts first as text.
    const { remote, sockets } = await connectedRemote(undefined, [
      status('10', 'unloaded'),
      status('9', 'ready'),
    ]);
    expect((await remote.estimate({ name: 'm', version: '9' })).cold).toBe(false);
    expect((await remote.estimate({ name: 'm', version: '10' })).cold).toBe(true);
    // No version: the server runs its latest, 10, which would start cold.
    expect((await remote.estimate({ name: 'm' })).cold).toBe(true);
    expect((await remote.estimate({ name: 'm', version: '3' })).available).toBe(false);
    // A change of one version leaves the other as it was.
    sockets[0]!.receive({ type: 'model', model: status('9', 'failed') });
    expect((await remote.estimate({ name: 'm', version: '9' })).available).toBe(false);
    expect((await remote.estimate({ name: 'm', version: '10' })).available).toBe(true);
    sockets[0]!.receive({ type: 'model', model: status('10', 'ready') });
    expect((await remote.estimate({ name: 'm' })).cold).toBe(false);
    expect(remote.models.map((model) => `${model.version}:${model.state}`).sort()).toEqual([
      '10:ready',
      '9:failed',
    ]);
    await remote.close();
  });
});
