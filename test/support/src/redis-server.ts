// Runs a real `redis-server` on a free loopback port for scale-out tests and benches, and restarts
// it on the same port (and, when persistent, the same data directory) to test reconnects.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The redis-server binary (Debian's package puts it here). */
export const REDIS_SERVER_PATH = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

/** How long redis-server may take to accept connections before the start counts as failed, in ms. */
const START_TIMEOUT_MS = 20_000;

/** Options of {@link startRedis}. */
export interface RedisOptions {
  /**
   * Keep data across a {@link RedisProcess.restart}: append-only file with fsync on every write,
   * in a temporary directory. Without it nothing is saved (`--save '' --appendonly no`).
   * @default false
   */
  readonly persistent?: boolean;
}

/** A running redis-server. */
export interface RedisProcess {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** The current process (a restart replaces it). */
  readonly child: () => ChildProcess;
  /** Stops it (SIGTERM, which flushes the append-only file) and starts it again on the same port. */
  restart(): Promise<void>;
  /** Stops it and removes its data directory. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago (the kernel picks it; redis-server binds it next). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port was assigned');
  return address.port;
}

/** Starts redis-server on a free loopback port and resolves once it accepts connections. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisProcess> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'tandem-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    // What docs/deployment.md asks of a queue's Redis: never evict keys.
    '--maxmemory-policy',
    'noeviction',
    ...(options.persistent === true
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no']),
  ];
  let child = await launch(args);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    child: () => child,
    async restart() {
      await terminate(child);
      child = await launch(args);
    },
    async stop() {
      try {
        await terminate(child);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

async function launch(args: readonly string[]): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER_PATH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not become ready in ${START_TIMEOUT_MS} ms: ${log}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      log += chunk.toString('utf8');
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}) before it was ready: ${log}`));
    });
  });
  // Keep draining its output so a chatty server never blocks on a full pipe.
  child.stdout.resume();
  child.stderr.resume();
  return child;
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}
