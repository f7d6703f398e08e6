// createServer's shutdown when accepted jobs outlast `shutdownTimeoutMs`: close() does not wait
// for them to finish; every job still queued or running fails with a retryable E_SHUTTING_DOWN
// that reaches its client (WebSocket, before the close with 1001; OIP v2, as a 503). And the
// lifecycle metrics it exports: the oldest wait of a queue, load, warm-up and run durations. A
// model folder that is not there refused at creation. Requests outside every route answered in
// the server's one error shape, and so is what Node's HTTP parser refuses before any route (a
// body that stops coming, headers too large, bytes that are not HTTP).

import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '@tandem/server';
import { connectClient, rejectionCode } from '@tandem/test-support';
import {
  errorCodeOf,
  expectSameTensors,
  metricValue,
  resultOf,
  scrapeMetrics,
  slowInput,
  startServer,
  writeSlowModel,
  type TestServer,
} from './fixtures.js';

/** Rows of a slow-model job that runs far longer than the shutdown timeout below (about a second). */
const LONG_ROWS = 4096;

describe('create-server: shutdownTimeoutMs expires', () => {
  let ctx: TestServer | undefined;

  afterEach(async () => {
    await ctx?.close();
    ctx = undefined;
  });

  it('fails running and queued jobs with a retryable E_SHUTTING_DOWN, then closes', async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir);
      },
      { shutdownTimeoutMs: 1 },
    );
    const warm = await fetch(`${ctx.url}/v1/models/slow/warm?wait=true`, { method: 'POST' });
    expect(warm.status).toBe(200);
    const client = await connectClient(ctx.url);
    client.send({ type: 'infer', id: 'long', model: 'slow', inputs: slowInput(LONG_ROWS) });
    await client.nextOf('progress', (m) => m.event.jobId === 'long' && m.event.stage === 'running');
    // One instance: these wait behind the long job.
    const queued = ['queued-1', 'queued-2'];
    for (const id of queued)
      client.send({ type: 'infer', id, model: 'slow', inputs: slowInput(1) });
    await client.nextOf('progress', (m) => m.event.jobId === 'queued-2');
    // An OIP v2 request waits behind them too; no message says it is queued: a bounded poll.
    const url = ctx.url;
    const http = fetch(`${url}/v2/models/slow/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [1, 256], data: Array<number>(256).fill(0) },
        ],
      }),
    });
    const queueDepth = async (): Promise<number | undefined> =>
      metricValue(await scrapeMetrics(url), 'tandem_queue_depth', { model: 'slow' });
    for (let i = 0; i < 400 && (await queueDepth()) !== 3; i++)
      await new Promise((resolve) => setTimeout(resolve, 25));
    expect(await queueDepth()).toBe(3);

    const server = ctx.server;
    await server.close();

    for (const id of ['long', ...queued]) {
      const log = await client.collectJob(id);
      expect(errorCodeOf(log), id).toBe('E_SHUTTING_DOWN');
      expect(log.error?.retryable, id).toBe(true);
    }
    // The errors came before the close, and the close was the server's shutdown.
    expect((await client.closed).code).toBe(1001);
    const answer = await http;
    expect(answer.status).toBe(503);
    expect(((await answer.json()) as { code: string }).code).toBe('E_SHUTTING_DOWN');
    // The queued jobs never ran. (The long run itself may end inside close(): onnxruntime cannot
    // stop a run midway, so its worker is released once the run returns; its result is dropped.)
    const runs = await server.metrics.jobs.get();
    expect(runs.values.reduce((sum, { value }) => sum + value, 0)).toBeLessThanOrEqual(1);
  });
});

describe('create-server: lifecycle metrics in /metrics', () => {
  let ctx: TestServer | undefined;

  afterEach(async () => {
    await ctx?.close();
    ctx = undefined;
  });

  it('reports the oldest wait while a job queues, and load, warm-up and run times after a cold request', async () => {
    ctx = await startServer(async (dir) => {
      await writeSlowModel(dir);
    });
    const url = ctx.url;
    const client = await connectClient(url);
    // Cold: this request loads and warms the model, then holds its one instance for about a
    // second while the next waits.
    client.send({ type: 'infer', id: 'long', model: 'slow', inputs: slowInput(LONG_ROWS, 1) });
    await client.nextOf('progress', (m) => m.event.jobId === 'long' && m.event.stage === 'running');
    client.send({ type: 'infer', id: 'waits', model: 'slow', inputs: slowInput(1, 2) });
    await client.nextOf('progress', (m) => m.event.jobId === 'waits' && m.event.stage === 'queued');
    const waiting = await scrapeMetrics(url);
    expect(metricValue(waiting, 'tandem_queue_depth', { model: 'slow' })).toBe(1);
    expect(
      metricValue(waiting, 'tandem_queue_oldest_wait_seconds', { model: 'slow' }),
    ).toBeGreaterThan(0);

    for (const [id, rows, seed] of [
      ['long', LONG_ROWS, 1],
      ['waits', 1, 2],
    ] as const) {
      expectSameTensors(resultOf(await client.collectJob(id)).outputs, {
        y: slowInput(rows, seed).x!,
      });
    }
    const done = await scrapeMetrics(url);
    const labels = { model: 'slow', version: '1' };
    expect(metricValue(done, 'tandem_model_load_seconds_count', labels)).toBe(1);
    expect(metricValue(done, 'tandem_model_load_seconds_sum', labels)).toBeGreaterThan(0);
    expect(metricValue(done, 'tandem_model_warmup_seconds_count', labels)).toBe(1);
    expect(metricValue(done, 'tandem_model_warmup_seconds_sum', labels)).toBeGreaterThan(0);
    expect(metricValue(done, 'tandem_run_seconds_count', labels)).toBeGreaterThanOrEqual(1);
    expect(metricValue(done, 'tandem_run_seconds_sum', labels)).toBeGreaterThan(0);
    expect(metricValue(done, 'tandem_cold_starts_total', labels)).toBe(1);
    expect(metricValue(done, 'tandem_jobs_total', labels)).toBe(2);
    // The queue is empty again: the oldest wait reads 0.
    expect(metricValue(done, 'tandem_queue_oldest_wait_seconds', { model: 'slow' })).toBe(0);
    await client.close();
  });
});

describe('create-server: options', () => {
  it('refuses a modelsDir that is not a folder with E_INVALID_ARGUMENT', async () => {
    const missing = join(tmpdir(), `tandem-no-such-models-${process.pid}`);
    expect(await rejectionCode(createServer({ port: 0, modelsDir: missing }))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});

describe('create-server: a key file inside the static directory', () => {
  it('is refused at start with E_INVALID_ARGUMENT, so its hashes are never served', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-static-keys-'));
    try {
      mkdirSync(join(dir, 'site', 'config'), { recursive: true });
      const keyFile = join(dir, 'site', 'config', 'keys.json');
      writeFileSync(keyFile, JSON.stringify({ keys: [{ id: 'web', sha256: '0'.repeat(64) }] }));
      // Named through a symbolic link too: it is the same file.
      symlinkSync(join(dir, 'site'), join(dir, 'link'));
      for (const staticDir of [join(dir, 'site'), join(dir, 'link')]) {
        const started = createServer({ port: 0, catalog: false, staticDir, apiKeys: keyFile });
        expect(await rejectionCode(started)).toBe('E_INVALID_ARGUMENT');
      }
      // Beside it, not inside: served as before.
      const server = await createServer({
        host: '127.0.0.1',
        port: 0,
        catalog: false,
        staticDir: join(dir, 'site', 'config'),
        apiKeys: [{ id: 'web', sha256: '0'.repeat(64) }],
      });
      await server.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('create-server: requests outside every route', () => {
  let ctx: TestServer | undefined;

  afterEach(async () => {
    await ctx?.close();
    ctx = undefined;
  });

  it('answers an unknown path or method 404 E_ROUTE_NOT_FOUND and an undecodable path 400 E_INVALID_ARGUMENT, in the error shape, counted', async () => {
    ctx = await startServer(async () => {});
    const cases = [
      { method: 'GET', path: '/nope?x=1', status: 404, code: 'E_ROUTE_NOT_FOUND' },
      { method: 'DELETE', path: '/v2/health/live', status: 404, code: 'E_ROUTE_NOT_FOUND' },
      { method: 'GET', path: '/v2/models/%zz', status: 400, code: 'E_INVALID_ARGUMENT' },
    ];
    for (const { method, path, status, code } of cases) {
      const response = await fetch(`${ctx.url}${path}`, { method });
      expect(response.status, `${method} ${path}`).toBe(status);
      // The same headers as every other answer (the demo page is cross-origin isolated).
      expect(response.headers.get('cross-origin-resource-policy'), `${method} ${path}`).toBe(
        'cross-origin',
      );
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ code, retryable: false });
      expect(typeof body.error).toBe('string');
      expect(body.error).toContain(path.split('?')[0]);
    }
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_rejections_total', { code: 'E_ROUTE_NOT_FOUND' })).toBe(2);
    expect(metricValue(metrics, 'tandem_rejections_total', { code: 'E_INVALID_ARGUMENT' })).toBe(1);
  });
});

describe('create-server: requests refused before any route', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(async () => undefined, { requestTimeoutMs: 300 });
  });
  afterAll(async () => {
    await ctx.close();
  });

  /** Writes `bytes` on a raw connection and reads everything until the server closes it. */
  async function exchange(bytes: string): Promise<{ status: number; code: string }> {
    const socket = connect(Number(new URL(ctx.url).port), '127.0.0.1');
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    const closed = once(socket, 'close');
    socket.write(bytes);
    await closed;
    const [head = '', body = ''] = Buffer.concat(chunks).toString('latin1').split('\r\n\r\n');
    const status = Number(head.split(' ')[1]);
    const json = JSON.parse(body) as { code: string; error: unknown; retryable: unknown };
    expect(typeof json.error).toBe('string');
    expect(typeof json.retryable).toBe('boolean');
    return { status, code: json.code };
  }

  it('answers a request whose body stops coming with 408 E_REQUEST_TIMEOUT, and keeps serving', async () => {
    // Without a limit, the connection and the body so far were held for good.
    const stalled = await exchange(
      'POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"inputs":',
    );
    expect(stalled).toEqual({ status: 408, code: 'E_REQUEST_TIMEOUT' });
    expect((await fetch(`${ctx.url}/v2/health/live`)).status).toBe(200);
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_rejections_total', { code: 'E_REQUEST_TIMEOUT' })).toBe(1);
  });

  it('answers bytes that are not HTTP, and headers past 16 KiB, with coded errors', async () => {
    expect(await exchange('HELLO\r\n\r\n')).toEqual({ status: 400, code: 'E_INVALID_ARGUMENT' });
    const huge = await exchange(
      `GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(huge).toEqual({ status: 413, code: 'E_PAYLOAD_TOO_LARGE' });
  });

  it('refuses a requestTimeoutMs below 1 with E_INVALID_ARGUMENT', async () => {
    expect(await rejectionCode(createServer({ port: 0, requestTimeoutMs: 0 }))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});
