// The WebSocket gateway at /v1/stream (subprotocol tandem.v1). The upgrade is checked before it
// happens (path, Origin allowlist, API key: 403/401 answered over plain HTTP); then each connection
// speaks the shared binary protocol: hello/welcome, infer with streamed progress, cancel, resume
// after a reconnect, warm, ping. Heartbeats drop dead peers; a slow reader loses progress events
// (never results) and gets E_BUSY for new jobs instead of making the server buffer without bound.
// Every refusal (upgrade, frame, hello, job) is counted for /metrics as it is answered.

import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import {
  DEFAULT_PRIORITY,
  PROTOCOL_VERSION,
  TandemError,
  decodeClientMessage,
  peekInferId,
  encodeMessageParts,
  type ClientMessage,
  type ErrorCode,
  type InferMessage,
  type ModelStatus,
  type ProgressEvent,
  type ServerLimits,
  type ServerMessage,
  type Tensor,
  type TensorMap,
} from '@tandem/shared';
import { bearerToken, type ApiKeyRecord, type ApiKeys } from './api-keys.js';
import { originAllowed } from './cors.js';
import { rawHttpErrorResponse } from './http-error.js';
import type { Job, JobOutcome, JobRequest } from './job.js';
import type { JobDispatcher } from './job-dispatcher.js';
import type { JobRegistry } from './job-registry.js';
import type { RejectionCounter } from './metrics.js';

/** The WebSocket path. */
export const STREAM_PATH = '/v1/stream';
/** The subprotocol every client must offer. */
export const SUBPROTOCOL = 'tandem.v1';
/** Prefix of the subprotocol entry that carries an API key: `tandem.key.<key>`. */
export const KEY_SUBPROTOCOL_PREFIX = 'tandem.key.';
/** How long a closing handshake may take at shutdown before the socket is cut, in ms. */
const CLOSE_GRACE_MS = 2000;
/** Bytes of an acknowledgement ping's payload: a u32 sequence number. */
const ACK_PAYLOAD_BYTES = 4;
/**
 * Fewest ms between two acknowledgement pings on one connection. The first after a quiet spell
 * goes at once; under load one covers every outcome of the interval, where one per outcome cost a
 * ping, a pong and a socket read each (about a tenth of the server's time per request at 32
 * connections with one job each in flight, measured).
 */
const ACK_INTERVAL_MS = 20;

/** What the gateway needs from the server. */
export interface GatewayOptions {
  /** Runs the jobs: the in-process ModelManager, or the Redis dispatcher when scaled out. */
  readonly manager: JobDispatcher;
  readonly registry: JobRegistry;
  readonly keys: ApiKeys;
  /** Page origins allowed to connect; undefined allows any (requests without Origin always pass). */
  readonly origins: readonly string[] | undefined;
  /** Accept the API key in `hello` when the upgrade carried none. @default false */
  readonly allowKeyInHello: boolean;
  readonly limits: ServerLimits;
  /** Past this many bytes queued on a socket, progress is dropped and new jobs get E_BUSY. */
  readonly maxBufferedBytes: number;
  /** Malformed frames tolerated on one connection before it is closed (1008). */
  readonly maxProtocolErrors: number;
  /**
   * Time a new connection has to send `hello` before it is closed (1008), in ms: an open socket
   * costs memory, and without it (allowKeyInHello) nobody knows yet whose socket it is.
   */
  readonly helloTimeoutMs: number;
  /**
   * Connections that may wait for their `hello` at once; past it upgrades are refused (503
   * E_BUSY). Without it, one client could hold any number of sockets open, each for up to
   * helloTimeoutMs, before saying (with allowKeyInHello, before proving) who it is.
   */
  readonly maxPendingHellos: number;
  /** Counts refusals for /metrics (those a model host counted itself are not counted again). */
  readonly rejections: RejectionCounter;
  readonly serverName: string;
  readonly serverVersion: string;
  readonly onConnections?: (count: number) => void;
}

interface Connection {
  readonly socket: WebSocket;
  owner: ApiKeyRecord | undefined;
  hello: boolean;
  alive: boolean;
  protocolErrors: number;
  /** Jobs whose progress and outcome go to this connection. */
  readonly jobs: Map<string, Job>;
  /**
   * Jobs waiting for their key's limits (shared in Redis when scaled out), by id: true once the
   * client cancelled one.
   */
  readonly acquiring: Map<string, boolean>;
  /** Jobs whose outcome was sent here and awaits the next acknowledgement ping. */
  unacknowledged: Job[];
  /** Jobs covered by the acknowledgement ping in flight (undefined: none in flight). */
  acknowledging: Job[] | undefined;
  /** Payload of the acknowledgement ping in flight. */
  ackSeq: number;
  /** When the last acknowledgement ping went (performance.now()). */
  ackSentAt: number;
  /** Holds the next acknowledgement ping back to ACK_INTERVAL_MS after the last. */
  ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** The TCP socket under `socket`, corked while a tick's messages are written (see send). */
  readonly stream: Duplex;
  corked: boolean;
  /**
   * Sends a job's progress here: one function per connection, so that a job resumed elsewhere
   * can tell this connection's listener from the new one's (see Job.unlisten).
   */
  progress: (event: ProgressEvent) => void;
}

/** What the rest of the server can ask of the gateway. */
export interface Gateway {
  /** Tells every connection that a model changed lifecycle state. */
  broadcastModel(status: ModelStatus): void;
  /**
   * Closes every connection (1001) and resolves once all are closed. For shutdown, after the
   * accepted jobs have drained: the http server's close waits for upgraded sockets, so closing
   * them in fastify's onClose (which runs after it) left `close()` hanging while any client
   * stayed connected.
   */
  closeConnections(): Promise<void>;
  /** Open connections. */
  readonly connections: number;
}

/** Registers the gateway on a fastify instance, with its lifecycle in fastify hooks. */
export function registerGateway(fastify: FastifyInstance, options: GatewayOptions): Gateway {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.limits.maxPayloadBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  const connections = new Set<Connection>();
  /** Connections that have not said hello yet. */
  let pendingHellos = 0;

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (request.headers.upgrade?.toLowerCase() !== 'websocket') {
      replayAsHttp(fastify.server, request, socket, head);
      return;
    }
    const deny = (
      status: number,
      code: ErrorCode,
      message: string,
      retryAfterMs?: number,
    ): void => {
      options.rejections.count(code);
      refuseUpgrade(
        socket,
        status,
        new TandemError(code, message, retryAfterMs === undefined ? {} : { retryAfterMs }),
      );
    };
    // `new URL` throws on some request targets (`http://[`): thrown out of the http server's
    // 'upgrade' event, that was an uncaught exception ending the process.
    const url = URL.parse(request.url ?? '/', 'http://localhost');
    if (url === null) return deny(400, 'E_PROTOCOL', 'the request target is not a valid URL');
    if (url.pathname !== STREAM_PATH)
      return deny(404, 'E_ROUTE_NOT_FOUND', `no WebSocket endpoint at ${url.pathname}`);
    if (options.manager.draining)
      return deny(503, 'E_SHUTTING_DOWN', 'the server is shutting down', SHUTDOWN_RETRY_AFTER_MS);
    const origin = request.headers.origin;
    if (origin !== undefined && !originAllowed(options.origins, origin)) {
      return deny(403, 'E_FORBIDDEN_ORIGIN', `origin ${origin} is not allowed`);
    }
    const offered = parseProtocols(request.headers['sec-websocket-protocol']);
    if (!offered.includes(SUBPROTOCOL)) {
      return deny(400, 'E_PROTOCOL', `offer the "${SUBPROTOCOL}" subprotocol`);
    }
    const presented = keyFromRequest(request, offered);
    let owner: ApiKeyRecord | undefined;
    if (presented !== undefined || !options.allowKeyInHello || !options.keys.required) {
      owner = options.keys.verify(presented);
      if (owner === undefined) {
        return deny(
          401,
          'E_UNAUTHORIZED',
          presented === undefined ? 'an API key is required' : 'the API key is not valid',
        );
      }
    }
    if (pendingHellos >= options.maxPendingHellos) {
      return deny(
        503,
        'E_BUSY',
        `${pendingHellos} connections are waiting to say hello (the server's maxPendingHellos)`,
        HELLO_BUSY_RETRY_AFTER_MS,
      );
    }
    wss.handleUpgrade(request, socket, head, (ws) => accept(ws, owner, socket));
  };

  const accept = (socket: WebSocket, owner: ApiKeyRecord | undefined, stream: Duplex): void => {
    socket.binaryType = 'fragments';
    const connection: Connection = {
      socket,
      owner,
      hello: false,
      alive: true,
      protocolErrors: 0,
      jobs: new Map(),
      acquiring: new Map(),
      unacknowledged: [],
      acknowledging: undefined,
      ackSeq: 0,
      ackSentAt: -Infinity,
      ackTimer: undefined,
      stream,
      corked: false,
      progress: () => undefined,
    };
    connection.progress = progressSender(connection);
    connections.add(connection);
    pendingHellos += 1;
    options.onConnections?.(connections.size);
    const helloTimer = setTimeout(() => {
      if (connection.hello) return;
      refuse(
        connection,
        null,
        new TandemError('E_PROTOCOL', `no hello within ${options.helloTimeoutMs} ms`),
      );
      connection.socket.close(1008, 'no hello');
    }, options.helloTimeoutMs);
    helloTimer.unref();
    socket.on('pong', (data) => {
      connection.alive = true;
      onPong(connection, data);
    });
    socket.on('message', (data, isBinary) => {
      connection.alive = true;
      onMessage(connection, data, isBinary);
    });
    socket.on('error', (error: Error & { code?: unknown }) => {
      // ws reports a frame it cannot take (over maxPayload, or breaking RFC 6455) here, having
      // sent its close (1009, 1002): the refusal of that frame.
      options.rejections.count(
        error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ||
          error.code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH'
          ? 'E_PAYLOAD_TOO_LARGE'
          : 'E_PROTOCOL',
      );
      socket.terminate();
    });
    socket.on('close', () => {
      clearTimeout(helloTimer);
      if (!connection.hello) pendingHellos -= 1;
      clearTimeout(connection.ackTimer);
      connections.delete(connection);
      options.onConnections?.(connections.size);
      // Jobs keep running after a disconnect: the client may resume them by id, maybe already
      // has on another connection (whose progress this one must not stop).
      for (const job of connection.jobs.values()) job.unlisten(connection.progress);
      connection.jobs.clear();
    });
  };

  /** Whether `connection` takes a message now; corks its stream for the rest of the tick. */
  const writable = (connection: Connection, droppable: boolean): boolean => {
    const socket = connection.socket;
    if (socket.readyState !== socket.OPEN) return false;
    if (droppable && socket.bufferedAmount > options.maxBufferedBytes) return false;
    // Everything sent in one tick (a group's results, progress, the acknowledgement ping) leaves
    // in one write: a system call per message cost more than the message under load.
    if (!connection.corked) {
      connection.corked = true;
      connection.stream.cork();
      process.nextTick(uncork, connection);
    }
    return true;
  };

  /** Sends a frame encoded elsewhere (a session worker's `result` frame). */
  const sendFrame = (connection: Connection, frame: Uint8Array): void => {
    if (writable(connection, false)) connection.socket.send(frame, BINARY);
  };

  const send = (connection: Connection, message: ServerMessage, droppable = false): void => {
    if (!writable(connection, droppable)) return;
    const socket = connection.socket;
    // A large output leaves as the fragments of one message, sent from the output's own memory
    // instead of copied into a frame first (the job's result does not change afterwards). Pooled:
    // ws writes each part or queues it by reference; nothing transfers or detaches it.
    const parts = encodeMessageParts(message, POOLED);
    if (parts.length === 1) {
      socket.send(parts[0] as Uint8Array, BINARY);
      return;
    }
    const last = parts.length - 1;
    parts.forEach((part, index) => socket.send(part, { binary: true, fin: index === last }));
  };

  const sendError = (connection: Connection, id: string | null, error: TandemError): void => {
    send(connection, {
      type: 'error',
      id,
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
    });
  };

  /** Answers a refused message and counts it (`model`: the one it asked for, if any). */
  const refuse = (
    connection: Connection,
    id: string | null,
    error: TandemError,
    model?: string,
  ): void => {
    options.rejections.countError(error, model);
    sendError(connection, id, error);
  };

  const onMessage = (connection: Connection, data: RawData, isBinary: boolean): void => {
    let message: ClientMessage;
    let fragments: readonly Uint8Array[] | undefined;
    try {
      if (!isBinary)
        throw new TandemError(
          'E_PROTOCOL',
          'text frames are not part of the protocol; send binary frames',
        );
      fragments = toFragments(data);
      // Pooled: an unaligned input's copy only lives until the job packs or runs it.
      message = decodeClientMessage(fragments, { pooled: true });
    } catch (error) {
      const coded = TandemError.from(error, 'E_PROTOCOL');
      connection.protocolErrors += 1;
      if (connection.protocolErrors > options.maxProtocolErrors) {
        options.rejections.countError(coded);
        connection.socket.close(1008, 'too many malformed frames');
        return;
      }
      // An infer whose id is readable is refused as that job: its sender is waiting for it.
      refuse(connection, fragments === undefined ? null : (peekInferId(fragments) ?? null), coded);
      return;
    }
    if (!connection.hello && message.type !== 'hello') {
      refuse(connection, null, new TandemError('E_PROTOCOL', 'the first message must be hello'));
      connection.socket.close(1002, 'hello first');
      return;
    }
    try {
      dispatch(
        connection,
        message,
        message.type === 'infer' && ownsTensors(fragments, message.inputs),
      );
    } catch (error) {
      // Anything a handler throws must become a coded answer: thrown out of ws's 'message'
      // event it is an uncaught exception that takes the whole server down (a `warm` of an
      // unknown model did exactly that).
      refuse(
        connection,
        null,
        TandemError.from(error),
        message.type === 'warm' ? message.model : undefined,
      );
    }
  };

  const dispatch = (connection: Connection, message: ClientMessage, ownFrame: boolean): void => {
    switch (message.type) {
      case 'hello':
        return onHello(connection, message);
      case 'infer':
        return onInfer(connection, message, ownFrame);
      case 'cancel':
        return onCancel(connection, message.id);
      case 'resume':
        return onResume(connection, message.ids);
      case 'warm': {
        // warm() throws E_MODEL_NOT_FOUND synchronously (answered by onMessage's catch); a failed
        // load rejects later. Once ready, the caller hears so even if nothing changed state (the
        // model was already warm), so "wait for ready after warm" always ends.
        options.manager.warm(message.model, message.version).ready.then(
          (status) => send(connection, { type: 'model', model: status }),
          (error: unknown) => refuse(connection, null, TandemError.from(error), message.model),
        );
        return;
      }
      case 'ping':
        return send(connection, { type: 'pong', nonce: message.nonce });
    }
  };

  const onHello = (
    connection: Connection,
    message: Extract<ClientMessage, { type: 'hello' }>,
  ): void => {
    if (connection.hello) {
      refuse(connection, null, new TandemError('E_PROTOCOL', 'hello was already received'));
      return;
    }
    // Which client libraries connect, and which are too old or too new: what an operator needs
    // before changing a protocol version.
    const client = `${message.client.name}@${message.client.version}`;
    if (message.protocolVersion !== PROTOCOL_VERSION) {
      fastify.log.warn(
        { client, protocolVersion: message.protocolVersion },
        'websocket client speaks another protocol version',
      );
      refuse(
        connection,
        null,
        new TandemError(
          'E_PROTOCOL_VERSION',
          `client speaks protocol ${message.protocolVersion}; this server speaks ${PROTOCOL_VERSION}`,
        ),
      );
      connection.socket.close(1002, 'protocol version mismatch');
      return;
    }
    if (connection.owner === undefined) {
      const owner = options.keys.verify(message.apiKey);
      if (owner === undefined) {
        refuse(
          connection,
          null,
          new TandemError('E_UNAUTHORIZED', 'the API key is missing or not valid'),
        );
        connection.socket.close(1008, 'unauthorized');
        return;
      }
      connection.owner = owner;
    }
    connection.hello = true;
    pendingHellos -= 1;
    fastify.log.info({ client, owner: connection.owner.id }, 'websocket client connected');
    send(connection, {
      type: 'welcome',
      protocolVersion: PROTOCOL_VERSION,
      server: { name: options.serverName, version: options.serverVersion },
      models: options.manager.statuses(),
      limits: options.limits,
    });
  };

  const refuseDuplicate = (connection: Connection, message: InferMessage): void => {
    refuse(
      connection,
      message.id,
      new TandemError('E_DUPLICATE_JOB', `job ${message.id} is already in flight`),
      message.model,
    );
  };

  /** `ownFrame`: the frame's buffer is this message's alone, so its tensors may be detached. */
  const onInfer = (connection: Connection, message: InferMessage, ownFrame: boolean): void => {
    const owner = connection.owner as ApiKeyRecord;
    if (
      connection.jobs.has(message.id) ||
      connection.acquiring.has(message.id) ||
      options.registry.get(owner.id, message.id)?.settled === false
    ) {
      refuseDuplicate(connection, message);
      return;
    }
    if (connection.socket.bufferedAmount > options.maxBufferedBytes) {
      refuse(
        connection,
        message.id,
        new TandemError('E_BUSY', 'this connection is not reading its results fast enough', {
          retryAfterMs: 250,
        }),
        message.model,
      );
      return;
    }
    let taken: (() => void) | Promise<() => void>;
    try {
      taken = options.keys.acquire(owner);
    } catch (error) {
      refuse(connection, message.id, TandemError.from(error), message.model);
      return;
    }
    if (typeof taken === 'function') {
      submitInfer(connection, message, ownFrame, taken);
      return;
    }
    // Limits shared with other gateways: a Redis round trip. Until it answers, the id is taken
    // (a duplicate is refused) and a cancel is remembered.
    connection.acquiring.set(message.id, false);
    const arrivedAt = performance.now();
    taken.then(
      (release) => {
        const cancelled = connection.acquiring.get(message.id) === true;
        connection.acquiring.delete(message.id);
        try {
          afterAcquire(connection, message, ownFrame, release, cancelled, arrivedAt);
        } catch (error) {
          // Nothing may escape a reaction (an unhandled rejection ends the process).
          release();
          refuse(connection, message.id, TandemError.from(error), message.model);
        }
      },
      (error: unknown) => {
        connection.acquiring.delete(message.id);
        refuse(connection, message.id, TandemError.from(error), message.model);
      },
    );
  };

  /** Goes on with a job once its key's shared limits were taken (`release` gives them back). */
  const afterAcquire = (
    connection: Connection,
    message: InferMessage,
    ownFrame: boolean,
    release: () => void,
    cancelled: boolean,
    arrivedAt: number,
  ): void => {
    const owner = connection.owner as ApiKeyRecord;
    if (cancelled) {
      release();
      sendError(
        connection,
        message.id,
        new TandemError('E_CANCELLED', `job ${message.id} was cancelled`),
      );
      return;
    }
    if (connection.socket.readyState !== connection.socket.OPEN) {
      // Nobody to answer: the client resends it (or resumes it, and hears it is unknown).
      release();
      return;
    }
    // The same id may have come in on another connection meanwhile (a client that reconnected
    // while its old connection still looked open).
    if (options.registry.get(owner.id, message.id)?.settled === false) {
      release();
      refuseDuplicate(connection, message);
      return;
    }
    // A deadline counts from the job's arrival: the wait for Redis is part of it.
    if (message.deadlineMs !== undefined) {
      const leftMs = message.deadlineMs - (performance.now() - arrivedAt);
      if (leftMs <= 0) {
        release();
        refuse(
          connection,
          message.id,
          new TandemError(
            'E_DEADLINE_EXCEEDED',
            `job ${message.id} passed its deadline of ${message.deadlineMs} ms before it was queued`,
          ),
          message.model,
        );
        return;
      }
      submitInfer(connection, { ...message, deadlineMs: leftMs }, ownFrame, release);
      return;
    }
    submitInfer(connection, message, ownFrame, release);
  };

  /** Submits a job whose key's limits are taken (`release` gives them back). */
  const submitInfer = (
    connection: Connection,
    message: InferMessage,
    ownFrame: boolean,
    release: () => void,
  ): void => {
    const owner = connection.owner as ApiKeyRecord;
    let job: Job;
    try {
      // Built field by field, not with conditional spreads: this runs once per job.
      const request: { -readonly [K in keyof JobRequest]: JobRequest[K] } = {
        id: message.id,
        owner: owner.id,
        model: message.model,
        inputs: message.inputs,
        priority: message.priority ?? DEFAULT_PRIORITY,
        detachableInputs: ownFrame,
      };
      if (message.version !== undefined) request.version = message.version;
      if (message.outputs !== undefined) request.outputs = message.outputs;
      if (message.deadlineMs !== undefined) request.deadlineMs = message.deadlineMs;
      // Counted there when the dispatcher refuses it (once: a model host may have counted it).
      job = options.rejections.submit(
        options.manager,
        request,
        // Clients that only want the answer (batch jobs, benchmarks) can opt out of progress.
        message.progress === false ? undefined : connection.progress,
      );
    } catch (error) {
      release();
      refuse(connection, message.id, TandemError.from(error), message.model);
      return;
    }
    options.registry.add(job);
    follow(connection, job, message.progress !== false, release);
  };

  /** Sends a job's progress to a connection, dropped when the reader is slow. */
  const progressSender =
    (connection: Connection) =>
    (event: ProgressEvent): void => {
      // The result (or error) message ends the job; a separate final event would only add a frame.
      if (event.stage === 'done' || event.stage === 'error' || event.stage === 'cancelled') return;
      send(connection, { type: 'progress', event }, true);
    };

  /**
   * Routes a job's progress and outcome to a connection; `settled` runs once the job has its
   * outcome (sent or not), in the same reaction.
   */
  const follow = (
    connection: Connection,
    job: Job,
    progress = true,
    settled?: () => void,
  ): void => {
    connection.jobs.set(job.request.id, job);
    job.listen(progress ? connection.progress : undefined);
    void job.outcome.then((outcome) => {
      settled?.();
      if (connection.jobs.get(job.request.id) !== job) return;
      connection.jobs.delete(job.request.id);
      handOver(connection, job, outcome);
    });
  };

  const deliver = (connection: Connection, id: string, outcome: JobOutcome): void => {
    if (!outcome.ok) sendError(connection, id, outcome.error);
    else if (outcome.frame !== undefined) sendFrame(connection, outcome.frame);
    else send(connection, { type: 'result', ...outcome.result });
  };

  /**
   * Delivers a job's outcome and keeps it resumable until the client is known to have it: a pong
   * to a ping sent after the outcome proves the peer read everything before the ping (the stream
   * is ordered), so the registry forgets the job then, not `resultTtlMs` later. One ping covers
   * every outcome sent before it; one is in flight per connection at a time, and they go at most
   * every ACK_INTERVAL_MS.
   */
  const handOver = (connection: Connection, job: Job, outcome: JobOutcome): void => {
    deliver(connection, job.request.id, outcome);
    connection.unacknowledged.push(job);
    if (connection.unacknowledged.length === 1) queueMicrotask(() => requestAck(connection));
  };

  const requestAck = (connection: Connection): void => {
    const { socket } = connection;
    if (connection.acknowledging !== undefined || connection.ackTimer !== undefined) return;
    if (connection.unacknowledged.length === 0 || socket.readyState !== socket.OPEN) return;
    const now = performance.now();
    const waitMs = connection.ackSentAt + ACK_INTERVAL_MS - now;
    if (waitMs > 0) {
      connection.ackTimer = setTimeout(() => {
        connection.ackTimer = undefined;
        requestAck(connection);
      }, waitMs);
      return;
    }
    connection.ackSentAt = now;
    connection.acknowledging = connection.unacknowledged;
    connection.unacknowledged = [];
    connection.ackSeq = (connection.ackSeq + 1) >>> 0;
    const payload = Buffer.allocUnsafe(ACK_PAYLOAD_BYTES);
    payload.writeUInt32LE(connection.ackSeq, 0);
    socket.ping(payload);
  };

  const onPong = (connection: Connection, data: Buffer): void => {
    const acknowledged = connection.acknowledging;
    if (
      acknowledged === undefined ||
      data.byteLength !== ACK_PAYLOAD_BYTES ||
      data.readUInt32LE(0) !== connection.ackSeq
    )
      return;
    connection.acknowledging = undefined;
    for (const job of acknowledged) {
      if (options.registry.delete(job)) options.manager.handedOver?.(job);
    }
    requestAck(connection);
  };

  const onCancel = (connection: Connection, id: string): void => {
    if (connection.acquiring.has(id)) {
      connection.acquiring.set(id, true);
      return;
    }
    const owner = connection.owner as ApiKeyRecord;
    const job = connection.jobs.get(id) ?? options.registry.get(owner.id, id);
    if (job === undefined || job.settled) return;
    // The job knows its own host: a newer version may have appeared since it was submitted.
    job.cancel();
  };

  const onResume = (connection: Connection, ids: readonly string[]): void => {
    const owner = connection.owner as ApiKeyRecord;
    for (const id of ids) {
      const job = options.registry.get(owner.id, id);
      if (job !== undefined) {
        resumeJob(connection, job);
        continue;
      }
      const adopt = options.manager.adopt?.bind(options.manager);
      if (adopt === undefined) {
        refuse(connection, id, jobNotFound(id));
        continue;
      }
      // Scaled out, the job may have come in through another gateway (or this one before a
      // restart): the shared store knows it.
      adopt(owner.id, id).then(
        (adopted) => {
          if (adopted === undefined) return refuse(connection, id, jobNotFound(id));
          const known = options.registry.get(owner.id, id);
          if (known === undefined) options.registry.add(adopted);
          resumeJob(connection, known ?? adopted);
        },
        (error: unknown) => refuse(connection, id, TandemError.from(error)),
      );
    }
  };

  const resumeJob = (connection: Connection, job: Job): void => {
    if (job.settled) {
      void job.outcome.then((outcome) => handOver(connection, job, outcome));
      return;
    }
    const last = job.lastProgress;
    follow(connection, job, true);
    if (last !== undefined) send(connection, { type: 'progress', event: last }, true);
  };

  const broadcastModel = (status: ModelStatus): void => {
    for (const connection of connections) {
      if (connection.hello) send(connection, { type: 'model', model: status }, true);
    }
  };

  const closeConnections = async (): Promise<void> => {
    await Promise.all(
      [...connections].map(
        ({ socket }) =>
          new Promise<void>((resolve) => {
            if (socket.readyState === socket.CLOSED) return resolve();
            // A peer that never completes the closing handshake is cut off, not waited for.
            const timer = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
            socket.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.close(1001, 'server shutting down');
          }),
      ),
    );
  };

  const heartbeat = setInterval(() => {
    for (const connection of connections) {
      if (!connection.alive) {
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      connection.socket.ping();
    }
  }, options.limits.heartbeatIntervalMs);
  heartbeat.unref();

  fastify.server.on('upgrade', onUpgrade);
  fastify.addHook('onClose', async () => {
    clearInterval(heartbeat);
    fastify.server.off('upgrade', onUpgrade);
    for (const connection of connections) connection.socket.close(1001, 'server shutting down');
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  return {
    broadcastModel,
    closeConnections,
    get connections() {
      return connections.size;
    },
  };
}

/** Options shared by every send: encodeMessageParts and ws only read them. */
const POOLED = { pooled: true } as const;
const BINARY = { binary: true } as const;

function uncork(connection: Connection): void {
  connection.corked = false;
  connection.stream.uncork();
}

function jobNotFound(id: string): TandemError {
  return new TandemError(
    'E_JOB_NOT_FOUND',
    `no job ${id} (never submitted, already received, or its result expired)`,
  );
}

/** How soon a client refused for too many connections waiting to say hello may try again. */
const HELLO_BUSY_RETRY_AFTER_MS = 1000;

/** How soon a client refused for a shutdown may try again (behind a balancer, another server). */
const SHUTDOWN_RETRY_AFTER_MS = 1000;

/** Connection tokens that belong to an upgrade; a replayed request goes without them. */
const UPGRADE_TOKENS = new Set(['upgrade', 'http2-settings']);

/**
 * Hands a request that offers an upgrade to anything but a WebSocket back to the http server as a
 * plain HTTP/1.1 request. Java's HttpClient (its default version is HTTP/2) and `curl --http2`
 * offer h2c on every http:// request, and a server may decline an upgrade by answering in
 * HTTP/1.1; but while anyone listens for 'upgrade', Node (before 24.9's shouldUpgradeCallback)
 * gives every upgrade request to them, so these clients got the gateway's 404 on every route.
 * The request head is written again without its upgrade headers and put back in front of what
 * the socket has not read yet (the body, if any), and the socket is given to the server as a new
 * connection, whose parser reads it all as usual.
 */
function replayAsHttp(
  server: HttpServer,
  request: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const lines = [`${request.method ?? 'GET'} ${request.url ?? '/'} HTTP/${request.httpVersion}`];
  const raw = request.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (lower === 'upgrade' || lower === 'http2-settings') continue;
    let value = raw[i + 1] as string;
    if (lower === 'connection') {
      value = value
        .split(',')
        .map((token) => token.trim())
        .filter((token) => token.length > 0 && !UPGRADE_TOKENS.has(token.toLowerCase()))
        .join(', ');
      if (value.length === 0) continue;
    }
    lines.push(`${name}: ${value}`);
  }
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]));
  server.emit('connection', socket);
}

function refuseUpgrade(socket: Duplex, status: number, error: TandemError): void {
  // The http server stopped listening for this socket's errors when it handed it over, and no
  // WebSocket takes it: a peer that resets the connection (ECONNRESET) would otherwise throw an
  // uncaught error and end the process. ws's own examples listen the same way.
  socket.on('error', () => socket.destroy());
  // The same body and Retry-After as fastify's error answers: a client reads a refused upgrade
  // (its retryability, when to retry) as it reads any other refused request.
  socket.end(rawHttpErrorResponse(error, status));
}

function parseProtocols(header: string | undefined): string[] {
  return (header ?? '')
    .split(',')
    .map((value) => value.trim())
    .filter((value) => value.length > 0);
}

function keyFromRequest(
  request: IncomingMessage,
  protocols: readonly string[],
): string | undefined {
  const fromProtocol = protocols.find((value) => value.startsWith(KEY_SUBPROTOCOL_PREFIX));
  if (fromProtocol !== undefined) return fromProtocol.slice(KEY_SUBPROTOCOL_PREFIX.length);
  return bearerToken(request.headers.authorization);
}

/**
 * Whether every numeric tensor lives in a fragment that spans its whole ArrayBuffer: ws then
 * handed over a buffer of this message alone (a slice of a socket read shared with other frames
 * starts past 0 or ends short; a copy of an unaligned tensor may sit in a shared pool), so a
 * worker may take the tensors over instead of copying them.
 */
function ownsTensors(fragments: readonly Uint8Array[], tensors: TensorMap): boolean {
  const owned = new Set<ArrayBufferLike>();
  for (const fragment of fragments) {
    if (
      fragment.buffer instanceof ArrayBuffer &&
      fragment.byteOffset === 0 &&
      fragment.byteLength === fragment.buffer.byteLength
    )
      owned.add(fragment.buffer);
  }
  for (const name in tensors) {
    const tensor = tensors[name] as Tensor;
    if (tensor.dtype !== 'string' && !owned.has(tensor.data.buffer)) return false;
  }
  return true;
}

/**
 * A message's fragments as ws hands them over (`binaryType = 'fragments'`), not joined: the
 * decoder reads a tensor inside one fragment in place (a fragmented sender such as the Node
 * client cuts at large tensors), which saves a copy of the whole message.
 */
function toFragments(data: RawData): readonly Uint8Array[] {
  if (Array.isArray(data)) return data;
  return [data instanceof ArrayBuffer ? new Uint8Array(data) : data];
}
