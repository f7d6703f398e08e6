// Runs the built `tandem` CLI as a real child process, the way `npm start` does, and waits for the
// URL it prints ("tandem: serving on http://…") on stderr, or for a scale-out worker's
// "tandem: worker ready" line.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** The built CLI (packages/server/dist/cli.js); tests run after `tsc -b`. */
export const CLI_PATH = fileURLToPath(
  new URL('../../../packages/server/dist/cli.js', import.meta.url),
);

/** A running `tandem` process. */
export interface CliProcess {
  readonly child: ChildProcess;
  /**
   * The URL it serves on, as printed (http://127.0.0.1:PORT); for a worker, the base URL of its
   * metrics endpoint (`--metrics-port`), or empty without one.
   */
  readonly url: string;
  /** Everything it wrote to stderr so far. */
  readonly stderr: () => string;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code and signal. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** How long the CLI may take to print its URL before the start counts as failed, in ms. */
const START_TIMEOUT_MS = 60_000;

/** Starts `node cli.js <args>` and resolves once it serves. */
export function startCli(args: readonly string[]): Promise<CliProcess> {
  return startCliUntil(args, /serving on (http:\/\/\S+)/);
}

/**
 * Starts `node cli.js worker <args>` (a scale-out worker) and resolves once it has connected to
 * Redis and takes jobs ("tandem: worker ready").
 */
export function startWorkerCli(args: readonly string[]): Promise<CliProcess> {
  return startCliUntil(
    ['worker', ...args],
    /worker ready[^\n]*?(?:, metrics (http\S+)\/metrics)?\n/,
  );
}

/** Starts the CLI and resolves once stderr matches `ready`; its first group (if any) is the URL. */
async function startCliUntil(args: readonly string[], ready: RegExp): Promise<CliProcess> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the CLI was not ready in ${START_TIMEOUT_MS} ms: ${log}`));
    }, START_TIMEOUT_MS);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      log += chunk;
      const match = ready.exec(log);
      if (match !== null) {
        clearTimeout(timer);
        resolve(match[1] ?? '');
      }
    });
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`the CLI exited (${code}) before it was ready: ${log}`));
    });
  });
  return {
    child,
    url,
    stderr: () => log,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code, endedBy] = await exited;
      return { code, signal: endedBy };
    },
  };
}
