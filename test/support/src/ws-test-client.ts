// A small promise-based client for integration tests against a real Tandem server over a real `ws`
// WebSocket: connect (hello/welcome), send messages, wait for the messages a test expects, collect
// one job's progress and outcome, and open raw sockets for malformed frames or refused upgrades.
// Every wait has a generous timeout: timeouts are failure guards here, never synchronisation.

import type { IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import {
  PROTOCOL_VERSION,
  decodeServerMessage,
  encodeMessage,
  encodeMessageParts,
  type ClientMessage,
  type ErrorMessage,
  type InferMessage,
  type ProgressEvent,
  type ResultMessage,
  type ServerMessage,
  type WelcomeMessage,
} from '@tandem/shared';

/** The gateway's path and subprotocols (kept here: test support does not depend on the server). */
const STREAM_PATH = '/v1/stream';
const SUBPROTOCOL = 'tandem.v1';
const KEY_SUBPROTOCOL_PREFIX = 'tandem.key.';

/** Default failure guard of every wait, in ms. @default 30000 */
export const DEFAULT_WAIT_MS = 30_000;

/** How a socket closed. */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/** Options of {@link connectClient}. */
export interface ConnectOptions {
  /** The API key to present. */
  readonly apiKey?: string;
  /**
   * Where the key travels: a `tandem.key.<key>` subprotocol entry, an `Authorization: Bearer`
   * header, or the `hello` message. @default 'subprotocol'
   */
  readonly keyIn?: 'subprotocol' | 'bearer' | 'hello';
  /** The `Origin` header to send (browsers always send one; Node clients need not). */
  readonly origin?: string;
  /** Send `hello` and wait for `welcome` before resolving. @default true */
  readonly hello?: boolean;
  /** Failure guard of the connection and of the welcome, in ms. @default DEFAULT_WAIT_MS */
  readonly timeoutMs?: number;
  /** Answer WebSocket pings; false plays a dead peer. @default true */
  readonly autoPong?: boolean;
}

/** Options of {@link openRawSocket}. */
export interface RawSocketOptions {
  /** Subprotocols to offer. @default ['tandem.v1'] */
  readonly protocols?: readonly string[];
  /** Extra request headers (for example `Authorization`). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly origin?: string;
  /** Failure guard of the handshake, in ms. @default DEFAULT_WAIT_MS */
  readonly timeoutMs?: number;
  /** Answer WebSocket pings; false plays a dead peer. @default true */
  readonly autoPong?: boolean;
}

/** What became of an upgrade request: an open socket, or the HTTP answer that refused it. */
export type RawSocketResult =
  | { readonly kind: 'open'; readonly socket: WebSocket }
  | {
      readonly kind: 'refused';
      readonly status: number;
      readonly body: string;
      /** The `code` field of a JSON body, when there is one. */
      readonly code: string | undefined;
      /** The answer's headers, names in lower case. */
      readonly headers: IncomingHttpHeaders;
    };

/** Everything one job produced on a connection: its progress events, then its one outcome. */
export type JobLog =
  | {
      readonly progress: readonly ProgressEvent[];
      readonly result: ResultMessage;
      readonly error?: undefined;
    }
  | {
      readonly progress: readonly ProgressEvent[];
      readonly result?: undefined;
      readonly error: ErrorMessage;
    };

/**
 * The WebSocket URL of a server's stream endpoint. Accepts the server's base URL
 * (`http://127.0.0.1:1234`) or a full ws:// URL; an empty path becomes `/v1/stream`.
 */
export function toStreamUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
  else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
  if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = STREAM_PATH;
  return parsed.toString();
}

/**
 * Opens a WebSocket without speaking the protocol. Resolves with the open socket, or with the
 * HTTP status and body of a refused upgrade (captured through ws's `unexpected-response`).
 */
export function openRawSocket(
  url: string,
  options: RawSocketOptions = {},
): Promise<RawSocketResult> {
  const socket = new WebSocket(toStreamUrl(url), [...(options.protocols ?? [SUBPROTOCOL])], {
    headers: { ...options.headers },
    ...(options.origin === undefined ? {} : { origin: options.origin }),
    perMessageDeflate: false,
    autoPong: options.autoPong ?? true,
  });
  return new Promise<RawSocketResult>((resolve, reject) => {
    let settled = false;
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    const timer = setTimeout(() => {
      finish(() => reject(new Error(`no answer to the upgrade within ${timeoutMs} ms`)));
      socket.terminate();
    }, timeoutMs);
    const finish = (action: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      action();
    };
    socket.once('open', () => finish(() => resolve({ kind: 'open', socket })));
    socket.on('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        finish(() =>
          resolve({
            kind: 'refused',
            status: response.statusCode ?? 0,
            body,
            code: codeOf(body),
            headers: response.headers,
          }),
        );
        // Aborting a refused handshake makes ws emit 'error' and 'close'; both are expected here.
        socket.terminate();
      });
    });
    socket.on('error', (error) => finish(() => reject(error)));
  });
}

/**
 * Expects an upgrade to be refused before it happens; resolves with the HTTP status, body and
 * error code. Rejects when the socket opens instead.
 */
export async function refusedUpgrade(
  url: string,
  options: RawSocketOptions = {},
): Promise<Extract<RawSocketResult, { kind: 'refused' }>> {
  const outcome = await openRawSocket(url, options);
  if (outcome.kind === 'refused') return outcome;
  outcome.socket.terminate();
  throw new Error('the upgrade was accepted; expected it to be refused');
}

/** Connects, sends `hello` (unless told not to) and waits for `welcome`. */
export async function connectClient(
  url: string,
  options: ConnectOptions = {},
): Promise<TestClient> {
  const keyIn = options.keyIn ?? 'subprotocol';
  const protocols = [SUBPROTOCOL];
  const headers: Record<string, string> = {};
  if (options.apiKey !== undefined && keyIn === 'subprotocol')
    protocols.push(`${KEY_SUBPROTOCOL_PREFIX}${options.apiKey}`);
  if (options.apiKey !== undefined && keyIn === 'bearer')
    headers.authorization = `Bearer ${options.apiKey}`;
  const outcome = await openRawSocket(url, {
    protocols,
    headers,
    ...(options.origin === undefined ? {} : { origin: options.origin }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.autoPong === undefined ? {} : { autoPong: options.autoPong }),
  });
  if (outcome.kind === 'refused') {
    throw new Error(`upgrade refused with HTTP ${outcome.status}: ${outcome.body}`);
  }
  const client = new TestClient(outcome.socket);
  if (options.hello ?? true) {
    await client.hello(keyIn === 'hello' ? options.apiKey : undefined, options.timeoutMs);
  }
  return client;
}

interface Waiter {
  readonly predicate: (message: ServerMessage) => boolean;
  readonly resolve: (message: ServerMessage) => void;
  readonly reject: (error: Error) => void;
}

/**
 * A protocol client over an open socket. Received messages wait in an inbox until a `next`
 * (or `collectJob`) takes them, so a test never misses a message that arrived before it asked.
 */
export class TestClient {
  readonly socket: WebSocket;
  /** Every decoded message, in arrival order (taken or not). */
  readonly received: ServerMessage[] = [];
  /** Resolves when the socket closes. */
  readonly closed: Promise<CloseInfo>;
  /** The server's welcome, once received. */
  welcome: WelcomeMessage | undefined;

  readonly #inbox: ServerMessage[] = [];
  readonly #waiters = new Set<Waiter>();
  /** Length of `received` at each acknowledgement ping (a ping with a 4-byte payload). */
  readonly #ackMarks: number[] = [];
  readonly #ackWaiters = new Set<() => void>();
  #closeInfo: CloseInfo | undefined;
  #decodeError: Error | undefined;
  #nextNonce = 1;

  constructor(socket: WebSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => {
      socket.on('close', (code, reason) => {
        this.#closeInfo = { code, reason: reason.toString('utf8') };
        for (const waiter of this.#waiters) {
          waiter.reject(
            new Error(`the socket closed (${code} ${this.#closeInfo.reason}) while waiting`),
          );
        }
        this.#waiters.clear();
        resolve(this.#closeInfo);
      });
    });
    // Errors end in 'close'; the close code tells the test what happened.
    socket.on('error', () => undefined);
    socket.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    socket.on('ping', (data: Buffer) => {
      if (data.byteLength !== 4) return; // a heartbeat, not an acknowledgement
      this.#ackMarks.push(this.received.length);
      for (const wake of this.#ackWaiters) wake();
    });
  }

  /** Acknowledgement pings received so far. */
  get acknowledgementPings(): number {
    return this.#ackMarks.length;
  }

  /**
   * Waits until the server has sent an acknowledgement ping after the outcome (result or error)
   * of job `id` arrived. The socket answers it (unless autoPong is off), so a `roundTrip()` after
   * this resolves means the server knows the client has that outcome.
   */
  async acknowledged(id: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    const at = this.received.findIndex(
      (m) => (m.type === 'result' || m.type === 'error') && m.id === id,
    );
    if (at < 0) throw new Error(`no outcome of job ${id} has arrived`);
    const covered = (): boolean => this.#ackMarks.some((mark) => mark > at);
    if (covered()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#ackWaiters.delete(wake);
        reject(new Error(`no acknowledgement ping for job ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      const wake = (): void => {
        if (!covered()) return;
        clearTimeout(timer);
        this.#ackWaiters.delete(wake);
        resolve();
      };
      this.#ackWaiters.add(wake);
    });
  }

  /** How the socket closed, once it has. */
  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo;
  }

  /** Sends `hello` and waits for `welcome` (or fails on an error answer). */
  async hello(apiKey?: string, timeoutMs = DEFAULT_WAIT_MS): Promise<WelcomeMessage> {
    this.send({
      type: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      client: { name: '@tandem/test-support', version: '0.0.0' },
      ...(apiKey === undefined ? {} : { apiKey }),
    });
    const answer = await this.next(
      (m) => m.type === 'welcome' || (m.type === 'error' && m.id === null),
      timeoutMs,
    );
    if (answer.type !== 'welcome') {
      throw new Error(`hello was answered with ${JSON.stringify(answer)}`);
    }
    this.welcome = answer;
    return answer;
  }

  /** Sends one protocol message as one binary frame. */
  send(message: ClientMessage): void {
    this.socket.send(encodeMessage(message), { binary: true });
  }

  /**
   * Sends one protocol message as the fragments of one WebSocket message, cut where
   * encodeMessageParts cuts it (at each large tensor), as @tandem/client's Node socket sends.
   */
  sendFragments(message: ClientMessage): void {
    const parts = encodeMessageParts(message);
    parts.forEach((part, index) =>
      this.socket.send(part, { binary: true, fin: index === parts.length - 1 }),
    );
  }

  /** Sends arbitrary bytes (binary frame) or text (text frame), for malformed-input tests. */
  sendRaw(data: Uint8Array | string): void {
    this.socket.send(data, { binary: typeof data !== 'string' });
  }

  /**
   * Takes the first message (already received or still to come) that matches `predicate`.
   * Rejects when the socket closes first or after `timeoutMs`.
   */
  next<T extends ServerMessage>(
    predicate: (message: ServerMessage) => message is T,
    timeoutMs?: number,
  ): Promise<T>;
  next(predicate: (message: ServerMessage) => boolean, timeoutMs?: number): Promise<ServerMessage>;
  next(
    predicate: (message: ServerMessage) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<ServerMessage> {
    if (this.#decodeError !== undefined) return Promise.reject(this.#decodeError);
    const index = this.#inbox.findIndex(predicate);
    if (index >= 0) return Promise.resolve(this.#inbox.splice(index, 1)[0] as ServerMessage);
    if (this.#closeInfo !== undefined) {
      return Promise.reject(
        new Error(`the socket is closed (${this.#closeInfo.code}); no matching message came`),
      );
    }
    return new Promise<ServerMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`no matching message within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        predicate,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** Takes the next message of a type (optionally also matching `where`). */
  nextOf<K extends ServerMessage['type']>(
    type: K,
    where: (message: Extract<ServerMessage, { type: K }>) => boolean = () => true,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<Extract<ServerMessage, { type: K }>> {
    return this.next(
      (m): m is Extract<ServerMessage, { type: K }> =>
        m.type === type && where(m as Extract<ServerMessage, { type: K }>),
      timeoutMs,
    );
  }

  /**
   * Waits for job `id`'s result or error and returns it with every progress event of that job
   * received before it, in order. Takes them all from the inbox.
   */
  async collectJob(id: string, timeoutMs = DEFAULT_WAIT_MS): Promise<JobLog> {
    const outcome = await this.next(
      (m): m is ResultMessage | ErrorMessage =>
        (m.type === 'result' || m.type === 'error') && m.id === id,
      timeoutMs,
    );
    // Progress precedes the outcome on the socket, so it is all in the inbox by now.
    const progress = this.takeProgress(id);
    return outcome.type === 'result' ? { progress, result: outcome } : { progress, error: outcome };
  }

  /** Sends an `infer` and collects its job. */
  infer(message: Omit<InferMessage, 'type'>, timeoutMs = DEFAULT_WAIT_MS): Promise<JobLog> {
    this.send({ type: 'infer', ...message });
    return this.collectJob(message.id, timeoutMs);
  }

  /** Takes every progress event of job `id` now in the inbox. */
  takeProgress(id: string): ProgressEvent[] {
    const events: ProgressEvent[] = [];
    for (let i = 0; i < this.#inbox.length;) {
      const message = this.#inbox[i] as ServerMessage;
      if (message.type === 'progress' && message.event.jobId === id) {
        events.push(message.event);
        this.#inbox.splice(i, 1);
      } else i++;
    }
    return events;
  }

  /** Messages received and not taken yet (a copy). */
  pending(): ServerMessage[] {
    return this.#inbox.slice();
  }

  /**
   * A round trip through the server (`ping` → `pong`): every message the server sent before the
   * pong is in the inbox once this resolves.
   */
  async roundTrip(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    const nonce = this.#nextNonce++;
    this.send({ type: 'ping', nonce });
    await this.nextOf('pong', (m) => m.nonce === nonce, timeoutMs);
  }

  /** Closes the socket (normal closure) and waits until it is closed. */
  async close(code = 1000): Promise<CloseInfo> {
    if (this.#closeInfo === undefined) {
      if (this.socket.readyState === WebSocket.OPEN) this.socket.close(code);
      else if (this.socket.readyState !== WebSocket.CLOSING) this.socket.terminate();
    }
    return this.closed;
  }

  /** Drops the connection without a closing handshake (a peer that vanished). */
  terminate(): Promise<CloseInfo> {
    this.socket.terminate();
    return this.closed;
  }

  #onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    let message: ServerMessage;
    try {
      if (!isBinary) throw new Error('the server sent a text frame');
      message = decodeServerMessage(toBytes(data));
    } catch (error) {
      // A server frame that does not decode is a server bug: fail every wait with it.
      this.#decodeError = error instanceof Error ? error : new Error(String(error));
      for (const waiter of this.#waiters) waiter.reject(this.#decodeError);
      this.#waiters.clear();
      return;
    }
    this.received.push(message);
    for (const waiter of this.#waiters) {
      if (waiter.predicate(message)) {
        this.#waiters.delete(waiter);
        waiter.resolve(message);
        return;
      }
    }
    this.#inbox.push(message);
  }
}

function toBytes(data: WebSocket.RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

function codeOf(body: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null && 'code' in parsed) {
      return typeof parsed.code === 'string' ? parsed.code : undefined;
    }
  } catch {
    // Not JSON: no code.
  }
  return undefined;
}
