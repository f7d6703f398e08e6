#!/usr/bin/env node
// The `tandem` command: `tandem serve` runs the server (or, with --redis, a scale-out gateway);
// `tandem worker` runs a scale-out worker; `tandem hash-key KEY` prints the hash to put in an API
// key file. SIGTERM/SIGINT drain in-flight jobs, then exit 0; a second one ends it at once.

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { TandemError } from '@tandem/shared';
import { hashApiKey } from './api-keys.js';
import type { ServerOptions } from './create-server.js';
import { EXECUTION_PROVIDERS, type SessionSettings } from './onnx-session.js';
import type { RedisWorkerOptions } from './redis-worker.js';
import { SERVER_VERSION } from './server-version.js';

const USAGE = `tandem ${SERVER_VERSION}

Usage:
  tandem serve [options]      run the inference server (WebSocket /v1/stream, OIP v2 /v2, /metrics)
  tandem worker --redis URL [options]
                              run a scale-out worker: take jobs of one pool from Redis and run them
  tandem hash-key KEY         print the sha256 to store in an API key file

Options of serve:
  --models DIR                model repository: DIR/<name>/<version>/model.onnx (+ model.json)
  --port N                    port (default 8080; 0 picks a free one)
  --host H                    interface (default 127.0.0.1; 0.0.0.0 for all)
  --api-keys FILE             JSON key file: {"keys":[{"id","sha256","ratePerMinute"?,"maxConcurrent"?}]}
  --origins LIST              comma-separated page origins allowed to open WebSockets and
                              to read HTTP answers (CORS); * or default: any
  --idle-timeout-ms N         unload a model after N ms idle (default 300000)
  --max-queue N               jobs that may wait per model (default 256)
  --max-payload-bytes N       largest frame or request body (default 67108864)
  --memory-budget-bytes N     model bytes loaded at once before idle models are evicted
  --result-ttl-ms N           how long results wait for a reconnecting client (default 60000)
  --static DIR                serve a directory of static files at / (the demo)
  --no-catalog                do not serve the built-in PaddleOCR catalog
  --allow-key-in-hello        accept the API key in the WebSocket hello message
  --redis URL                 scale out: queue jobs in Redis (BullMQ) for \`tandem worker\`s
  --redis-prefix P            prefix of every Redis key (default tandem; same on the workers)
  --max-attempts N            times a job may fail on a worker before it fails for good (default 2)
  --key-lease-ms N            scaled out, how long a key's concurrency slot outlives a dead gateway (default 30000)
  --providers LIST            onnxruntime execution providers in order, e.g. cuda,cpu (default cpu);
                              one this machine cannot start is skipped, with a warning
  --intra-op-threads N        threads per model run (default 0: onnxruntime picks)
  --quiet                     no logs

Options of worker:
  --redis URL                 the Redis the gateways queue jobs in (required)
  --models DIR                model repository (the same as the gateways')
  --pool NAME                 the pool whose jobs to take (model.json "pool"; default "default")
  --concurrency N             jobs at once (default 1: one per device)
  --idle-exit-ms N            exit 0 after N ms without a job (scale to zero)
  --max-attempts N            times a job may start, restarts after a dead worker counted (default 2)
  --lock-ms N                 a dead worker's job is noticed N ms after its last lock renewal (default 10000)
  --stalled-interval-ms N     how often to look for jobs of dead workers (default 5000)
  --idle-timeout-ms N         unload a model after N ms idle (default 300000)
  --memory-budget-bytes N     model bytes loaded at once before idle models are evicted
  --redis-prefix P            prefix of every Redis key (default tandem)
  --no-catalog                do not serve the built-in PaddleOCR catalog
  --providers LIST            onnxruntime execution providers in order, e.g. cuda,cpu (default cpu)
  --intra-op-threads N        threads per model run (default 0: onnxruntime picks)
  --metrics-port N            serve /metrics and /health on port N (0 picks one; default: none)
  --metrics-host H            interface of that endpoint (default 127.0.0.1; 0.0.0.0 for all)
  --quiet                     no logs
`;

/** The largest TCP port. */
const MAX_PORT = 65_535;

/**
 * A flag's whole-number value in [min, max], or undefined when it is not given. Digits only:
 * `Number()` would also take `0x10`, `1e3` and ` 8`, so a typo could pick a port nobody meant.
 * Bounds are checked here, not left to the option they become, so the message names the flag.
 */
function integer(
  value: string | undefined,
  flag: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range =
      max !== Number.MAX_SAFE_INTEGER
        ? `an integer from ${min} to ${max}`
        : min === 0
          ? 'a non-negative integer'
          : `an integer of at least ${min}`;
    throw new TandemError('E_INVALID_ARGUMENT', `${flag} must be ${range} (got "${value}")`);
  }
  return n;
}

/** `--providers` and `--intra-op-threads`, checked; undefined when neither is given. */
function sessionSettings(values: {
  providers?: string | undefined;
  'intra-op-threads'?: string | undefined;
}): SessionSettings | undefined {
  const threads = integer(values['intra-op-threads'], '--intra-op-threads');
  if (values.providers === undefined && threads === undefined) return undefined;
  const settings: { -readonly [K in keyof SessionSettings]: SessionSettings[K] } = {};
  if (threads !== undefined) settings.intraOpNumThreads = threads;
  if (values.providers !== undefined) {
    settings.executionProviders = values.providers.split(',').map((name) => {
      const provider = EXECUTION_PROVIDERS.find((p) => p === name.trim().toLowerCase());
      if (provider === undefined)
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          `--providers: unknown execution provider "${name}" (known: ${EXECUTION_PROVIDERS.join(', ')})`,
        );
      return provider;
    });
  }
  return settings;
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      models: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'api-keys': { type: 'string' },
      origins: { type: 'string' },
      'idle-timeout-ms': { type: 'string' },
      'max-queue': { type: 'string' },
      'max-payload-bytes': { type: 'string' },
      'memory-budget-bytes': { type: 'string' },
      'result-ttl-ms': { type: 'string' },
      static: { type: 'string' },
      'no-catalog': { type: 'boolean' },
      'allow-key-in-hello': { type: 'boolean' },
      redis: { type: 'string' },
      'redis-prefix': { type: 'string' },
      'max-attempts': { type: 'string' },
      'key-lease-ms': { type: 'string' },
      providers: { type: 'string' },
      'intra-op-threads': { type: 'string' },
      quiet: { type: 'boolean' },
    },
    strict: true,
  });
  const options: { -readonly [K in keyof ServerOptions]: ServerOptions[K] } = {
    port: integer(values.port, '--port', 0, MAX_PORT) ?? 8080,
    host: values.host ?? '127.0.0.1',
    catalog: values['no-catalog'] !== true,
    allowKeyInHello: values['allow-key-in-hello'] === true,
    logger: values.quiet !== true,
  };
  if (values.models !== undefined) options.modelsDir = values.models;
  if (values['api-keys'] !== undefined) options.apiKeys = values['api-keys'];
  if (values.origins !== undefined)
    options.origins = values.origins
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean);
  const idle = integer(values['idle-timeout-ms'], '--idle-timeout-ms', 1);
  const maxQueue = integer(values['max-queue'], '--max-queue', 1);
  const maxPayload = integer(values['max-payload-bytes'], '--max-payload-bytes', 1);
  const budget = integer(values['memory-budget-bytes'], '--memory-budget-bytes', 1);
  const ttl = integer(values['result-ttl-ms'], '--result-ttl-ms', 1);
  if (idle !== undefined) options.idleTimeoutMs = idle;
  if (maxQueue !== undefined) options.maxQueue = maxQueue;
  if (maxPayload !== undefined) options.maxPayloadBytes = maxPayload;
  if (budget !== undefined) options.memoryBudgetBytes = budget;
  if (ttl !== undefined) options.resultTtlMs = ttl;
  if (values.redis !== undefined) options.redis = values.redis;
  if (values['redis-prefix'] !== undefined) options.redisPrefix = values['redis-prefix'];
  const attempts = integer(values['max-attempts'], '--max-attempts', 1);
  if (attempts !== undefined) options.maxAttempts = attempts;
  const lease = integer(values['key-lease-ms'], '--key-lease-ms', 1);
  if (lease !== undefined) options.keyLeaseMs = lease;
  const session = sessionSettings(values);
  if (session !== undefined) options.session = session;
  if (values.static !== undefined) {
    if (existsSync(values.static)) options.staticDir = values.static;
    else console.error(`tandem: ${values.static} does not exist; serving no static files`);
  }
  // From here on a signal closes whatever has been opened, even before the server listens: an
  // orchestrator stopping a pod that is still starting would otherwise kill it by signal.
  const shutdown = onSignals();
  // Loaded here, not up front: a worker (often started cold by an autoscaler) needs none of it.
  const { createServer } = await import('./create-server.js');
  const server = await createServer(options);
  shutdown.closeWith(() => server.close());
  if (shutdown.stopping()) return;
  let url: string;
  try {
    url = await server.listen();
  } catch (error) {
    // A listen cut short by the shutdown is no start-up failure: the close exits.
    if (shutdown.stopping()) return;
    throw error;
  }
  if (shutdown.stopping()) return;
  const models = server.dispatcher.statuses().map((m) => `${m.name}@${m.version} (${m.state})`);
  const mode = options.redis === undefined ? '' : ' as a gateway (jobs queued in Redis)';
  if (options.apiKeys === undefined && !LOOPBACK_HOSTS.has(options.host ?? '127.0.0.1')) {
    // Reachable from other machines with no key asked: fine behind a gateway that authenticates,
    // an open inference server otherwise. Said before the URL, so no one reads past it.
    console.error(
      `tandem: warning: listening on ${options.host} without --api-keys: anyone who can reach this port may run models`,
    );
  }
  console.error(`tandem: serving on ${url}${mode} — models: ${models.join(', ') || 'none'}`);
  if (options.staticDir !== undefined) {
    // Browsers give WebGPU only to secure contexts; http://localhost is one, a bare IP is not.
    const page = new URL(url);
    // (A URL keeps an IPv6 host in brackets.)
    if (page.hostname === '127.0.0.1' || page.hostname === '[::1]') page.hostname = 'localhost';
    console.error(`tandem: open ${page.href} in a browser for the page in ${options.staticDir}`);
  }
}

async function worker(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      redis: { type: 'string' },
      models: { type: 'string' },
      pool: { type: 'string' },
      concurrency: { type: 'string' },
      'idle-exit-ms': { type: 'string' },
      'max-attempts': { type: 'string' },
      'lock-ms': { type: 'string' },
      'stalled-interval-ms': { type: 'string' },
      'idle-timeout-ms': { type: 'string' },
      'memory-budget-bytes': { type: 'string' },
      'redis-prefix': { type: 'string' },
      'no-catalog': { type: 'boolean' },
      providers: { type: 'string' },
      'intra-op-threads': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      quiet: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.redis === undefined)
    throw new TandemError('E_INVALID_ARGUMENT', 'tandem worker needs --redis URL');
  const options: { -readonly [K in keyof RedisWorkerOptions]: RedisWorkerOptions[K] } = {
    redisUrl: values.redis,
    catalog: values['no-catalog'] !== true,
  };
  if (values.models !== undefined) options.modelsDir = values.models;
  if (values.pool !== undefined) options.pool = values.pool;
  if (values['redis-prefix'] !== undefined) options.redisPrefix = values['redis-prefix'];
  if (values['metrics-host'] !== undefined) options.metricsHost = values['metrics-host'];
  const session = sessionSettings(values);
  if (session !== undefined) options.session = session;
  const numbers = {
    metricsPort: integer(values['metrics-port'], '--metrics-port', 0, MAX_PORT),
    concurrency: integer(values.concurrency, '--concurrency', 1),
    idleExitMs: integer(values['idle-exit-ms'], '--idle-exit-ms', 1),
    maxAttempts: integer(values['max-attempts'], '--max-attempts', 1),
    lockDurationMs: integer(values['lock-ms'], '--lock-ms', 1),
    stalledIntervalMs: integer(values['stalled-interval-ms'], '--stalled-interval-ms', 1),
    idleTimeoutMs: integer(values['idle-timeout-ms'], '--idle-timeout-ms', 1),
    memoryBudgetBytes: integer(values['memory-budget-bytes'], '--memory-budget-bytes', 1),
  };
  for (const [key, value] of Object.entries(numbers)) {
    if (value !== undefined) Object.assign(options, { [key]: value });
  }
  if (values.quiet !== true) {
    options.log = (level, message, details) =>
      console.error(
        `tandem worker: ${level}: ${message}${details ? ` ${JSON.stringify(details)}` : ''}`,
      );
  }
  const shutdown = onSignals();
  // A worker starts only once Redis answers, however long that takes: a signal meanwhile stops
  // the wait (there is nothing to drain yet) and exits 0, as a signal while serve starts does.
  options.signal = shutdown.signal;
  const { startRedisWorker } = await import('./redis-worker.js');
  let running;
  try {
    running = await startRedisWorker(options);
  } catch (error) {
    if (shutdown.stopping()) process.exit(0);
    throw error;
  }
  shutdown.closeWith(() => running.close());
  if (shutdown.stopping()) return;
  console.error(
    `tandem: worker ready — pool ${running.pool}, name ${running.name}, concurrency ${options.concurrency ?? 1}${running.metricsUrl === undefined ? '' : `, metrics ${running.metricsUrl}/metrics`}`,
  );
  void running.stopped.then((why) => {
    if (why === 'idle') {
      console.error(`tandem: worker idle for ${options.idleExitMs} ms; exiting`);
      process.exit(0);
    }
  });
}

/** What a SIGTERM/SIGINT closes, given once it exists (see {@link onSignals}). */
interface Shutdown {
  /** Sets what to close; closes it at once when a signal came before. */
  closeWith(close: () => Promise<void>): void;
  /** Whether a signal has come: start-up stops where it is and leaves the exit to the close. */
  stopping(): boolean;
  /** Aborted by the first signal, for start-up steps that may wait without end. */
  readonly signal: AbortSignal;
}

/**
 * SIGTERM/SIGINT: finish what was accepted (`close`), then exit 0; a second signal ends the
 * process at once, by that signal (a shell shows 130 after SIGINT). Handled from the start of a
 * command, not only once it runs: a signal that comes while it starts (modules loading, a key file
 * or Redis being read) waits for what is being opened, closes it, and exits 0 as well.
 */
function onSignals(): Shutdown {
  let stopping = false;
  let close: (() => Promise<void>) | undefined;
  const aborter = new AbortController();
  const run = (): void => {
    if (close === undefined) return;
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('tandem: shutdown failed', error);
        process.exit(1);
      },
    );
  };
  const stop = (signal: 'SIGTERM' | 'SIGINT'): void => {
    if (stopping) {
      // A second Ctrl-C is a person who will not wait for the drain (up to shutdownTimeoutMs):
      // end by the signal itself. (process.exit() would tear down worker threads mid-run, and
      // onnxruntime-node aborts the process then: SIGABRT and a core dump, not an exit.)
      console.error(`tandem: second ${signal}: exiting now, without waiting for in-flight jobs`);
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      return;
    }
    stopping = true;
    console.error(
      close === undefined
        ? `tandem: ${signal} while starting: closing what is open, then exiting`
        : `tandem: ${signal}: draining in-flight jobs, then exiting`,
    );
    aborter.abort();
    run();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return {
    closeWith(closeFn) {
      close = closeFn;
      if (stopping) run();
    },
    stopping: () => stopping,
    signal: aborter.signal,
  };
}

/** `--host` values only this machine can reach (no API key warning for them). */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Flags that ask for the usage text, after a command as before one. */
const HELP_FLAGS = new Set(['--help', '-h']);

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  // `tandem serve --help` is how most people look for a command's flags: usage, not an error.
  // (For hash-key too: it would otherwise print the hash of "--help".)
  const commands = ['serve', 'worker', 'hash-key'];
  if (commands.includes(command ?? '') && rest.some((arg) => HELP_FLAGS.has(arg))) {
    console.log(USAGE);
    return;
  }
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'worker':
      return worker(rest);
    case 'hash-key': {
      const key = rest[0];
      if (key === undefined)
        throw new TandemError('E_INVALID_ARGUMENT', 'usage: tandem hash-key KEY');
      console.log(hashApiKey(key));
      return;
    }
    case '--version':
    case '-v':
      console.log(SERVER_VERSION);
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new TandemError('E_INVALID_ARGUMENT', `unknown command "${command}"\n\n${USAGE}`);
  }
}

main().catch((error: unknown) => {
  console.error(`tandem: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(2);
});
