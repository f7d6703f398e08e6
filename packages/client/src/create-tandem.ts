// createTandem: the library's front door. It resolves model manifests, asks the local and remote
// runtimes for estimates, lets the router pick a side, falls back to the other side when the first
// fails (where the placement allows), and hands back a Job that streams progress and says where
// the work ran and why.

import {
  DEFAULT_PRIORITY,
  TandemError,
  parseModelManifest,
  type ModelManifest,
  type Placement,
  type ProgressEvent,
  type TensorMap,
  type Where,
} from '@tandem/shared';
import { abortable } from './abortable.js';
import { createFileCacheStorage } from './file-cache-storage.js';
import { isNodeRuntime } from './node-builtin.js';
import { Job, type JobController } from './job.js';
import { LocalRuntime, type WorkerHandle } from './local-runtime.js';
import { ModelFileStore, type CachedModel } from './model-files.js';
import { FALLBACK_CODES, allowsFallback, decidePlacement, skippedFallbackSide } from './router.js';
import type { Fallback, RunResult, RunTimings } from './run-result.js';
import type { Runtime, RuntimeEstimate, RuntimeResult } from './runtime.js';
import { OipRemote } from './oip-remote.js';
import { WebSocketRemote, checkSubprotocolKey, type WebSocketFactory } from './websocket-remote.js';
import { checkInputs } from './tensor-inputs.js';
import { checkModelName, checkPlacement, checkRunOptions, checkWarmWhere } from './run-options.js';

/** Where a model's manifest comes from: the manifest itself, or the URL of its JSON. */
export type ModelSource = ModelManifest | string;

/** Options of {@link createTandem}. */
export interface TandemOptions {
  /** The Tandem server (`https://host`); without it everything runs locally. */
  readonly server?: string;
  /**
   * How to reach the server: Tandem's WebSocket protocol (progress, queue position, resume), or
   * the Open Inference Protocol v2 over HTTP (any Triton or KServe server; coarse progress).
   * @default 'websocket'
   */
  readonly remote?: 'websocket' | 'oip';
  /** Sent to the server as a WebSocket subprotocol, never in a URL. */
  readonly apiKey?: string;
  /**
   * Models by name. A model not listed here but known to the server uses the server's manifest
   * (`/v1/models/{name}/manifest`).
   */
  readonly models?: Readonly<Record<string, ModelSource>>;
  /** Where calls run unless a call says otherwise. @default 'auto' */
  readonly placement?: Placement;
  /** Count a software WebGPU adapter (SwiftShader) as a GPU. @default false */
  readonly allowSoftwareGpu?: boolean;
  /** Where onnxruntime-web's .wasm files are served from. */
  readonly wasmPaths?: string;
  /** wasm threads in the local worker; 0 picks by cross-origin isolation and cores. @default 0 */
  readonly numThreads?: number;
  /**
   * Cache Storage bucket for model files and onnxruntime-web's runtime .wasm (one per
   * onnxruntime-web version), so a second visit downloads neither. @default 'tandem-models-v1'
   */
  readonly cacheName?: string;
  /**
   * Node only: keep model files in this folder (a subfolder per `cacheName`), so a restarted
   * process reads them from disk instead of downloading them again. Without it Node keeps them in
   * memory for the life of the process. In a browser, Cache Storage is used and this is ignored.
   */
  readonly cacheDirectory?: string;
  /** Resolves relative URLs (manifests, model files). @default the page URL, else `server` */
  readonly baseUrl?: string;
  /** How long the first connection to the server may take before a call falls back, in ms. @default 3000 */
  readonly connectTimeoutMs?: number;
  /** Starts the local worker (tests, custom bundling). */
  readonly createWorker?: () => Promise<WorkerHandle>;
  /**
   * Creates WebSockets. A socket that caps incoming messages fails a job whose result is larger
   * with `E_PAYLOAD_TOO_LARGE` (the `ws` package caps at 100 MiB unless given `maxPayload: 0`).
   * @default the global WebSocket, or the `ws` package in Node (uncapped, as browsers)
   */
  readonly createSocket?: WebSocketFactory;
  /**
   * Keep these server models warm while the page is visible: a `warm` every `intervalMs` (the
   * server's idle clock restarts), none while the page is hidden (the server may scale to zero).
   * Opt-in: warm servers cost money. An `intervalMs` outside 1 to 2^31 - 1 ms (default 60000)
   * is refused with `E_INVALID_ARGUMENT`.
   */
  readonly keepWarm?: { readonly models: readonly string[]; readonly intervalMs?: number };
  /**
   * When the server ran a model that could run on this device (it has a file and this device a
   * backend for it), download the file in the background so later calls can run locally.
   * Opt-in: it spends the user's bandwidth. @default false
   */
  readonly prefetch?: boolean;
}

/** Options of one call. */
export interface RunOptions {
  /** Overrides the client's placement for this call. */
  readonly placement?: Placement;
  /** Cancels the call (download, compile, local run, or remote job). */
  readonly signal?: AbortSignal;
  /**
   * An integer from 0 to 10, higher first in the server queue (anything else rejects the call
   * with `E_INVALID_ARGUMENT`, as an unknown placement or an empty output name does). @default 5
   */
  readonly priority?: number;
  /**
   * The server must finish within this many ms (0 or more) of receiving the job; a job that
   * reaches the server as a fallback from this device gets what is left of it since `run()`.
   */
  readonly deadlineMs?: number;
  /** Only these outputs. */
  readonly outputs?: readonly string[];
  /**
   * Called with every progress event (the Job is also an async iterable of them). A throw fails
   * the call with `E_INTERNAL` (the thrown value as its cause) and stops its work, as a cancel
   * does; it is not called again.
   */
  readonly onProgress?: (event: ProgressEvent) => void;
}

/** A Tandem client. */
export interface Tandem {
  /** Runs a model where it runs best; see {@link RunOptions}. */
  run(model: string, inputs: TensorMap, options?: RunOptions): Job;
  /** Wakes a model up: the server starts loading it, and/or this device downloads and compiles it. */
  warm(model: string, options?: { where?: Where | 'both'; signal?: AbortSignal }): Promise<void>;
  /** Model files stored on this device. */
  readonly cache: {
    /**
     * The stored models: one entry per model name whose files are stored (names served from the
     * same files share them, and each is listed with their bytes).
     */
    list(): Promise<CachedModel[]>;
    /**
     * Removes the model from this device (returns how many files went) and lets go of its
     * compiled local session, so the next local run compiles it again (`cold`). Its files go
     * unless another listed model name is served from the same files: those keep them (0 files
     * go) and run on without a download; the last name removes them. A run in flight on the
     * session finishes first. With `prefetch`, the next remote run of the model fetches it in
     * the background again.
     */
    delete(model: string): Promise<number>;
    estimate(): Promise<{ modelBytes: number; usageBytes?: number; quotaBytes?: number }>;
  };
  /**
   * Cancels the jobs in flight (`E_CANCELLED`, no fallback), then closes the connection and the
   * worker. Later calls reject with `E_CANCELLED`.
   */
  close(): Promise<void>;
}

let jobCounter = 0;

/**
 * A job's id: the server resumes and cancels jobs by id (under one API key, or for any caller on
 * a server without keys), so it must be unguessable and never clash with another client's. A
 * random UUID; where crypto.randomUUID is missing (a page that is no secure context) one built from
 * crypto.getRandomValues, which every context has.
 */
function newJobId(): string {
  const crypto = (
    globalThis as {
      crypto?: { randomUUID?: () => string; getRandomValues?: (array: Uint8Array) => Uint8Array };
    }
  ).crypto;
  const uuid = crypto?.randomUUID?.();
  if (uuid !== undefined) return uuid;
  if (crypto?.getRandomValues !== undefined) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    // RFC 9562 version 4: the version nibble, then the variant bits.
    bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
    bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  // No Web Crypto at all (a very old runtime): unique in this page, not unguessable.
  return `job-${Date.now().toString(36)}-${(jobCounter++).toString(36)}`;
}

/** Creates a Tandem client. */
export function createTandem(options: TandemOptions = {}): Tandem {
  checkKeepWarm(options.keepWarm);
  checkPlacement(options.placement);
  const baseUrl =
    options.baseUrl ??
    (globalThis as { location?: { href: string } }).location?.href ??
    options.server;
  // The key goes to the server's own URLs only: a manifest may point at files on another host.
  const authorization =
    options.apiKey === undefined || options.server === undefined
      ? undefined
      : serverAuthorization(options.server, options.apiKey);
  const files = new ModelFileStore({
    ...(authorization === undefined ? {} : { authorization }),
    ...(options.cacheName === undefined ? {} : { cacheName: options.cacheName }),
    ...(options.cacheDirectory === undefined || browserCaches() !== undefined
      ? {}
      : { caches: createFileCacheStorage(options.cacheDirectory) }),
    ...(baseUrl === undefined ? {} : { baseUrl }),
  });
  const local = new LocalRuntime({
    files,
    allowSoftwareGpu: options.allowSoftwareGpu ?? false,
    ...(options.wasmPaths === undefined ? {} : { wasmPaths: options.wasmPaths }),
    ...(options.numThreads === undefined ? {} : { numThreads: options.numThreads }),
    ...(options.createWorker === undefined ? {} : { createWorker: options.createWorker }),
  });
  // A key the WebSocket cannot carry is the app's mistake: said now, not as every call's E_NETWORK.
  if (options.apiKey !== undefined && options.server !== undefined && options.remote !== 'oip')
    checkSubprotocolKey(options.apiKey);
  let remote: Promise<Runtime> | undefined;
  const remoteRuntime = (): Promise<Runtime> | undefined => {
    const server = options.server;
    if (server === undefined) return undefined;
    if (options.remote === 'oip') {
      remote ??= Promise.resolve(
        new OipRemote({
          url: server,
          connectTimeoutMs: options.connectTimeoutMs ?? 3000,
          ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
        }),
      );
      return remote;
    }
    remote ??= socketFactory(options.createSocket).then(
      (createSocket) =>
        new WebSocketRemote({
          url: server,
          createSocket,
          connectTimeoutMs: options.connectTimeoutMs ?? 3000,
          ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
        }),
    );
    return remote;
  };
  const manifests = new Map<string, Promise<ModelManifest>>();

  const manifestOf = (name: string): Promise<ModelManifest> => {
    let pending = manifests.get(name);
    if (pending === undefined) {
      pending = resolveManifest(
        name,
        options.models?.[name],
        options.server,
        baseUrl,
        authorization,
      );
      manifests.set(name, pending);
      pending.catch(() => manifests.delete(name));
    }
    return pending;
  };

  const unavailable = (reason: string): RuntimeEstimate => ({ available: false, reason });
  const prefetched = new Set<string>();
  /** Fetches a model's files for next time, once per model, never failing a call. */
  const prefetch = (manifest: ModelManifest, local: RuntimeEstimate): void => {
    if (options.prefetch !== true || !local.available || prefetched.has(manifest.name)) return;
    prefetched.add(manifest.name);
    // Only what is missing: a get of stored files would read them all (gigabytes, for a large
    // model) into memory only to drop them.
    void files
      .bytesToDownload(manifest)
      .then((missing) => (missing > 0 ? files.get(manifest) : undefined))
      .catch(() => prefetched.delete(manifest.name));
  };

  /**
   * Starts the local worker and its probe (and, when stored, onnxruntime-web's runtime) while the
   * model's manifest is fetched, for calls that will run here; the call itself reports failures.
   */
  const startLocal = (): void => {
    local.backendInfo().catch(() => undefined);
  };

  /** Jobs not settled yet: close() cancels them. */
  const live = new Set<Job>();
  let closed = false;
  const throwIfClosed = (): void => {
    if (closed) throw new TandemError('E_CANCELLED', 'the client was closed');
  };

  const execute = async (
    model: string,
    inputs: TensorMap,
    runOptions: RunOptions,
    controller: JobController,
    jobId: string,
    listener: ProgressListener,
  ): Promise<RunResult> => {
    throwIfClosed();
    // Bad inputs are the caller's to fix, on either side: refused here, before any fallback.
    checkModelName(model);
    checkInputs(inputs);
    checkRunOptions(runOptions);
    const started = performance.now();
    const placement = runOptions.placement ?? options.placement ?? 'auto';
    // Only when the call means to run here: under 'auto' the model may have no local file, and
    // a worker and a GPU adapter would start for nothing.
    if (placement === 'local-only' || placement === 'prefer-local') startLocal();
    // The manifest fetch and the estimates (a connection, a worker's start) are shared with other
    // calls and go on; a cancel ends this call's wait for them at once (a server that never
    // answers would otherwise hold a cancelled call until its time limit, or for ever).
    const { signal } = listener;
    const cancelled = (): TandemError => cancelledBy(signal, jobId);
    const manifest = await abortable(manifestOf(model), signal, cancelled);
    const remoteRt = await abortable(
      remoteRuntime() ?? Promise.resolve(undefined),
      signal,
      cancelled,
    );
    // The caller's configuration, not a device without a backend (E_NO_BACKEND said so before).
    if (placement === 'remote-only' && remoteRt === undefined) {
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `placement remote-only needs a server: pass createTandem's server option to run "${model}" remotely`,
      );
    }
    const [localEstimate, remoteEstimate] = await abortable(
      Promise.all([
        placement === 'remote-only'
          ? unavailable('placement remote-only')
          : local.estimate(manifest),
        placement === 'local-only'
          ? unavailable('placement local-only')
          : remoteRt === undefined
            ? unavailable('no server configured')
            : remoteRt.estimate(manifest),
      ]),
      signal,
      cancelled,
    );
    const decision = decidePlacement(placement, manifest, localEstimate, remoteEstimate);
    let best = 0;
    /**
     * Where the side being tried starts on the job's bar: 0 for the first; for a fallback, where
     * the failed side left it. The fallback's own progress then moves the bar over what is left,
     * instead of going unseen below that mark (a server's whole cold start showed as a frozen bar).
     */
    let base = 0;
    const forward = (event: ProgressEvent): void => {
      // One sequence per job, whichever side reports: the fraction never goes backwards.
      best = Math.max(best, Math.min(base + (1 - base) * event.fraction, 0.99));
      const clamped: ProgressEvent = {
        ...event,
        jobId,
        fraction: best,
        elapsedMs: performance.now() - started,
      };
      listener.notify(clamped);
      controller.progress(clamped);
    };
    /** A side this call tried first that failed: the job then fell back from it. */
    let failedFirst: Fallback | undefined;
    /** That side's error, as the cause of a fallback that fails too. */
    let firstError: TandemError | undefined;
    let lastError: TandemError | undefined;
    for (const side of decision.order) {
      const runtime: Runtime | undefined = side === 'local' ? local : remoteRt;
      if (runtime === undefined) continue;
      base = best;
      try {
        const deadlineMs = fallbackDeadlineMs(
          runOptions.deadlineMs,
          // A local run has no deadline (docs/api.md): only a server fallback is bounded by it.
          side === 'remote' && side !== decision.order[0],
          performance.now() - started,
        );
        const result: RuntimeResult = await runtime.run(manifest, inputs, {
          jobId: side === decision.order[0] ? jobId : `${jobId}-${side}`,
          priority: runOptions.priority ?? DEFAULT_PRIORITY,
          signal,
          onProgress: forward,
          ...(deadlineMs === undefined ? {} : { deadlineMs }),
          ...(runOptions.outputs === undefined ? {} : { outputs: runOptions.outputs }),
        });
        const totalMs = performance.now() - started;
        const timings: RunTimings = {
          downloadMs: result.timings.downloadMs ?? 0,
          compileMs: result.timings.compileMs ?? 0,
          queueMs: result.timings.queueMs ?? 0,
          loadMs: result.timings.loadMs ?? 0,
          runMs: result.timings.runMs ?? 0,
          totalMs,
        };
        if (side === 'remote') prefetch(manifest, localEstimate);
        const fallback =
          failedFirst ?? skippedFallback(placement, side, localEstimate, remoteEstimate);
        const done: ProgressEvent = {
          jobId,
          model,
          where: side,
          stage: 'done',
          fraction: 1,
          elapsedMs: totalMs,
          etaMs: 0,
        };
        listener.notify(done);
        if (listener.failure !== undefined) throw listener.failure;
        controller.progress(done);
        return {
          outputs: result.outputs,
          placement: side,
          backend: result.backend,
          reason: decision.reason,
          cold: result.cold,
          timings,
          ...(fallback === undefined ? {} : { fallback }),
        };
      } catch (error) {
        // The caller's progress handler threw: the call fails with that, on neither side again.
        if (listener.failure !== undefined) throw listener.failure;
        const coded = TandemError.from(error);
        if (coded.code === 'E_CANCELLED') throw coded;
        // The fallback failed too: one error naming both, so the first failure (often the one
        // that explains the other) is not lost.
        lastError = firstError === undefined ? coded : afterFallback(coded, side, firstError);
        if (!allowsFallback(placement) || !FALLBACK_CODES.has(coded.code)) throw lastError;
        failedFirst = { from: side, code: coded.code, message: coded.message };
        firstError = coded;
      }
    }
    throw (
      lastError ?? new TandemError('E_NO_BACKEND', `no side can run "${model}": ${decision.reason}`)
    );
  };

  const stopKeepWarm = startKeepWarm(options.keepWarm, (model) => {
    const pending = remoteRuntime();
    if (pending === undefined) return;
    void Promise.all([pending, manifestOf(model)])
      .then(([runtime, manifest]) => runtime.warm(manifest))
      .catch(() => undefined); // a failed ping is retried at the next interval
  });

  return {
    run(model, inputs, runOptions = {}) {
      const jobId = newJobId();
      const started = performance.now();
      const job: Job = new Job(
        jobId,
        model,
        (controller) => {
          const listener = progressListener(runOptions.onProgress, controller.signal);
          execute(model, inputs, runOptions, controller, jobId, listener).then(
            (result) => {
              live.delete(job);
              controller.resolve(result);
            },
            (error: unknown) => {
              live.delete(job);
              const coded = TandemError.from(error);
              // The sequence ends where it stood: same side, same fraction (never backwards).
              const last = job.lastProgress;
              const end: ProgressEvent = {
                jobId,
                model,
                where: last?.where ?? 'local',
                stage: coded.code === 'E_CANCELLED' ? 'cancelled' : 'error',
                fraction: last?.fraction ?? 0,
                elapsedMs: performance.now() - started,
              };
              controller.progress(end);
              listener.notify(end);
              controller.reject(coded);
            },
          );
        },
        runOptions.signal,
      );
      live.add(job);
      return job;
    },
    async warm(model, warmOptions = {}) {
      throwIfClosed();
      checkModelName(model);
      checkWarmWhere(warmOptions.where);
      const where = warmOptions.where ?? 'remote';
      if (where !== 'remote') startLocal();
      const manifest = await manifestOf(model);
      const tasks: Promise<void>[] = [];
      const remoteRt = await remoteRuntime();
      if ((where === 'remote' || where === 'both') && remoteRt !== undefined)
        tasks.push(remoteRt.warm(manifest));
      if (where === 'local' || where === 'both')
        tasks.push(local.warm(manifest, warmOptions.signal));
      await Promise.all(tasks);
    },
    cache: {
      list: () => files.list(),
      delete: async (model) => {
        // Else a model prefetched once would never be prefetched again after this delete.
        prefetched.delete(model);
        const removed = await files.delete(model);
        // Else the worker's session would keep running the model as if it were still stored.
        await local.release(model);
        return removed;
      },
      estimate: () => files.estimate(),
    },
    async close() {
      closed = true;
      stopKeepWarm();
      // Cancelled first, so a remote job is dropped by the server and nothing falls back to the
      // other side while both close.
      for (const job of live) job.cancel();
      await local.close();
      if (remote !== undefined) await (await remote).close();
    },
  };
}

/**
 * The error of a fallback that failed after the side tried first had: the fallback's code, a
 * message naming both failures, and the first one as its cause.
 */
function afterFallback(error: TandemError, side: Where, first: TandemError): TandemError {
  const from = side === 'local' ? 'remote' : 'local';
  return new TandemError(
    error.code,
    `${error.message} (${side}, after ${from} failed with ${first.code}: ${first.message})`,
    {
      retryable: error.retryable,
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      cause: first,
    },
  );
}

/**
 * The deadline a side gets: the call's, and for a fallback what is left of it. The caller's
 * budget counts from run(): restarted at the fallback, a server would answer as late as the first
 * side's failure plus the whole deadline. None left: E_DEADLINE_EXCEEDED, and nothing is sent.
 */
function fallbackDeadlineMs(
  deadlineMs: number | undefined,
  isFallback: boolean,
  elapsedMs: number,
): number | undefined {
  if (deadlineMs === undefined || !isFallback) return deadlineMs;
  const leftMs = Math.floor(deadlineMs - elapsedMs);
  if (leftMs <= 0)
    throw new TandemError(
      'E_DEADLINE_EXCEEDED',
      `the deadline of ${deadlineMs} ms passed before the fallback could start (${Math.round(elapsedMs)} ms since run())`,
    );
  return leftMs;
}

/** A call's progress handler, kept from breaking the call's machinery (see progressListener). */
interface ProgressListener {
  /** Tells the caller's onProgress; never throws. */
  notify(event: ProgressEvent): void;
  /** Set once onProgress has thrown: E_INTERNAL, with the thrown value as its cause. */
  readonly failure: TandemError | undefined;
  /** Aborted when the job is cancelled or onProgress throws: what the call's work stops on. */
  readonly signal: AbortSignal;
}

/**
 * Wraps a call's onProgress. Called from inside a runtime (a socket's message handler, a worker's
 * reply), a throw would escape there (in Node, an uncaught exception in the socket's handler) or
 * skip the code after it: the job never settled. A throw fails the call instead, as a cancel
 * stops it, and the handler is not called again; nor is it after the event that ends the call.
 */
function progressListener(
  onProgress: ((event: ProgressEvent) => void) | undefined,
  jobSignal: AbortSignal,
): ProgressListener {
  const stop = new AbortController();
  if (jobSignal.aborted) stop.abort(jobSignal.reason);
  else jobSignal.addEventListener('abort', () => stop.abort(jobSignal.reason), { once: true });
  let failure: TandemError | undefined;
  /**
   * Set by the event that ends the call: work the call left behind (a compile goes on in the
   * worker, reporting onnxruntime-web's runtime download) must not tell a caller that was done.
   */
  let ended = false;
  return {
    notify(event) {
      if (ended || failure !== undefined || onProgress === undefined) return;
      ended = event.stage === 'done' || event.stage === 'error' || event.stage === 'cancelled';
      try {
        onProgress(event);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failure = new TandemError('E_INTERNAL', `onProgress threw: ${message}`, { cause: error });
        stop.abort(failure);
      }
    },
    get failure() {
      return failure;
    },
    signal: stop.signal,
  };
}

/** The error a cancelled call ends with: the signal's own TandemError, else E_CANCELLED. */
function cancelledBy(signal: AbortSignal, jobId: string): TandemError {
  return signal.reason instanceof TandemError
    ? signal.reason
    : new TandemError('E_CANCELLED', `job ${jobId} was cancelled`);
}

/**
 * The fallback from a side the call skipped because its estimate failed (an unreachable server),
 * where the placement would have tried that side before `ran` (see {@link skippedFallbackSide}).
 */
function skippedFallback(
  placement: Placement,
  ran: Where,
  local: RuntimeEstimate,
  remote: RuntimeEstimate,
): Fallback | undefined {
  const from = skippedFallbackSide(placement, ran, local, remote);
  if (from === undefined) return undefined;
  const estimate = from === 'local' ? local : remote;
  return estimate.code === undefined
    ? undefined
    : { from, code: estimate.code, message: estimate.reason };
}

/** A model's manifest: given inline, fetched from a URL, or the server's. */
async function resolveManifest(
  name: string,
  source: ModelSource | undefined,
  server: string | undefined,
  baseUrl: string | undefined,
  authorization: ((url: string) => string | undefined) | undefined,
): Promise<ModelManifest> {
  if (source !== undefined && typeof source !== 'string')
    return parseModelManifest(source, `models.${name}`);
  const url =
    source ??
    (server === undefined
      ? undefined
      : `${server.replace(/\/$/, '')}/v1/models/${encodeURIComponent(name)}/manifest`);
  if (url === undefined)
    throw new TandemError(
      'E_MODEL_NOT_FOUND',
      `no manifest for model "${name}" and no server to ask`,
    );
  const target = new URL(url, baseUrl);
  const header = authorization?.(target.href);
  let response: Response;
  try {
    response = await fetch(
      target,
      header === undefined ? {} : { headers: { authorization: header } },
    );
  } catch (error) {
    throw new TandemError('E_NETWORK', `could not fetch the manifest of "${name}" from ${url}`, {
      cause: error,
    });
  }
  if (response.status === 404)
    throw new TandemError('E_MODEL_NOT_FOUND', `no model "${name}" at ${url}`);
  if (response.status === 401)
    throw new TandemError(
      'E_UNAUTHORIZED',
      `fetching the manifest of "${name}" answered 401: ${
        header === undefined ? 'the server wants an apiKey' : 'the server refused the apiKey'
      }`,
    );
  if (!response.ok)
    throw new TandemError(
      'E_NETWORK',
      `fetching the manifest of "${name}" answered ${response.status}`,
    );
  const manifest = parseModelManifest(await response.json(), `manifest of ${name}`);
  // File URLs in a server's manifest are relative to the server, which is often another origin
  // than the page's: every file's, the external data's too.
  if (manifest.url === undefined) return manifest;
  const base = new URL(url, baseUrl);
  const absolute = (relative: string): string => new URL(relative, base).toString();
  return {
    ...manifest,
    url: absolute(manifest.url),
    ...(manifest.externalData === undefined
      ? {}
      : {
          externalData: manifest.externalData.map((file) => ({ ...file, url: absolute(file.url) })),
        }),
  };
}

/** The WebSocket constructor: the platform's, or `ws` in Node (imported only there). */
async function socketFactory(given: WebSocketFactory | undefined): Promise<WebSocketFactory> {
  if (given !== undefined) return given;
  const Native = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => unknown })
    .WebSocket;
  // Node 22 and later have a global WebSocket too; Node still uses ws, for one tested path with
  // the fragments and uncapped results below.
  if (Native !== undefined && !isNodeRuntime())
    return (url, protocols) => new Native(url, protocols) as ReturnType<WebSocketFactory>;
  const { WebSocket: NodeWebSocket } = await import('ws');
  return (url, protocols) => {
    // ws caps incoming messages at 100 MiB unless told otherwise (0 turns the check off), and at
    // 262,144 socket reads buffered for one frame (a result of a few hundred MB read in small
    // pieces off a slow link). The server sends a result of any size and a browser's socket takes
    // it, so this one does too: capped, a larger result would fail its job.
    const socket = new NodeWebSocket(url, protocols, { maxPayload: 0, maxBufferedChunks: 0 });
    // ws can send one message as several fragments: large inputs go out without a frame copy.
    const sendFragments = (parts: readonly Uint8Array[]): void => {
      const last = parts.length - 1;
      parts.forEach((part, index) => socket.send(part, { binary: true, fin: index === last }));
    };
    // ...and hand a message over as its fragments: a large output is read where it arrived.
    return Object.assign(socket, {
      sendFragments,
      readsFragments: true,
    }) as unknown as ReturnType<WebSocketFactory>;
  };
}

/** Longest delay setInterval takes, in ms: past it, timers fire after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Refuses a keepWarm interval that is no positive number of ms a timer takes: 0, a negative
 * number, NaN, or anything past 2^31 - 1 (Infinity included) makes setInterval fire every
 * millisecond or so, a warm each time, for as long as the page is open.
 */
function checkKeepWarm(keepWarm: TandemOptions['keepWarm']): void {
  const intervalMs = keepWarm?.intervalMs;
  if (intervalMs === undefined) return;
  if (!Number.isFinite(intervalMs) || intervalMs < 1 || intervalMs > MAX_TIMER_MS) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `keepWarm.intervalMs must be from 1 to ${MAX_TIMER_MS} ms, not ${intervalMs}`,
    );
  }
}

/** Pings `warm` for each model every interval while the page is visible; returns the stop. */
function startKeepWarm(
  keepWarm: TandemOptions['keepWarm'],
  warm: (model: string) => void,
): () => void {
  if (keepWarm === undefined || keepWarm.models.length === 0) return () => undefined;
  const doc = (globalThis as { document?: Document }).document;
  const visible = (): boolean => doc === undefined || doc.visibilityState === 'visible';
  const ping = (): void => {
    if (visible()) for (const model of keepWarm.models) warm(model);
  };
  ping();
  const timer = setInterval(ping, keepWarm.intervalMs ?? 60_000);
  // Back on screen: wake the models at once rather than at the next tick.
  const onVisibility = (): void => {
    if (visible()) ping();
  };
  doc?.addEventListener('visibilitychange', onVisibility);
  return () => {
    clearInterval(timer);
    doc?.removeEventListener('visibilitychange', onVisibility);
  };
}

/** The browser's Cache Storage, where there is one (never in Node). */
function browserCaches(): unknown {
  return (globalThis as { caches?: unknown }).caches;
}

/**
 * `Authorization: Bearer <apiKey>` for URLs on the server's origin, nothing for any other: the
 * key is the server's, and a manifest may list files on a CDN.
 */
function serverAuthorization(server: string, apiKey: string): (url: string) => string | undefined {
  let origin: string;
  try {
    // A ws:// or wss:// server URL names the same host as its http(s) routes.
    origin = new URL(server.replace(/^ws(s?):/i, 'http$1:')).origin;
  } catch {
    return () => undefined;
  }
  return (url) => {
    try {
      return new URL(url).origin === origin ? `Bearer ${apiKey}` : undefined;
    } catch {
      return undefined;
    }
  };
}
