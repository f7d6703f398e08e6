// Integration tests of the `tandem serve` command as a real child process: it prints its URL,
// serves over WebSocket, and on SIGTERM refuses new work, lets every accepted job finish and
// deliver its result, closes connections (1001), then exits 0; --host, --api-keys and --origins
// reach the server, and --providers reaches onnxruntime; a SIGTERM while it starts exits 0 too,
// as it does for a `tandem worker` still waiting for an unreachable Redis; a second Ctrl-C exits
// at once.
// Runs the build (dist/cli.js).

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listSupportedBackends } from 'onnxruntime-node';
import { afterEach, describe, expect, it } from 'vitest';
import { hashApiKey } from '@tandem/server';
import {
  CLI_PATH,
  buildTinyModel,
  startCli,
  connectClient,
  refusedUpgrade,
  writeModelFile,
  type JobLog,
} from '@tandem/test-support';
import { errorCodeOf, expectSameTensors, resultOf, slowInput, writeSlowModel } from './fixtures.js';

/** The tiny model's input and what it answers (y = 2x + 1). */
const TINY_INPUT = {
  x: { dtype: 'float32', dims: [3], data: new Float32Array([1, -2, 0.5]) },
} as const;
const TINY_OUTPUT = [3, -3, 2];

/** Rows per job: enough that four jobs keep the server busy well past the probes below. */
const ROWS = 512;

/**
 * A loopback address other than the default (127.0.0.1) that this machine can listen on: ::1
 * where there is IPv6 loopback (macOS has no 127.0.0.2 on lo0), else 127.0.0.2 (Linux routes all
 * of 127/8 to lo). A server printing and answering on it proves --host took effect.
 */
async function otherLoopback(): Promise<string> {
  for (const host of ['::1', '127.0.0.2']) {
    const probe = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(0, host, () => resolve(true));
    });
    if (!bound) continue;
    probe.close();
    await once(probe, 'close');
    return host;
  }
  throw new Error('neither ::1 nor 127.0.0.2 can be listened on: no second loopback address');
}

describe('cli: tandem serve', () => {
  let child: ChildProcess | undefined;
  let modelsDir: string | undefined;

  afterEach(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    if (modelsDir !== undefined) await rm(modelsDir, { recursive: true, force: true });
  });

  it('drains in-flight jobs on SIGTERM: every job gets its result, then exit code 0', async () => {
    expect(existsSync(CLI_PATH), 'build first: npx tsc -b').toBe(true);
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cli-test-'));
    await writeSlowModel(modelsDir);
    await writeModelFile(modelsDir, 'tiny', 1, buildTinyModel().bytes);
    const cli = await startCli([
      'serve',
      '--port',
      '0',
      '--models',
      modelsDir,
      '--no-catalog',
      '--quiet',
    ]);
    child = cli.child;
    const url = cli.url;

    const client = await connectClient(url);
    for (const model of ['slow', 'tiny']) {
      const warm = await fetch(`${url}/v1/models/${model}/warm?wait=true`, { method: 'POST' });
      expect(warm.status).toBe(200);
    }
    const ids = ['t-1', 't-2', 't-3', 't-4'];
    ids.forEach((id, index) => {
      client.send({ type: 'infer', id, model: 'slow', inputs: slowInput(ROWS, index) });
    });
    // Each job reports progress from submit(): once the last one has, all are accepted.
    await client.nextOf('progress', (m) => m.event.jobId === 't-4');
    const logs = Promise.all(ids.map((id) => client.collectJob(id)));

    const exited = cli.stop('SIGTERM');
    // Draining starts a moment after the signal, with no message for it: probe with tiny jobs
    // (bounded) until new work is refused.
    const tinyInput = { x: { dtype: 'float32', dims: [1], data: new Float32Array([1]) } } as const;
    let probe: JobLog | undefined;
    for (let i = 0; i < 500; i++) {
      probe = await client.infer({ id: `probe-${i}`, model: 'tiny', inputs: tinyInput });
      if (probe.error !== undefined) break;
    }
    expect(errorCodeOf(probe!)).toBe('E_SHUTTING_DOWN');
    expect(probe!.error?.retryable).toBe(true);
    // Still draining: not ready, and new WebSockets are refused before the upgrade.
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(503);
    expect((await refusedUpgrade(url)).status).toBe(503);

    for (const [index, log] of (await logs).entries()) {
      // The slow model computes y = x exactly.
      expectSameTensors(resultOf(log).outputs, { y: slowInput(ROWS, index).x! });
    }
    expect((await client.closed).code).toBe(1001);
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(cli.stderr()).toContain('SIGTERM');
  });

  it('exits 0 on a SIGTERM that comes while it starts, before it listens', async () => {
    expect(existsSync(CLI_PATH), 'build first: npx tsc -b').toBe(true);
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cli-test-'));
    // The key file is a named pipe: the CLI, starting, blocks reading it until this test writes
    // it, so the signal is certain to come before the server listens, however fast the machine.
    const keyFile = join(modelsDir, 'keys.fifo');
    execFileSync('mkfifo', [keyFile]);
    const started = spawn(
      process.execPath,
      [CLI_PATH, 'serve', '--port', '0', '--api-keys', keyFile, '--no-catalog', '--quiet'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = started;
    const exited = once(started, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let stderr = '';
    started.stderr.setEncoding('utf8');
    started.stderr.on('data', (chunk: string) => (stderr += chunk));
    // Opening a pipe for writing waits for its reader: once open, the CLI is reading the file.
    const writer = await open(keyFile, 'w');
    started.kill('SIGTERM');
    const keys = JSON.stringify({ keys: [{ id: 'alice', sha256: hashApiKey('alice-key') }] });
    // A CLI killed by the signal has no reader left on the pipe (EPIPE): the exit says so below.
    await writer.writeFile(keys).catch(() => undefined);
    await writer.close().catch(() => undefined);
    const [code, signal] = await exited;
    // The signal came before the listen; whether the CLI saw it before or after the listen
    // completed (the rest of the start may need no turn of the event loop) is its own affair.
    expect({ code, signal, stderr }).toMatchObject({ code: 0, signal: null });
    expect(stderr).toContain('tandem: SIGTERM');
  });

  it('ends at once, by the signal, on a second Ctrl-C while the first drains', async () => {
    expect(existsSync(CLI_PATH), 'build first: npx tsc -b').toBe(true);
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cli-test-'));
    await writeSlowModel(modelsDir);
    const cli = await startCli(['serve', '--port', '0', '--models', modelsDir, '--no-catalog']);
    child = cli.child;
    const client = await connectClient(cli.url);
    // Sixteen times four thousand rows: seconds of work for the drain (shutdownTimeoutMs 30 s)
    // against the moment between the two signals.
    const ids = Array.from({ length: 16 }, (_, i) => `big-${i}`);
    for (const [index, id] of ids.entries())
      client.send({ type: 'infer', id, model: 'slow', inputs: slowInput(4096, index) });
    await client.nextOf('progress', (m) => m.event.jobId === ids.at(-1));
    const draining = new Promise<void>((resolve) => {
      cli.child.stderr!.on('data', () => {
        if (cli.stderr().includes('SIGINT: draining')) resolve();
      });
    });
    const exited = cli.stop('SIGINT');
    await draining;
    cli.child.kill('SIGINT');
    expect(await exited).toEqual({ code: null, signal: 'SIGINT' });
    expect(cli.stderr()).toContain('tandem: second SIGINT');
  });

  it('listens on --host, takes keys from --api-keys FILE and allows only the --origins LIST', async () => {
    expect(existsSync(CLI_PATH), 'build first: npx tsc -b').toBe(true);
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cli-test-'));
    const models = join(modelsDir, 'models');
    await mkdir(models);
    await writeModelFile(models, 'tiny', 1, buildTinyModel().bytes);
    const KEY = 'tk_test_cli';
    const keyFile = join(modelsDir, 'keys.json');
    await writeFile(keyFile, JSON.stringify({ keys: [{ id: 'cli', sha256: hashApiKey(KEY) }] }));
    const host = await otherLoopback();
    // Beside the key file, not around it: a key file the static folder would serve is refused.
    const site = join(modelsDir, 'site');
    await mkdir(site);
    const cli = await startCli([
      'serve',
      '--port',
      '0',
      '--host',
      host,
      '--models',
      models,
      '--api-keys',
      keyFile,
      '--origins',
      'https://one.example, https://app.example',
      '--static',
      site,
      '--no-catalog',
      '--quiet',
    ]);
    child = cli.child;
    const url = cli.url;
    // Printed from the address the server bound (an IPv6 one in brackets); everything below
    // reaches it there. Had the flag been ignored, this would read 127.0.0.1.
    const printed = host.includes(':') ? `[${host}]` : host;
    expect(new URL(url).hostname).toBe(printed);

    // No key: 401 over HTTP and before the upgrade.
    const noKey = await fetch(`${url}/v1/models`);
    expect([noKey.status, ((await noKey.json()) as { code: string }).code]).toEqual([
      401,
      'E_UNAUTHORIZED',
    ]);
    const refusedKey = await refusedUpgrade(url);
    expect([refusedKey.status, refusedKey.code]).toEqual([401, 'E_UNAUTHORIZED']);
    // A page origin off the list: 403 before the upgrade, even with a good key.
    const foreign = await refusedUpgrade(url, {
      origin: 'https://evil.example',
      protocols: ['tandem.v1', `tandem.key.${KEY}`],
    });
    expect([foreign.status, foreign.code]).toEqual([403, 'E_FORBIDDEN_ORIGIN']);

    // The key from the file, from either listed origin (the list is trimmed), is served.
    for (const origin of ['https://one.example', 'https://app.example']) {
      const client = await connectClient(url, { apiKey: KEY, origin });
      const log = await client.infer({ id: origin, model: 'tiny', inputs: TINY_INPUT });
      expect(Array.from(resultOf(log).outputs.y!.data as Float32Array), origin).toEqual(
        TINY_OUTPUT,
      );
      await client.close();
    }
    const withKey = await fetch(`${url}/v1/models`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(withKey.status).toBe(200);
    // The same list decides CORS: a listed page may read HTTP answers, another gets no headers.
    for (const [origin, allowed] of [
      ['https://app.example', 'https://app.example'],
      ['https://evil.example', null],
    ] as const) {
      const answer = await fetch(`${url}/v1/models`, {
        headers: { origin, authorization: `Bearer ${KEY}` },
      });
      expect(answer.status, origin).toBe(200);
      expect(answer.headers.get('access-control-allow-origin'), origin).toBe(allowed);
    }

    // The page hint names localhost for a loopback address a browser treats as a secure context
    // only by that name (::1); another address stays as it is. (Checked last: the hint is the
    // line after the URL, and may reach this process in a later read than the one startCli saw;
    // the CLI wrote both before it served the requests above.)
    const hint = new URL(url);
    if (host === '::1') hint.hostname = 'localhost';
    expect(cli.stderr()).toContain(`open ${hint.href} in a browser`);

    expect(await cli.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('warns when it listens on every interface without --api-keys, not on loopback or with keys', async () => {
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cli-test-'));
    const keyFile = join(modelsDir, 'keys.json');
    await writeFile(keyFile, JSON.stringify({ keys: [{ id: 'k', sha256: hashApiKey('k-key') }] }));
    for (const [args, warned] of [
      [['--host', '0.0.0.0'], true],
      [['--host', '0.0.0.0', '--api-keys', keyFile], false],
      [[], false],
    ] as const) {
      const cli = await startCli(['serve', '--port', '0', '--no-catalog', '--quiet', ...args]);
      child = cli.child;
      // The warning comes before the URL that startCli waited for.
      expect(cli.stderr().includes('without --api-keys'), args.join(' ')).toBe(warned);
      expect(await cli.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    }
  });

  it('passes --providers to onnxruntime: a provider this build lacks, alone, fails the load and says which', async () => {
    const built = new Set(listSupportedBackends().map((backend) => backend.name));
    const missing = ['dml', 'coreml', 'tensorrt', 'cuda'].find((p) => !built.has(p));
    expect(missing, 'every provider is built in: nothing to skip').toBeDefined();
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cli-test-'));
    await writeModelFile(modelsDir, 'tiny', 1, buildTinyModel().bytes);
    const cli = await startCli([
      'serve',
      '--port',
      '0',
      '--models',
      modelsDir,
      '--providers',
      missing!,
      '--intra-op-threads',
      '1',
      '--no-catalog',
      '--quiet',
    ]);
    child = cli.child;
    const client = await connectClient(cli.url);
    const log = await client.infer({ id: 'ep', model: 'tiny', inputs: TINY_INPUT });
    expect(errorCodeOf(log)).toBe('E_MODEL_LOAD_FAILED');
    expect(log.error?.message).toContain(
      `no configured execution provider is available: ${missing!}`,
    );
    await client.close();
    expect(await cli.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('prints the usage and exits 0 for --help after a command, as before one', () => {
    for (const args of [
      ['--help'],
      ['serve', '--help'],
      ['worker', '-h'],
      ['serve', '--port', '0', '-h'],
      // Not the hash of "--help".
      ['hash-key', '--help'],
    ]) {
      const usage = execFileSync(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8' });
      expect(usage).toContain('Options of serve:');
      expect(usage).toContain('Options of worker:');
    }
  });

  it('refuses an unknown --providers name before it serves', async () => {
    const error = await startCli([
      'serve',
      '--port',
      '0',
      '--providers',
      'cuda,gpu9',
      '--quiet',
    ]).catch((e: unknown) => e);
    expect(String(error)).toMatch(/exited \(2\).*unknown execution provider "gpu9"/s);
  });

  it('refuses a number that is out of range or not plain digits, naming the flag, with exit 2', () => {
    const redis = ['--redis', 'redis://127.0.0.1:1'];
    for (const [args, flag] of [
      // Number() reads these as 16, 1000 and 80: a typo would serve on a port nobody meant.
      [['serve', '--port', '0x10'], '--port'],
      [['serve', '--port', '1e3'], '--port'],
      [['serve', '--port', ' 80'], '--port'],
      // Past the range: the message named fastify's "options.port", not the flag.
      [['serve', '--port', '70000'], '--port'],
      // At least 1: the message named the createServer option ("maxQueue").
      [['serve', '--max-queue', '0'], '--max-queue'],
      [['serve', ...redis, '--key-lease-ms', '0'], '--key-lease-ms'],
      // Never checked: a worker would have waited for Redis with them.
      [['worker', ...redis, '--metrics-port', '70000'], '--metrics-port'],
      [['worker', ...redis, '--lock-ms', '0'], '--lock-ms'],
      [['worker', ...redis, '--stalled-interval-ms', '0'], '--stalled-interval-ms'],
      [['worker', ...redis, '--idle-timeout-ms', '0'], '--idle-timeout-ms'],
      [['worker', ...redis, '--concurrency', '0'], '--concurrency'],
    ] as const) {
      const run = spawnSync(process.execPath, [CLI_PATH, ...args, '--no-catalog', '--quiet'], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect({ status: run.status, stderr: run.stderr }, args.join(' ')).toMatchObject({
        status: 2,
        stderr: expect.stringContaining(`tandem: ${flag} must be an integer`) as unknown,
      });
    }
  });

  it('refuses a --models folder that is not there (a typo) before it serves', async () => {
    const missing = join(tmpdir(), `tandem-no-such-models-${process.pid}`);
    const error = await startCli(['serve', '--port', '0', '--models', missing, '--quiet']).catch(
      (e: unknown) => e,
    );
    expect(String(error)).toMatch(/exited \(2\).*is not a folder/s);
  });
});

describe('cli: tandem worker', () => {
  let child: ChildProcess | undefined;

  afterEach(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });

  it('exits 0 on a SIGTERM that comes while it waits for a Redis that cannot be reached', async () => {
    expect(existsSync(CLI_PATH), 'build first: npx tsc -b').toBe(true);
    // A port nothing listens on: bound, then released.
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as { port: number };
    probe.close();
    await once(probe, 'close');
    const started = spawn(
      process.execPath,
      [CLI_PATH, 'worker', '--redis', `redis://127.0.0.1:${port}`, '--no-catalog'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = started;
    const exited = once(started, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let stderr = '';
    started.stderr.setEncoding('utf8');
    // The worker logs each refused connection: once it has, it is waiting for Redis.
    const refused = new Promise<void>((resolve) => {
      started.stderr.on('data', (chunk: string) => {
        stderr += chunk;
        if (stderr.includes('ECONNREFUSED')) resolve();
      });
    });
    await refused;
    started.kill('SIGTERM');
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(stderr).toContain('tandem: SIGTERM while starting');
  });
});
