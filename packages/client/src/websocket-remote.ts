// The remote runtime over Tandem's WebSocket protocol: one connection per server, hello/welcome,
// jobs matched to results by id, progress forwarded as it comes, heartbeats, and reconnection with
// exponential backoff and full jitter. After a reconnect, in-flight jobs are resumed by id; a job
// the server no longer knows (it restarted) is submitted again, so each job gets exactly one answer.
// A request larger than the server's `maxPayloadBytes` fails alone with E_PAYLOAD_TOO_LARGE before
// it is sent: sent, it would make the server close the connection under every other job. A
// connection that goes down over an answer too large for it (the client's own socket or a proxy
// refused it) fails the jobs waiting on it with E_PAYLOAD_TOO_LARGE: resumed, they would meet the
// same refusal again and again. A job that finds no open connection when it is to be sent waits
// for the next one, like a job in flight when its connection drops; so does a `warm` (once per
// model version, however many calls ask for it meanwhile), within the same time limit.

import {
  DEFAULT_PRIORITY,
  MovingAverage,
  PROTOCOL_VERSION,
  TandemError,
  compareVersions,
  decodeServerMessage,
  encodeMessage,
  encodeMessageParts,
  type ClientMessage,
  type ErrorCode,
  type InferMessage,
  type ModelManifest,
  type ModelStatus,
  type ServerLimits,
  type ServerMessage,
  type TensorMap,
  type WarmMessage,
} from '@tandem/shared';
import { abortable } from './abortable.js';
import type { Runtime, RuntimeEstimate, RuntimeResult, RuntimeRunOptions } from './runtime.js';

/** The subset of the WebSocket API this runtime uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  /** Set to 'arraybuffer' (or 'fragments', see readsFragments) before the first message. */
  binaryType: string;
  /** The WebSocket readyState: 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Sends one binary message. */
  send(data: Uint8Array): void;
  /**
   * Sends `parts` as the fragments of one message, where the socket can (the `ws` package's can, a
   * browser's cannot): a large input then goes out from its own memory instead of being copied
   * into a frame first. Absent: every message is one `send`.
   */
  sendFragments?(parts: readonly Uint8Array[]): void;
  /**
   * True when the socket can hand a binary message over as its fragments, not joined (the `ws`
   * package's `binaryType = 'fragments'`; a browser's WebSocket cannot): the runtime then sets
   * that and reads each large output inside its fragment, without a copy of the whole message.
   */
  readonly readsFragments?: boolean;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /** Called once the connection is open. */
  onopen: ((event: unknown) => void) | null;
  /** Called once the connection is closed, with the close code and reason. */
  onclose: ((event: { code: number; reason: string }) => void) | null;
  /** Called on a connection error (a close follows). */
  onerror: ((event: unknown) => void) | null;
  /** Called with each message: an ArrayBuffer (or fragments) for binary ones. */
  onmessage: ((event: { data: unknown }) => void) | null;
}

/** Creates a socket: `new WebSocket(url, protocols)`. */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** Options of {@link WebSocketRemote}. */
export interface WebSocketRemoteOptions {
  /** The server: `https://host` / `http://host:port` (or a `ws(s)://…/v1/stream` URL). */
  readonly url: string;
  /** Sent as the `tandem.key.<key>` subprotocol, never in the URL. */
  readonly apiKey?: string;
  /** How sockets are made; the global WebSocket, or `ws` in Node. */
  readonly createSocket: WebSocketFactory;
  /** First reconnect delay, in ms. @default 250 */
  readonly reconnectMinDelayMs?: number;
  /** Longest reconnect delay, in ms. @default 10000 */
  readonly reconnectMaxDelayMs?: number;
  /** How long an in-flight job waits for the connection to come back before failing with E_NETWORK. @default 10000 */
  readonly jobReconnectTimeoutMs?: number;
  /** How long a first connection (hello → welcome) may take, in ms. @default 5000 */
  readonly connectTimeoutMs?: number;
  /** Application ping interval, in ms; two missed pongs drop the connection. @default 15000 */
  readonly heartbeatIntervalMs?: number;
  /** The client's name in `hello`, for the server's logs. @default '@tandem/client' */
  readonly clientName?: string;
  /** The client's version in `hello`. @default '0.1.0' */
  readonly clientVersion?: string;
  /** Random source for jitter (tests pass a fixed one). @default Math.random */
  readonly random?: () => number;
}

/** Wait before asking again about a job whose resume met a retryable error with no retryAfterMs, in ms. */
const RESUME_RETRY_MS = 1000;

interface PendingJob {
  readonly message: InferMessage;
  readonly options: RuntimeRunOptions;
  readonly resolve: (result: RuntimeResult) => void;
  readonly reject: (error: TandemError) => void;
  readonly startedAt: number;
  /**
   * Its listener on the call's signal, removed when the job ends: a signal that outlives the call
   * would otherwise keep the job, inputs included, as long as it lives.
   */
  onAbort?: () => void;
  /**
   * Set while the job waits for a connection (it dropped, or there was none open to send on):
   * the job fails with E_NETWORK if it is not back by then.
   */
  disconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * The connection the job's `infer` (or its `resume`) last went out on, where its answer comes;
   * undefined while it has not been sent, so the next connection sends it rather than resuming.
   */
  sentOn: WebSocketLike | undefined;
  resubmitted: boolean;
  /**
   * When its first unanswered `resume` went out; cleared by any progress or result. While set, a
   * retryable error (the server could not look the job up just now) asks again instead of failing
   * the job, until `jobReconnectTimeoutMs` has passed: failed, it would fall back and run twice.
   */
  resumingSince?: number | undefined;
  /** The next `resume` of the job after such an error. */
  resumeTimer?: ReturnType<typeof setTimeout> | undefined;
}

/**
 * A `warm` that found no open connection to be sent on: it goes out on the next one. Calls for the
 * same model version meanwhile share it, so a reconnect sends one `warm`, not one per call.
 */
interface PendingWarm {
  readonly message: WarmMessage;
  /** The warm() calls waiting for it to go out. */
  readonly waiters: { resolve: () => void; reject: (error: TandemError) => void }[];
  /** Gives it up with E_NETWORK once `jobReconnectTimeoutMs` has passed with no connection. */
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * The largest `infer` sent on a socket: the one to blame when the server closes it with 1009. By
 * id, not the job: a finished job's inputs are not kept alive.
 */
interface LargestSent {
  readonly socket: WebSocketLike;
  readonly id: string;
  readonly bytes: number;
  /**
   * Set once the server said anything about the job: it read the request whole, so a 1009 is
   * about something else (the client's own socket refusing a message that large, say).
   */
  accepted: boolean;
}

const OPEN = 1;
/** The close code of a peer that received a message too large for it (RFC 6455). */
const CLOSE_TOO_LARGE = 1009;

/**
 * Connection-level refusals that retrying will not cure (a bad key, a protocol the server does
 * not speak, a page origin it does not allow): the remote keeps the one the server sent, fails
 * every waiting call with it, and does not reconnect.
 */
const FINAL_CONNECTION_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'E_UNAUTHORIZED',
  'E_PROTOCOL_VERSION',
  'E_FORBIDDEN_ORIGIN',
]);

/** Delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter. */
export function backoffDelayMs(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** attempt);
  return minMs + random() * (ceiling - minMs);
}

/** The WebSocket remote runtime. */
export class WebSocketRemote implements Runtime {
  readonly where = 'remote' as const;
  readonly name = 'websocket';
  readonly #options: WebSocketRemoteOptions;
  readonly #url: string;
  readonly #jobs = new Map<string, PendingJob>();
  /**
   * Jobs cancelled while their connection was down, after their `infer` went out: the server
   * keeps such a job for a resume and would run it to the end, so the next welcome sends their
   * `cancel`. Each is given up after `jobReconnectTimeoutMs` (its timer).
   */
  readonly #cancels = new Map<string, ReturnType<typeof setTimeout>>();
  /** Warms waiting for a connection, by model name and version asked for (see warmKey). */
  readonly #warms = new Map<string, PendingWarm>();
  /** Statuses by model name, then version: the server reports each version on its own. */
  readonly #models = new Map<string, Map<string, ModelStatus>>();
  readonly #rtt = new MovingAverage();
  /** Client-observed round trips of warm jobs, per model version: what a call costs end to end. */
  readonly #roundTrips = new Map<string, MovingAverage>();
  /** When (performance.now()) each model's E_BUSY asked to be left alone until, by busyKey. */
  readonly #busyUntil = new Map<string, number>();
  /** The limits of the last welcome: each connection's welcome comes before any job is sent on it. */
  #limits: ServerLimits | undefined;
  #largestSent: LargestSent | undefined;
  #socket: WebSocketLike | undefined;
  #ready: Promise<void> | undefined;
  #welcomed = false;
  #closed = false;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #pings = new Map<number, number>();
  #nonce = 0;
  #lastError: TandemError | undefined;
  #welcomeWaiters: { resolve: () => void; reject: (e: TandemError) => void }[] = [];

  constructor(options: WebSocketRemoteOptions) {
    if (options.apiKey !== undefined) checkSubprotocolKey(options.apiKey);
    this.#options = options;
    this.#url = streamUrl(options.url);
  }

  /** Model states the server reported (welcome and model messages), one per model version. */
  get models(): readonly ModelStatus[] {
    return [...this.#models.values()].flatMap((versions) => [...versions.values()]);
  }

  /** Whether the connection is up and welcomed. */
  get connected(): boolean {
    return this.#welcomed && this.#socket?.readyState === OPEN;
  }

  /** Connects (once; later calls share the attempt) and resolves after `welcome`. */
  connect(): Promise<void> {
    if (this.#closed)
      return Promise.reject(new TandemError('E_NETWORK', 'the remote runtime is closed'));
    if (this.connected) return Promise.resolve();
    if (this.#ready !== undefined) return this.#ready;
    const ready = new Promise<void>((resolve, reject) =>
      this.#welcomeWaiters.push({ resolve, reject }),
    );
    this.#ready = ready;
    ready.then(
      () => undefined,
      () => (this.#ready = undefined),
    );
    const timeout = setTimeout(() => {
      const error = new TandemError(
        'E_NETWORK',
        `no welcome from ${this.#url} within ${this.#options.connectTimeoutMs ?? 5000} ms`,
      );
      for (const waiter of this.#welcomeWaiters.splice(0)) waiter.reject(error);
    }, this.#options.connectTimeoutMs ?? 5000);
    void ready.finally(() => clearTimeout(timeout)).catch(() => undefined);
    if (this.#socket === undefined && this.#reconnectTimer === undefined) this.#open();
    return ready;
  }

  async estimate(model: ModelManifest): Promise<RuntimeEstimate> {
    try {
      await this.connect();
    } catch (error) {
      const coded = TandemError.from(error, 'E_NETWORK');
      return { available: false, code: coded.code, reason: `server unreachable: ${coded.message}` };
    }
    const status = this.#status(model);
    if (status === undefined)
      return {
        available: false,
        reason:
          model.version === undefined
            ? `the server has no model "${model.name}"`
            : `the server has no version "${model.version}" of model "${model.name}"`,
      };
    if (status.state === 'failed')
      return {
        available: false,
        reason: `the server's copy failed: ${status.reason ?? 'unknown'}`,
      };
    const { loadMs, warmupMs, runMs } = status.estimates ?? {};
    const cold = status.state !== 'ready';
    const key = busyKey(model.name, model.version);
    const busyForMs = (this.#busyUntil.get(key) ?? 0) - performance.now();
    if (busyForMs <= 0) this.#busyUntil.delete(key);
    const busy = busyForMs > 0 ? { busyForMs } : {};
    // Prefer what this client measured end to end (transfer included); else the server's run
    // estimate plus the ping round trip.
    const warmMs =
      this.#roundTrips.get(versionKey(status.name, status.version))?.value ??
      (runMs === undefined ? undefined : runMs + (this.#rtt.value ?? 0));
    if (warmMs === undefined || (cold && (loadMs === undefined || warmupMs === undefined))) {
      // A cold start the server has measured is a floor even before a run is (see decidePlacement).
      const atLeastMs = (warmMs ?? 0) + (cold ? (loadMs ?? 0) + (warmupMs ?? 0) : 0);
      return {
        available: true,
        cold,
        reason: atLeastMs > 0 ? 'server cold start, not fully measured yet' : 'no measurements yet',
        ...(atLeastMs > 0 ? { atLeastMs } : {}),
        ...busy,
      };
    }
    const ms = warmMs + (cold ? (loadMs ?? 0) + (warmupMs ?? 0) : 0);
    return {
      available: true,
      cold,
      ms,
      reason: cold ? 'server cold start + run' : 'server run',
      ...busy,
    };
  }

  async run(
    model: ModelManifest,
    inputs: TensorMap,
    options: RuntimeRunOptions,
  ): Promise<RuntimeResult> {
    if (options.signal.aborted) throw cancelled(options.jobId);
    // A cancel while connecting ends the call there: the job is never sent.
    await abortable(this.connect(), options.signal, () => cancelled(options.jobId), 'E_NETWORK');
    const message: InferMessage = {
      type: 'infer',
      id: options.jobId,
      model: model.name,
      ...(model.version === undefined ? {} : { version: model.version }),
      inputs,
      ...(options.outputs === undefined ? {} : { outputs: options.outputs }),
      priority: options.priority,
      ...(options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs }),
    };
    return new Promise<RuntimeResult>((resolve, reject) => {
      // Aborted after the connection came up but before this ran: an aborted signal never fires
      // the listener below.
      if (options.signal.aborted) {
        reject(cancelled(options.jobId));
        return;
      }
      // Closed while this call waited for the connection: close() failed the jobs it knew of,
      // and no connection will come for this one.
      if (this.#closed) {
        reject(new TandemError('E_CANCELLED', 'the remote runtime was closed'));
        return;
      }
      const job: PendingJob = {
        message,
        options,
        resolve,
        reject,
        startedAt: performance.now(),
        disconnectTimer: undefined,
        sentOn: undefined,
        resubmitted: false,
      };
      this.#jobs.set(options.jobId, job);
      job.onAbort = () => {
        if (this.#jobs.get(options.jobId) !== job) return;
        this.#finish(options.jobId);
        // A job never sent is only dropped here: the server has nothing to cancel.
        if (job.sentOn !== undefined) this.#cancelOnServer(options.jobId);
        reject(cancelled(options.jobId));
      };
      options.signal.addEventListener('abort', job.onAbort, { once: true });
      // The connection may have dropped since connect() resolved (its close can come in between):
      // then the job waits for the next one rather than being sent into a closed socket.
      this.#sendInfer(job);
    });
  }

  /**
   * Asks the server to start loading the model. Connected, the `warm` goes out at once. Otherwise
   * it goes out on the next connection (connecting if none is under way; a connection that drops
   * before its welcome is retried), once however many calls for the model version wait for it,
   * and the calls resolve then. They reject with E_NETWORK when no connection comes within
   * `jobReconnectTimeoutMs`, with the server's refusal (E_UNAUTHORIZED…) when it refuses the
   * connection, and with E_CANCELLED on close(). Dropped unsent instead, the page's wake-up call
   * would be lost without a word, and its first run would meet a cold model.
   */
  warm(model: ModelManifest): Promise<void> {
    if (this.#closed)
      return Promise.reject(new TandemError('E_NETWORK', 'the remote runtime is closed'));
    const message: WarmMessage = {
      type: 'warm',
      model: model.name,
      ...(model.version === undefined ? {} : { version: model.version }),
    };
    if (this.connected) {
      this.#send(message);
      return Promise.resolve();
    }
    const key = warmKey(model);
    const pending = this.#warms.get(key) ?? this.#awaitConnectionToWarm(key, message);
    const sent = new Promise<void>((resolve, reject) => pending.waiters.push({ resolve, reject }));
    // Starts a connection, or joins the one coming up. Its failure is not this call's: the warm
    // waits on (a dropped attempt is retried while it does) until its own time limit.
    this.connect().catch(() => undefined);
    return sent;
  }

  /**
   * Sends a cancelled job's `cancel`: now when connected, else on the next connection (one is
   * started if none is coming), for up to `jobReconnectTimeoutMs`.
   */
  #cancelOnServer(id: string): void {
    if (this.connected) {
      this.#send({ type: 'cancel', id });
      return;
    }
    clearTimeout(this.#cancels.get(id));
    this.#cancels.set(
      id,
      setTimeout(() => this.#cancels.delete(id), this.#options.jobReconnectTimeoutMs ?? 10_000),
    );
    if (this.#socket === undefined) this.#scheduleReconnect();
  }

  /** Registers a warm to be sent on the next connection, failing with E_NETWORK if none comes. */
  #awaitConnectionToWarm(key: string, message: WarmMessage): PendingWarm {
    // At least one connection attempt's time: a short reconnect window must not fail a warm made
    // before the first welcome could come.
    const limitMs = Math.max(
      this.#options.jobReconnectTimeoutMs ?? 10_000,
      this.#options.connectTimeoutMs ?? 5000,
    );
    const pending: PendingWarm = {
      message,
      waiters: [],
      timer: setTimeout(
        () =>
          this.#endWarm(
            key,
            new TandemError(
              'E_NETWORK',
              `warm for model "${message.model}" not sent: no connection to ${this.#url} within ${limitMs} ms`,
            ),
          ),
        limitMs,
      ),
    };
    this.#warms.set(key, pending);
    return pending;
  }

  /** Sends the warms that waited for a connection on this one, and resolves their calls. */
  #sendWarms(): void {
    if (!this.connected) return; // going down already: they wait for the next one
    for (const [key, pending] of [...this.#warms]) {
      this.#send(pending.message);
      this.#endWarm(key);
    }
  }

  /** Ends a waiting warm: its calls resolve (it went out), or reject with `error`. */
  #endWarm(key: string, error?: TandemError): void {
    const pending = this.#warms.get(key);
    if (pending === undefined) return;
    this.#warms.delete(key);
    clearTimeout(pending.timer);
    for (const waiter of pending.waiters) {
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#heartbeat);
    const error = new TandemError('E_CANCELLED', 'the remote runtime was closed');
    for (const id of [...this.#jobs.keys()]) this.#fail(id, error);
    for (const key of [...this.#warms.keys()]) this.#endWarm(key, error);
    for (const timer of this.#cancels.values()) clearTimeout(timer);
    this.#cancels.clear();
    for (const waiter of this.#welcomeWaiters.splice(0)) waiter.reject(error);
    this.#socket?.close(1000, 'client closed');
    this.#socket = undefined;
  }

  // ---- connection -----------------------------------------------------------------------------

  #open(): void {
    const protocols = ['tandem.v1'];
    if (this.#options.apiKey !== undefined) protocols.push(`tandem.key.${this.#options.apiKey}`);
    let socket: WebSocketLike;
    try {
      socket = this.#options.createSocket(this.#url, protocols);
    } catch (error) {
      this.#onDisconnect(TandemError.from(error, 'E_NETWORK'));
      return;
    }
    this.#socket = socket;
    this.#welcomed = false;
    socket.binaryType = socket.readsFragments === true ? 'fragments' : 'arraybuffer';
    socket.onopen = () => {
      this.#send({
        type: 'hello',
        protocolVersion: PROTOCOL_VERSION,
        client: {
          name: this.#options.clientName ?? '@tandem/client',
          version: this.#options.clientVersion ?? '0.1.0',
        },
      });
    };
    socket.onmessage = (event) => this.#onMessage(event.data);
    // Set when this socket itself refused a message from the server as too large for it: its
    // close then says 1006 (it never hears the server's close frame back), not 1009.
    let refusedTooLarge = false;
    socket.onerror = (event) => {
      refusedTooLarge ||= refusesTooLarge(event); // onclose follows with the code
    };
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#welcomed = false;
      if (refusedTooLarge)
        this.#failWaitingOn(
          socket,
          "this client's socket refused a message from the server as too large for it",
        );
      else if (event.code === CLOSE_TOO_LARGE) this.#failOversized(socket);
      const code = event.code === 1008 || event.code === 1002 ? 'E_PROTOCOL' : 'E_NETWORK';
      this.#onDisconnect(
        this.#lastError ??
          new TandemError(
            code,
            `connection to ${this.#url} closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`,
          ),
      );
    };
  }

  #onDisconnect(error: TandemError): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    // Pings of the lost connection will never be answered; the next one starts counting afresh.
    this.#pings.clear();
    this.#lastError = undefined;
    if (this.#closed) return;
    if (FINAL_CONNECTION_CODES.has(error.code)) {
      for (const waiter of this.#welcomeWaiters.splice(0)) waiter.reject(error);
      for (const id of [...this.#jobs.keys()]) this.#fail(id, error);
      for (const key of [...this.#warms.keys()]) this.#endWarm(key, error);
      return;
    }
    for (const waiter of this.#welcomeWaiters.splice(0)) waiter.reject(error);
    this.#ready = undefined;
    for (const job of this.#jobs.values()) this.#awaitConnection(job);
    if (this.#needsConnection()) this.#scheduleReconnect();
  }

  /** Whether anything waits for a connection: a job, a connect() call, a warm or a cancel. */
  #needsConnection(): boolean {
    return (
      this.#jobs.size > 0 ||
      this.#welcomeWaiters.length > 0 ||
      this.#warms.size > 0 ||
      this.#cancels.size > 0
    );
  }

  /** Starts a job's wait for the next connection: it fails with E_NETWORK if none comes in time. */
  #awaitConnection(job: PendingJob): void {
    const id = job.message.id;
    job.disconnectTimer ??= setTimeout(
      () =>
        this.#fail(
          id,
          new TandemError('E_NETWORK', `lost the connection to ${this.#url} during job ${id}`),
        ),
      this.#options.jobReconnectTimeoutMs ?? 10_000,
    );
  }

  #scheduleReconnect(): void {
    if (this.#reconnectTimer !== undefined || this.#closed) return;
    const delay = backoffDelayMs(
      this.#attempt++,
      this.#options.reconnectMinDelayMs ?? 250,
      this.#options.reconnectMaxDelayMs ?? 10_000,
      this.#options.random ?? Math.random,
    );
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.#needsConnection()) return; // nobody waits: reconnect lazily
      this.#ready ??= new Promise<void>((resolve, reject) =>
        this.#welcomeWaiters.push({ resolve, reject }),
      );
      this.#ready.catch(() => (this.#ready = undefined));
      this.#open();
    }, delay);
  }

  /**
   * After `socket` closed with 1009 (a message too large for the server, or for a proxy between
   * them): when the largest `infer` sent on the socket was not yet taken by the server, it is the
   * one (the welcome announced more than the server, or a proxy before it, takes). It fails alone;
   * the others resume as after any reconnect. Otherwise the server read every request whole, so
   * the message refused came from it: see {@link #failWaitingOn}.
   */
  #failOversized(socket: WebSocketLike): void {
    const largest = this.#largestSent;
    this.#largestSent = undefined;
    if (largest?.socket !== socket || largest.accepted) {
      this.#failWaitingOn(socket, 'the connection closed with 1009 (message too large)');
      return;
    }
    const { id } = largest;
    if (!this.#jobs.has(id)) return; // cancelled meanwhile
    const limit = this.#limits?.maxPayloadBytes;
    this.#fail(
      id,
      new TandemError(
        'E_PAYLOAD_TOO_LARGE',
        `the server closed the connection (1009: message too large) after job ${id} sent ` +
          `${largest.bytes} bytes` +
          (limit === undefined ? '' : `; it announced a limit of ${limit} bytes`),
      ),
    );
  }

  /**
   * After `socket` went down over a message from the server too large for the client's socket
   * (or a proxy): an answer to one of the jobs waiting on it. The close does not say whose, and
   * resumed, that answer would be sent again into the same refusal, over and over: every job
   * waiting for its answer on the socket fails with E_PAYLOAD_TOO_LARGE.
   */
  #failWaitingOn(socket: WebSocketLike, what: string): void {
    for (const [id, job] of [...this.#jobs]) {
      if (job.sentOn !== socket) continue;
      this.#fail(
        id,
        new TandemError(
          'E_PAYLOAD_TOO_LARGE',
          `${what} while job ${id} waited for its answer on the connection to ${this.#url}: ` +
            `an answer (a result) was larger than the connection takes, and would be again if ` +
            `resumed; a socket of your own (createSocket) must not cap incoming messages ` +
            `(ws: maxPayload 0)`,
        ),
      );
    }
  }

  #onWelcome(models: readonly ModelStatus[], limits: ServerLimits): void {
    this.#welcomed = true;
    this.#attempt = 0;
    this.#limits = limits;
    this.#models.clear();
    for (const model of models) this.#setStatus(model);
    const waiting = [...this.#jobs.values()].filter((job) => job.disconnectTimer !== undefined);
    for (const job of waiting) {
      clearTimeout(job.disconnectTimer);
      job.disconnectTimer = undefined;
    }
    // Jobs sent on an earlier connection are resumed by id; jobs never sent go out now.
    const resumed = waiting.filter((job) => job.sentOn !== undefined);
    if (resumed.length > 0) {
      this.#send({ type: 'resume', ids: resumed.map((job) => job.message.id) });
      const now = performance.now();
      for (const job of resumed) {
        job.sentOn = this.#socket;
        job.resumingSince ??= now;
      }
    }
    for (const job of waiting) if (job.sentOn === undefined) this.#sendInfer(job);
    for (const [id, timer] of this.#cancels) {
      clearTimeout(timer);
      this.#send({ type: 'cancel', id });
    }
    this.#cancels.clear();
    this.#sendWarms();
    this.#startHeartbeat();
    for (const waiter of this.#welcomeWaiters.splice(0)) waiter.resolve();
  }

  #startHeartbeat(): void {
    clearInterval(this.#heartbeat);
    const interval = this.#options.heartbeatIntervalMs ?? 15_000;
    this.#heartbeat = setInterval(() => {
      // Two pings without a pong: the connection is dead even if the socket has not noticed.
      if (this.#pings.size >= 2) {
        this.#pings.clear();
        const socket = this.#socket;
        socket?.close(4000, 'heartbeat timeout');
        // A dead peer never answers the close, and the socket's close event waits for it (the
        // ws package gives up after 30 s): meanwhile nothing reconnected, and a job sent in that
        // time failed with E_NETWORK. The connection is given up now; its late close is ignored.
        if (socket !== undefined && this.#socket === socket) {
          this.#socket = undefined;
          this.#welcomed = false;
          this.#onDisconnect(
            new TandemError('E_NETWORK', `no answer from ${this.#url} to two heartbeats`),
          );
        }
        return;
      }
      const nonce = ++this.#nonce;
      this.#pings.set(nonce, performance.now());
      this.#send({ type: 'ping', nonce });
    }, interval);
    const timer = this.#heartbeat as { unref?: () => void };
    timer.unref?.();
  }

  // ---- models ---------------------------------------------------------------------------------

  #setStatus(status: ModelStatus): void {
    const versions = this.#models.get(status.name) ?? new Map<string, ModelStatus>();
    versions.set(status.version, status);
    this.#models.set(status.name, versions);
  }

  /** The status of the version a job for `model` runs: the one named, else the server's latest. */
  #status(model: ModelManifest): ModelStatus | undefined {
    const versions = this.#models.get(model.name);
    if (versions === undefined) return undefined;
    if (model.version !== undefined) return versions.get(model.version);
    let latest: ModelStatus | undefined;
    for (const status of versions.values()) {
      if (latest === undefined || compareVersions(status.version, latest.version) > 0)
        latest = status;
    }
    return latest;
  }

  // ---- messages -------------------------------------------------------------------------------

  #send(message: ClientMessage): void {
    const socket = this.#socket;
    if (socket?.readyState !== OPEN) return;
    transmit(socket, encodeFor(socket, message));
  }

  /**
   * Sends a job's `infer`, or fails the job alone with E_PAYLOAD_TOO_LARGE when the frame is over
   * the server's limit: sent, it would make the server close the connection (1009) under every job
   * on it, and the job would fail the same way however often it was sent again.
   */
  #sendInfer(job: PendingJob): void {
    // An infer, not a resume: an error now is about the job itself.
    job.resumingSince = undefined;
    const socket = this.#socket;
    if (socket === undefined || !this.connected) {
      // No connection to send on (it dropped, or the next one is not welcomed yet): the job waits
      // for the next welcome, which sends it, with the usual time limit. Dropped here, it would
      // wait for an answer that never comes.
      job.sentOn = undefined;
      this.#awaitConnection(job);
      // A connection coming up (or going down) moves the job on; with none, one is started.
      if (socket === undefined) this.#scheduleReconnect();
      return;
    }
    const parts = encodeFor(socket, job.message);
    const bytes = parts.reduce((sum, part) => sum + part.byteLength, 0);
    const limit = this.#limits?.maxPayloadBytes;
    if (limit !== undefined && bytes > limit) {
      this.#fail(
        job.message.id,
        new TandemError(
          'E_PAYLOAD_TOO_LARGE',
          `job ${job.message.id} is ${bytes} bytes on the wire, over the server's limit of ${limit} bytes (maxPayloadBytes)`,
        ),
      );
      return;
    }
    if (this.#largestSent?.socket !== socket || bytes > this.#largestSent.bytes)
      this.#largestSent = { socket, id: job.message.id, bytes, accepted: false };
    job.sentOn = socket;
    transmit(socket, parts);
  }

  #onMessage(data: unknown): void {
    let message: ServerMessage;
    try {
      message = decodeServerMessage(data);
    } catch {
      return; // a bad frame from the server loses that frame only
    }
    switch (message.type) {
      case 'welcome':
        return this.#onWelcome(message.models, message.limits);
      case 'model':
        this.#setStatus(message.model);
        return;
      case 'pong': {
        const sentAt = this.#pings.get(message.nonce);
        if (sentAt !== undefined) this.#rtt.add(performance.now() - sentAt);
        this.#pings.clear();
        return;
      }
      case 'progress': {
        this.#accepted(message.event.jobId);
        const job = this.#jobs.get(message.event.jobId);
        if (job === undefined) return;
        job.resumingSince = undefined;
        job.options.onProgress(message.event);
        return;
      }
      case 'result': {
        this.#accepted(message.id);
        const job = this.#jobs.get(message.id);
        if (job === undefined) return; // a result for a cancelled or already answered job
        this.#finish(message.id);
        if (!message.coldStart) {
          const key = versionKey(message.model, message.version);
          const measured = this.#roundTrips.get(key) ?? new MovingAverage();
          measured.add(performance.now() - job.startedAt);
          this.#roundTrips.set(key, measured);
        }
        job.resolve({
          outputs: message.outputs,
          backend: message.backend,
          cold: message.coldStart,
          timings: {
            queueMs: message.timings.queueMs,
            loadMs: message.timings.loadMs + message.timings.warmupMs,
            runMs: message.timings.runMs,
          },
        });
        return;
      }
      case 'error': {
        const error = new TandemError(message.code, message.message, {
          retryable: message.retryable,
          ...(message.retryAfterMs === undefined ? {} : { retryAfterMs: message.retryAfterMs }),
        });
        if (message.id === null) {
          // Kept for the close that follows, which then ends calls with this code.
          if (FINAL_CONNECTION_CODES.has(error.code)) this.#lastError = error;
          return;
        }
        this.#accepted(message.id);
        const job = this.#jobs.get(message.id);
        if (job === undefined) return;
        if (this.#resumeAgain(job, error)) return;
        if (error.code === 'E_JOB_NOT_FOUND' && !job.resubmitted) {
          // The server restarted and lost the job: run it again, once (within the new limits).
          job.resubmitted = true;
          this.#sendInfer(job);
          return;
        }
        if (error.code === 'E_BUSY' && error.retryAfterMs !== undefined)
          this.#busyUntil.set(
            busyKey(job.message.model, job.message.version),
            performance.now() + error.retryAfterMs,
          );
        this.#fail(message.id, error);
        return;
      }
    }
  }

  /**
   * After a retryable error in answer to a `resume` (a scaled-out server whose queue store did
   * not answer in time), asks again after the error's `retryAfterMs` (else a second), for as long
   * as `jobReconnectTimeoutMs` since the first resume. True when it will.
   */
  #resumeAgain(job: PendingJob, error: TandemError): boolean {
    const since = job.resumingSince;
    if (since === undefined || !error.retryable) return false;
    const limitMs = this.#options.jobReconnectTimeoutMs ?? 10_000;
    const delayMs = error.retryAfterMs ?? RESUME_RETRY_MS;
    if (performance.now() + delayMs - since > limitMs) return false;
    const socket = this.#socket;
    clearTimeout(job.resumeTimer);
    job.resumeTimer = setTimeout(() => {
      job.resumeTimer = undefined;
      // A new connection resumes it by itself; this one, if still up, is asked again.
      if (this.#jobs.get(job.message.id) !== job || this.#socket !== socket || !this.connected)
        return;
      this.#send({ type: 'resume', ids: [job.message.id] });
    }, delayMs);
    return true;
  }

  /** The server answered about job `id`, so it read the job's request whole. */
  #accepted(id: string): void {
    if (this.#largestSent?.id === id) this.#largestSent.accepted = true;
  }

  #finish(id: string): PendingJob | undefined {
    const job = this.#jobs.get(id);
    if (job === undefined) return undefined;
    clearTimeout(job.disconnectTimer);
    clearTimeout(job.resumeTimer);
    if (job.onAbort !== undefined) job.options.signal.removeEventListener('abort', job.onAbort);
    this.#jobs.delete(id);
    return job;
  }

  #fail(id: string, error: TandemError): void {
    this.#finish(id)?.reject(error);
  }
}

/**
 * `message` encoded for `socket`: the fragments of one message where the socket sends those, else
 * one frame. Pooled: WebSocket.send copies or queues the bytes; nothing transfers or detaches them.
 */
function encodeFor(socket: WebSocketLike, message: ClientMessage): readonly Uint8Array[] {
  return socket.sendFragments === undefined
    ? [encodeMessage(message, { pooled: true })]
    : encodeMessageParts(message, { pooled: true });
}

function transmit(socket: WebSocketLike, parts: readonly Uint8Array[]): void {
  if (parts.length === 1 || socket.sendFragments === undefined) socket.send(parts[0] as Uint8Array);
  else socket.sendFragments(parts);
}

/**
 * The `ws` package's error codes for a message it refused as too large for its limits
 * (`maxPayload`, and the chunk and fragment counts); browsers' sockets have no such limits.
 */
const WS_TOO_LARGE_CODES: ReadonlySet<unknown> = new Set([
  'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
  'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH',
  'WS_ERR_TOO_MANY_BUFFERED_PARTS',
]);

/** Whether a socket's error event says it refused a received message as too large. */
function refusesTooLarge(event: unknown): boolean {
  if (typeof event !== 'object' || event === null || !('error' in event)) return false;
  const { error } = event;
  return (
    typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    WS_TOO_LARGE_CODES.has(error.code)
  );
}

/** A key for one version of a model. */
function versionKey(name: string, version: string): string {
  return `${name}\u0000${version}`;
}

/**
 * A key for a warm of `model`: per version asked for. One naming no version (the server's latest)
 * is kept apart from one naming a version, as the server may resolve them to different ones.
 */
function warmKey(model: ModelManifest): string {
  return model.version === undefined
    ? `${model.name}\u0001`
    : versionKey(model.name, model.version);
}

function cancelled(id: string): TandemError {
  return new TandemError('E_CANCELLED', `job ${id} was cancelled`);
}

/** `http(s)://host[:port][/base]` → `ws(s)://host[:port][/base]/v1/stream`; ws URLs pass through. */
export function streamUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === 'ws:' || parsed.protocol === 'wss:') return parsed.toString();
  parsed.protocol = parsed.protocol === 'https:' ? 'wss:' : 'ws:';
  parsed.pathname = `${parsed.pathname.replace(/\/$/, '')}/v1/stream`;
  return parsed.toString();
}

/** Priority used when a call names none. */
export const DEFAULT_JOB_PRIORITY = DEFAULT_PRIORITY;

/** RFC 9110 token characters: what a WebSocket subprotocol, and so a key sent as one, may hold. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Refuses an API key that cannot travel as a subprotocol (`/`, `=` or spaces, as standard base64
 * has) with E_INVALID_ARGUMENT: a browser's WebSocket constructor throws on it, which would fail
 * every remote call with E_NETWORK.
 */
export function checkSubprotocolKey(apiKey: string): void {
  if (!TOKEN.test(apiKey))
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      "apiKey must be HTTP token characters (letters, digits and !#$%&'*+-.^_`|~) to be sent over a WebSocket: use a hex or base64url key",
    );
}

/** The key of a model version as a call names it (no version: the server's latest). */
function busyKey(name: string, version: string | undefined): string {
  return `${name}\u0000${version ?? ''}`;
}
