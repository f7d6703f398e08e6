// createServer: assembles the model repository, the model manager, the WebSocket gateway, the Open
// Inference Protocol v2 routes, metrics, usage and (optionally) static files into one fastify
// instance. Warm-up (keep-warm models) happens in onReady; draining happens in preClose.

import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ERROR_CODES, TandemError, type ServerLimits } from '@tandem/shared';
import { ApiKeys, bearerToken, loadApiKeyFile, type ApiKeyRecord } from './api-keys.js';
import { normalizeOrigins, registerCors } from './cors.js';
import { resolveCatalog } from './default-catalog.js';
import { httpErrorBody, rawHttpErrorResponse, retryAfterHeader } from './http-error.js';
import type { JobDispatcher } from './job-dispatcher.js';
import { JobRegistry } from './job-registry.js';
import { RejectionCounter, ServerMetrics } from './metrics.js';
import { DEFAULT_MANAGER_SETTINGS, ModelManager } from './model-manager.js';
import { ModelRepository, checkModelsDir, type ModelEntry } from './model-repository.js';
import { registerModelRoutes } from './model-routes.js';
import { registerOipRoutes } from './oip-routes.js';
import type { SessionSettings } from './onnx-session.js';
import type { RedisDispatcher } from './redis-dispatcher.js';
import { SERVER_NAME, SERVER_VERSION } from './server-version.js';
import { UsageLedger, type UsageSource } from './usage.js';
import { registerGateway, type Gateway } from './ws-gateway.js';

/** Options of {@link createServer}. Every limit has a default; units are in the names. */
export interface ServerOptions {
  /** Interface to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** Port to listen on; 0 picks a free one. @default 8080 */
  readonly port?: number;
  /**
   * Model repository directory: `DIR/<name>/<version>/model.onnx` (+ model.json). It must exist
   * (E_INVALID_ARGUMENT otherwise: a typo would serve none of its models without a word).
   */
  readonly modelsDir?: string;
  /** The built-in catalog (PaddleOCR from npm), or your own entries, or none. @default true */
  readonly catalog?: boolean | readonly ModelEntry[];
  /** API keys (records, or the path of a key file). No keys: anyone may call. */
  readonly apiKeys?: readonly ApiKeyRecord[] | string;
  /** Accept the key in the WebSocket `hello` when the upgrade carried none. @default false */
  readonly allowKeyInHello?: boolean;
  /**
   * Page origins (`https://app.example`) allowed to open WebSockets and to read HTTP answers
   * (CORS); undefined, or `*` in the list, allows any. Entries are compared as origins (a path or
   * trailing slash is dropped, the host lower-cased); one that is no http(s) URL is refused with
   * E_INVALID_ARGUMENT. Requests without an Origin header are never refused by it.
   */
  readonly origins?: readonly string[];
  /**
   * Largest frame or request body, in bytes; a compressed OIP infer body is held to it once
   * inflated too. @default 67108864 (64 MiB)
   */
  readonly maxPayloadBytes?: number;
  /** Jobs that may wait per model (model.json may override). @default 256 */
  readonly maxQueue?: number;
  /** Idle time before a model instance is unloaded (scale to zero), in ms. @default 300000 */
  readonly idleTimeoutMs?: number;
  /**
   * How long a finished job's outcome is kept for `resume` while no client has acknowledged it
   * (a pong to a ping sent after the outcome; acknowledged outcomes are forgotten at once), in ms.
   * @default 60000
   */
  readonly resultTtlMs?: number;
  /** WebSocket ping interval; a peer silent for two intervals is dropped, in ms. @default 15000 */
  readonly heartbeatIntervalMs?: number;
  /** Bytes of model files loaded at once before idle models are evicted (LRU). @default Infinity */
  readonly memoryBudgetBytes?: number;
  /** Autoscaler: add an instance while more than this many jobs wait per instance. @default 4 */
  readonly scaleUpQueueDepth?: number;
  /** Least time between queue-position updates to one job, in ms. @default 100 */
  readonly progressIntervalMs?: number;
  /**
   * Small models whose runs take at most this long (measured, in ms) also get a main-thread session
   * and run there, skipping the worker-thread hop that would cost more than the run; 0 disables.
   * @default 1
   */
  readonly inlineMaxRunMs?: number;
  /** Largest model file that may run inline, in bytes. @default 8388608 (8 MiB) */
  readonly inlineMaxModelBytes?: number;
  /** Largest job input that may run inline, in bytes. @default 262144 (256 KiB) */
  readonly inlineMaxInputBytes?: number;
  /** Bytes queued on one socket past which progress is dropped and new jobs refused. @default 16777216 */
  readonly maxBufferedBytes?: number;
  /** Malformed frames tolerated per connection before it is closed. @default 100 */
  readonly maxProtocolErrors?: number;
  /** Time a WebSocket has to send `hello` before it is closed (1008), in ms. @default 10000 */
  readonly helloTimeoutMs?: number;
  /**
   * WebSockets that may wait for their `hello` at once (each for up to helloTimeoutMs); past it
   * upgrades are refused with 503 E_BUSY until some say hello or go. @default 1024
   */
  readonly maxPendingHellos?: number;
  /**
   * Time an HTTP request has to arrive in full, head and body, in ms; past it the answer is 408
   * E_REQUEST_TIMEOUT and the connection closes. Without a limit a client that stops sending
   * its body holds its connection and the body so far (up to maxPayloadBytes) for good.
   * @default 300000
   */
  readonly requestTimeoutMs?: number;
  /** onnxruntime-node session settings (execution providers, threads). */
  readonly session?: SessionSettings;
  /** A directory of static files (the demo) served at `/`, cross-origin isolated. */
  readonly staticDir?: string;
  /** Longest time SIGTERM-style shutdown waits for accepted jobs, in ms. @default 30000 */
  readonly shutdownTimeoutMs?: number;
  /** Structured logs (pino, via fastify). @default false */
  readonly logger?: boolean;
  /**
   * Scale out: a Redis URL (redis://host:6379). Jobs then go to BullMQ queues, one per worker
   * pool (model.json `pool`), and `tandem worker` processes run them; this server only checks,
   * queues and follows them. Absent: everything runs in this process.
   */
  readonly redis?: string;
  /** Prefix of every Redis key (the workers must use the same). @default 'tandem' */
  readonly redisPrefix?: string;
  /** With `redis`: times a job may fail by throwing on a worker before it fails for good. @default 2 */
  readonly maxAttempts?: number;
  /**
   * With `redis`: API keys' limits are counted in Redis for all gateways at once; this is how long
   * a concurrency slot outlives a gateway that died holding it, in ms. @default 30000
   */
  readonly keyLeaseMs?: number;
  /**
   * With `redis`: how long `listen()` waits for Redis before serving anyway (jobs then get a
   * retryable E_QUEUE_UNAVAILABLE until Redis answers), in ms. @default 5000
   */
  readonly redisConnectTimeoutMs?: number;
}

/** A running (or ready to run) Tandem server. */
export interface TandemServer {
  /** The fastify instance inside. */
  readonly fastify: FastifyInstance;
  /**
   * The models of the repository. In-process it runs the jobs; behind `redis` it only describes
   * them (signatures, manifests, files) and the workers run them.
   */
  readonly manager: ModelManager;
  /** What the routes submit jobs through: `manager` in-process, the Redis dispatcher scaled out. */
  readonly dispatcher: JobDispatcher;
  /** The Prometheus registry and series behind `/metrics` (add your own to its registry). */
  readonly metrics: ServerMetrics;
  /**
   * Compute-seconds, jobs and cold starts per API key and model: what `/v1/usage` serves. Scaled
   * out, the whole cluster's totals, which the workers keep in Redis.
   */
  readonly usage: UsageSource;
  /** Starts listening; resolves with the base URL (http://host:port). */
  listen(): Promise<string>;
  /** The base URL once listening. */
  readonly url: string | undefined;
  /**
   * Shuts down cleanly: readiness goes false, new work is refused, accepted jobs finish (up to
   * `shutdownTimeoutMs`), connections close, models are released.
   */
  close(): Promise<void>;
}

/** After draining, how long open HTTP responses may still take before their connections are cut. */
const CONNECTION_GRACE_MS = 2000;

export { SERVER_NAME, SERVER_VERSION };

/** Creates a server. Nothing listens until `listen()`. */
export async function createServer(options: ServerOptions = {}): Promise<TandemServer> {
  checkLimits(options);
  const origins = normalizeOrigins(options.origins);
  const maxPayloadBytes = options.maxPayloadBytes ?? 64 * 1024 * 1024;
  const requestTimeoutMs = options.requestTimeoutMs ?? 300_000;
  const limits: ServerLimits = {
    maxPayloadBytes,
    maxQueue: options.maxQueue ?? DEFAULT_MANAGER_SETTINGS.maxQueue,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 15_000,
    resultTtlMs: options.resultTtlMs ?? 60_000,
  };
  if (typeof options.apiKeys === 'string' && options.staticDir !== undefined)
    checkKeyFileNotServed(options.apiKeys, options.staticDir);
  const keys = new ApiKeys(
    typeof options.apiKeys === 'string' ? loadApiKeyFile(options.apiKeys) : (options.apiKeys ?? []),
  );
  const catalog = resolveCatalog(options.catalog);
  if (options.modelsDir !== undefined) checkModelsDir(options.modelsDir);
  const repository = new ModelRepository({ dir: options.modelsDir, catalog });
  // return503OnClosing off: while draining, the routes themselves answer (ready 503, live 200,
  // new work E_SHUTTING_DOWN with Retry-After) instead of fastify's bare 503 for everything.
  const redisConnectTimeoutMs = options.redisConnectTimeoutMs ?? 5000;
  const fastify = Fastify({
    // The onReady hook waits for Redis (see redisConnectTimeoutMs) and must not time out first.
    pluginTimeout: Math.max(10_000, redisConnectTimeoutMs + 5000),
    logger: options.logger ?? false,
    bodyLimit: maxPayloadBytes,
    return503OnClosing: false,
    // fastify turns Node's own limit (300 s) off by default. Given to Node's createServer as
    // well: set only afterwards (fastify's way), it held for the head but never for the body.
    // Node looks for requests past their time every connectionsCheckingInterval ms: a 408
    // comes at most that late.
    requestTimeout: requestTimeoutMs,
    http: {
      requestTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.min(30_000, Math.ceil(requestTimeoutMs / 4)),
    },
    clientErrorHandler: (error, socket) => {
      const answered = answerClientError(error, socket);
      if (answered !== undefined) rejections?.countError(answered);
    },
    // fastify's default (100) made a model or version named with 101 to 128 characters (the
    // repository takes up to 128) unreachable over HTTP: the route answered 414 without looking.
    routerOptions: { maxParamLength: MAX_URL_PARAM_CHARS },
    // A path fastify's router refuses itself (a bad %-escape like `/v2/models/%zz`, a parameter
    // past the length above) gets a coded body like every other refusal, not fastify's own (whose
    // `code` is no Tandem code and whose `error` is only "Bad Request").
    frameworkErrors: (error, request, reply) => {
      // Answered before any hook could run.
      isolate(reply);
      const coded = toTandemError(error);
      rejections?.countError(coded);
      void sendError(reply, coded, request);
    },
  });
  const usage = new UsageLedger();
  let metrics: ServerMetrics | undefined;
  let rejections: RejectionCounter | undefined;
  let gateway: Gateway | undefined;
  const manager = new ModelManager(
    repository,
    {
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_MANAGER_SETTINGS.idleTimeoutMs,
      maxQueue: limits.maxQueue,
      scaleUpQueueDepth: options.scaleUpQueueDepth ?? DEFAULT_MANAGER_SETTINGS.scaleUpQueueDepth,
      progressIntervalMs: options.progressIntervalMs ?? DEFAULT_MANAGER_SETTINGS.progressIntervalMs,
      inlineMaxRunMs: options.inlineMaxRunMs ?? DEFAULT_MANAGER_SETTINGS.inlineMaxRunMs,
      inlineMaxModelBytes:
        options.inlineMaxModelBytes ?? DEFAULT_MANAGER_SETTINGS.inlineMaxModelBytes,
      inlineMaxInputBytes:
        options.inlineMaxInputBytes ?? DEFAULT_MANAGER_SETTINGS.inlineMaxInputBytes,
      memoryBudgetBytes: options.memoryBudgetBytes ?? DEFAULT_MANAGER_SETTINGS.memoryBudgetBytes,
      session: options.session ?? DEFAULT_MANAGER_SETTINGS.session,
    },
    {
      stateChanged: (host) => gateway?.broadcastModel(host.status()),
      loaded: (host, loadMs, warmupMs) => {
        metrics?.modelLoaded(host, loadMs, warmupMs);
        fastify.log.info({ model: host.label, loadMs, warmupMs }, 'model ready');
      },
      ran: (host, runMs, jobs) => {
        metrics?.modelRan(host, runMs, jobs.length);
        usage.recordRun(host.entry.name, host.entry.version, runMs, jobs);
      },
      coldStart: (host) => metrics?.coldStart(host),
      rejected: (host, code) => rejections?.countByHost(host.entry.name, code),
      log: (level, message, details) => fastify.log[level](details ?? {}, message),
    },
  );
  let redis: RedisDispatcher | undefined;
  if (options.redis !== undefined) {
    // Loaded only to scale out: a single server has no use for BullMQ and ioredis.
    const { RedisDispatcher } = await import('./redis-dispatcher.js');
    const { DEFAULT_MAX_ATTEMPTS, DEFAULT_REDIS_PREFIX } = await import('./redis-queues.js');
    redis = new RedisDispatcher({
      url: options.redis,
      prefix: options.redisPrefix ?? DEFAULT_REDIS_PREFIX,
      catalog: manager,
      resultTtlMs: limits.resultTtlMs,
      progressIntervalMs: options.progressIntervalMs ?? 100,
      maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      maxQueue: limits.maxQueue,
      ...(options.keyLeaseMs === undefined ? {} : { keyLeaseMs: options.keyLeaseMs }),
      connectTimeoutMs: redisConnectTimeoutMs,
      // Refusals made on the pool's side of Redis, counted here: the gateways count refusals.
      rejected: (model, code) => rejections?.count(code, model),
      stateChanged: (status) => gateway?.broadcastModel(status),
      log: (level, message, details) => fastify.log[level](details ?? {}, message),
    });
  }
  const dispatcher: JobDispatcher = redis ?? manager;
  // Scaled out, a key's limits hold across gateways, not per gateway.
  if (redis !== undefined) keys.share(redis.keyLimits);
  const usageSource: UsageSource = redis?.usage ?? usage;
  metrics = new ServerMetrics(manager, { localModels: redis === undefined });
  redis?.registerMetrics(metrics.registry);
  rejections = new RejectionCounter(metrics.rejections, (name) => knowsModel(dispatcher, name));
  const registry = new JobRegistry(limits.resultTtlMs);

  fastify.setErrorHandler((error, request, reply) => {
    const coded = toTandemError(error);
    // Every HTTP refusal ends here (routes throw); the model is the one in the path, if any.
    const { name } = (request.params ?? {}) as { name?: unknown };
    rejections.countError(coded, typeof name === 'string' ? name : undefined);
    return sendError(reply, coded, request);
  });
  fastify.addHook('onSend', async (_request, reply) => {
    isolate(reply);
  });
  // Before the routes: pages on other origins (those `origins` allows) read every HTTP answer.
  await registerCors(fastify, origins);
  // Unknown routes too, so that a client reads one error shape from every answer of this server.
  // After the hooks: a not-found handler set before them would not run them.
  fastify.setNotFoundHandler((request, reply) => {
    const coded = new TandemError(
      'E_ROUTE_NOT_FOUND',
      `no route answers ${request.method} ${request.url.split('?')[0] ?? ''}`,
    );
    rejections.countError(coded);
    return sendError(reply, coded, request);
  });

  /** Resolves the caller's key for HTTP routes; 401 when keys are required and it is bad. */
  const authenticate = (request: FastifyRequest): ApiKeyRecord => {
    const header = request.headers.authorization;
    const key = bearerToken(header);
    const owner = keys.verify(key);
    if (owner === undefined) {
      throw new TandemError(
        'E_UNAUTHORIZED',
        key === undefined
          ? 'an API key is required (Authorization: Bearer)'
          : 'the API key is not valid',
      );
    }
    return owner;
  };

  registerOipRoutes(fastify, {
    manager: dispatcher,
    keys,
    authenticate,
    rejections,
    serverName: SERVER_NAME,
    serverVersion: SERVER_VERSION,
    maxPayloadBytes,
  });
  registerModelRoutes(fastify, { manager: dispatcher, authenticate, usage: usageSource });
  fastify.get('/metrics', async (_request, reply) => {
    reply.header('Content-Type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  gateway = registerGateway(fastify, {
    manager: dispatcher,
    registry,
    keys,
    origins,
    allowKeyInHello: options.allowKeyInHello ?? false,
    limits,
    maxBufferedBytes: options.maxBufferedBytes ?? 16 * 1024 * 1024,
    maxProtocolErrors: options.maxProtocolErrors ?? 100,
    helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
    maxPendingHellos: options.maxPendingHellos ?? 1024,
    rejections,
    serverName: SERVER_NAME,
    serverVersion: SERVER_VERSION,
    onConnections: (count) => metrics.connections.set(count),
  });
  if (options.staticDir !== undefined) {
    await fastify.register(fastifyStatic, {
      root: resolve(options.staticDir),
      wildcard: false,
      // Bundlers put content hashes in asset names (Vite: assets/name-<hash>.js), so those never
      // change: a returning visitor loads the page's code and onnxruntime's .wasm from cache.
      setHeaders: (response, path) => {
        if (/[/\\]assets[/\\]/.test(path)) {
          response.header('Cache-Control', 'public, max-age=31536000, immutable');
        }
      },
    });
  }

  fastify.addHook('onReady', async () => {
    await dispatcher.start();
  });
  fastify.addHook('preClose', async () => {
    const timeout = options.shutdownTimeoutMs ?? 30_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = await Promise.race([
      dispatcher.drain().then(() => true),
      new Promise<boolean>((resolveTimeout) => {
        timer = setTimeout(() => resolveTimeout(false), timeout);
      }),
    ]);
    clearTimeout(timer);
    // Past the timeout, jobs still queued or running fail with a coded, retryable error that
    // goes out before the sockets close (closing first left their clients with a bare 1001).
    if (!drained) await dispatcher.abandon();
    // Results are out; now close the WebSockets. The http server's close (next, before onClose)
    // waits for upgraded sockets, so with any client connected it never finished.
    await gateway.closeConnections();
    // The http server's close waits for every open HTTP connection too. Idle keep-alive ones are
    // closed at once; one stuck mid-response (a client that stopped reading) must not hold the
    // shutdown forever, so whatever is still open after a short grace is cut.
    forceClose = setTimeout(() => fastify.server.closeAllConnections(), CONNECTION_GRACE_MS);
    forceClose.unref();
  });
  let forceClose: ReturnType<typeof setTimeout> | undefined;
  fastify.addHook('onClose', async () => {
    clearTimeout(forceClose);
    await dispatcher.close();
  });

  let url: string | undefined;
  return {
    fastify,
    manager,
    dispatcher,
    metrics,
    usage: usageSource,
    get url() {
      return url;
    },
    async listen() {
      url = await fastify.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
      return url;
    },
    async close() {
      await fastify.close();
    },
  };
}

/** Whether `name` is a model of the server: only such names become metric label values. */
function knowsModel(dispatcher: JobDispatcher, name: string): boolean {
  try {
    dispatcher.model(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses a key file inside the static directory (symbolic links followed): the static files are
 * served to anyone, and a key file's hashes let whoever fetches them try guesses offline.
 */
function checkKeyFileNotServed(keyFile: string, staticDir: string): void {
  let file: string;
  let dir: string;
  try {
    file = realpathSync(keyFile);
    dir = realpathSync(staticDir);
  } catch {
    return; // A missing key file is reported when it is read; a missing static dir serves nothing.
  }
  const inside = relative(dir, file);
  if (inside !== '..' && !inside.startsWith(`..${sep}`) && !isAbsolute(inside)) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      'the API key file is inside the static directory, which serves it to anyone: move it out',
    );
  }
}

/** Rejects limits that would make the server refuse everything or never time out. */
function checkLimits(options: ServerOptions): void {
  const positive: (keyof ServerOptions)[] = [
    'maxPayloadBytes',
    'maxQueue',
    'idleTimeoutMs',
    'resultTtlMs',
    'heartbeatIntervalMs',
    'memoryBudgetBytes',
    'scaleUpQueueDepth',
    'maxBufferedBytes',
    'maxProtocolErrors',
    'helloTimeoutMs',
    'maxPendingHellos',
    'requestTimeoutMs',
    'shutdownTimeoutMs',
    'maxAttempts',
  ];
  for (const key of positive) {
    const value = options[key];
    if (value !== undefined && (typeof value !== 'number' || !(value >= 1))) {
      throw new TandemError('E_INVALID_ARGUMENT', `option ${key} must be a number >= 1`);
    }
  }
  if (options.progressIntervalMs !== undefined && !(options.progressIntervalMs >= 0)) {
    throw new TandemError('E_INVALID_ARGUMENT', 'option progressIntervalMs must be >= 0');
  }
}

/**
 * The longest path parameter (a model name or version), in characters of the request target: past
 * the 128 a repository name takes, even %-encoded, and still short enough that the router's
 * matching stays cheap.
 */
const MAX_URL_PARAM_CHARS = 1024;

/**
 * What Node's HTTP parser refuses before any route sees a request (a request past
 * requestTimeoutMs, headers too large, bytes that are not HTTP), answered in Tandem's error shape
 * rather than fastify's, then the connection closed. Returns the error answered, if any.
 */
function answerClientError(
  error: Error & { code?: string },
  socket: Duplex,
): TandemError | undefined {
  // A reset connection has nobody left to answer (and an answer would only fail).
  if (error.code === 'ECONNRESET' || socket.destroyed) return undefined;
  const coded =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new TandemError(
          'E_REQUEST_TIMEOUT',
          "the request did not arrive in full within the server's requestTimeoutMs",
        )
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new TandemError(
            'E_PAYLOAD_TOO_LARGE',
            'the request headers are larger than the server takes',
          )
        : new TandemError(
            'E_INVALID_ARGUMENT',
            `the request is not valid HTTP (${error.code ?? 'unknown'})`,
          );
  if (socket.writable) socket.write(rawHttpErrorResponse(coded));
  socket.destroy();
  return coded;
}

/** Maps anything thrown in a route to a TandemError (fastify's own errors included). */
export function toTandemError(error: unknown): TandemError {
  if (error instanceof TandemError) return error;
  const fastifyCode = (error as { code?: unknown }).code;
  const status = (error as { statusCode?: unknown }).statusCode;
  const message = error instanceof Error ? error.message : String(error);
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new TandemError('E_PAYLOAD_TOO_LARGE', message);
  if ((error as { validation?: unknown }).validation !== undefined)
    return new TandemError('E_INVALID_ARGUMENT', message);
  if (typeof status === 'number' && status >= 400 && status < 500)
    return new TandemError('E_INVALID_ARGUMENT', message, { cause: error });
  return TandemError.from(error);
}

/** Cross-origin isolation, on every answer: it lets the demo page use onnxruntime-web's wasm threads. */
function isolate(reply: FastifyReply): void {
  reply.header('Cross-Origin-Opener-Policy', 'same-origin');
  reply.header('Cross-Origin-Embedder-Policy', 'require-corp');
  reply.header('Cross-Origin-Resource-Policy', 'cross-origin');
}

/**
 * Answers with a TandemError in the Open Inference Protocol's shape (`error` is the message, as
 * KServe and Triton clients read it), plus Tandem's code, retryability and `Retry-After`.
 */
export function sendError(
  reply: FastifyReply,
  error: TandemError,
  request?: FastifyRequest,
): FastifyReply {
  const status = ERROR_CODES[error.code].httpStatus;
  if (status >= 500 && error.code === 'E_INTERNAL')
    request?.log.error({ err: error.cause ?? error }, error.message);
  const retryAfter = retryAfterHeader(error);
  if (retryAfter !== undefined) reply.header('Retry-After', retryAfter);
  return reply.code(status).send(httpErrorBody(error));
}
