// The client in real Chromium (playwright-core, Debian's chromium): a test page built with Vite and
// served by a real Tandem server (cross-origin isolated) on http://localhost. Local runs on wasm and
// on WebGPU (the software adapter allowed here; two calls at once, and one after a cancel),
// agreement with the server's result, wasm threads
// with and without cross-origin isolation, a second page load reading the model and
// onnxruntime-web's runtime .wasm from Cache Storage with no network (and a model's external data
// file with its .onnx), tandem.cache over Cache Storage, keep-warm pausing while the page is
// hidden, and an integrity failure.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeMessage, decodeServerMessage, type ModelState } from '@tandem/shared';
import type { Tandem } from '@tandem/client';
import { buildMlpClassifier, buildTinyModel, writeModelFile } from '@tandem/test-support';
import { openBrowserSite, type BrowserSite } from './browser-site.js';

/** A model whose weights live in an external data file beside its .onnx. */
const EXTERNAL_DATA_MODEL = 'mlp-external';
const MLP = { features: 8, hidden: 32, classes: 4, seed: 5 } as const;

/** A server model that unloads after half a second idle, for the keep-warm test. */
const KEEP_WARM_MODEL = 'keep-warm';
const KEEP_WARM_IDLE_MS = 500;

interface PageRun {
  placement: string;
  backend: string;
  values: number[];
  downloadMs: number;
  /** Bytes of onnxruntime-web's runtime reported in the compile stage (a first load downloads it). */
  runtimeBytes: { loaded: number; total?: number }[];
  code?: string;
}

/** Runs paddleocr-cls in the page with the given client options and placement. */
function runInPage(
  page: Page,
  options: { allowSoftwareGpu?: boolean; placement: string; sha256?: string },
): Promise<PageRun> {
  return page.evaluate(async ({ allowSoftwareGpu, placement, sha256 }) => {
    const { createTandem } = window.tandemClient;
    const server = location.origin;
    const manifest = (await (
      await fetch(`${server}/v1/models/paddleocr-cls/manifest`)
    ).json()) as Record<string, unknown>;
    const tandem = createTandem({
      server,
      allowSoftwareGpu: allowSoftwareGpu === true,
      models: { cls: { ...manifest, ...(sha256 === undefined ? {} : { sha256 }) } as never },
    });
    const data = new Float32Array(3 * 48 * 192);
    for (let i = 0; i < data.length; i++) data[i] = (i % 97) / 97;
    const runtimeBytes: { loaded: number; total?: number }[] = [];
    try {
      const job = tandem.run(
        'cls',
        { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } },
        { placement: placement as never },
      );
      for await (const event of job) {
        if (event.stage === 'compile' && event.loaded !== undefined)
          runtimeBytes.push({
            loaded: event.loaded,
            ...(event.total === undefined ? {} : { total: event.total }),
          });
      }
      const result = await job;
      const output = Object.values(result.outputs)[0]!.data as Float32Array;
      return {
        placement: result.placement,
        backend: result.backend,
        values: Array.from(output),
        downloadMs: result.timings.downloadMs,
        runtimeBytes,
      };
    } catch (error) {
      return {
        placement: '',
        backend: '',
        values: [],
        downloadMs: 0,
        runtimeBytes,
        code: (error as { code?: string }).code ?? String(error),
      };
    } finally {
      await tandem.close();
    }
  }, options);
}

/** Runs paddleocr-cls on the page's LocalRuntime; says how many wasm threads the runtime reported. */
function runWithThreadsInPage(page: Page): Promise<{
  crossOriginIsolated: boolean;
  threads: number;
  backend: string;
  values: number[];
}> {
  return page.evaluate(async () => {
    const { LocalRuntime, ModelFileStore } = window.tandemClient;
    const manifest = (await (await fetch('/v1/models/paddleocr-cls/manifest')).json()) as never;
    const runtime = new LocalRuntime({ files: new ModelFileStore() });
    try {
      const { threads } = await runtime.backendInfo();
      const data = new Float32Array(3 * 48 * 192);
      for (let i = 0; i < data.length; i++) data[i] = (i % 97) / 97;
      const result = await runtime.run(
        manifest,
        { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } },
        {
          jobId: 'threads',
          priority: 5,
          signal: new AbortController().signal,
          onProgress: () => undefined,
        },
      );
      const output = Object.values(result.outputs)[0]!.data as Float32Array;
      return { crossOriginIsolated, threads, backend: result.backend, values: Array.from(output) };
    } finally {
      await runtime.close();
    }
  });
}

/** Makes the page report `state` and fires `visibilitychange`, as switching tabs does. */
function setVisibility(page: Page, state: DocumentVisibilityState): Promise<void> {
  return page.evaluate((value) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => value });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

describe('the client in Chromium', () => {
  let site: BrowserSite;
  let origin: string;
  let browser: Browser;
  let modelsDir: string;

  beforeAll(async () => {
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-browser-models-'));
    const modelFile = await writeModelFile(modelsDir, KEEP_WARM_MODEL, 1, buildTinyModel().bytes);
    await writeFile(
      join(modelFile, '..', 'model.json'),
      JSON.stringify({ idleTimeoutMs: KEEP_WARM_IDLE_MS }),
    );
    const mlp = buildMlpClassifier({ ...MLP, externalData: 'weights.bin' });
    const mlpFile = await writeModelFile(modelsDir, EXTERNAL_DATA_MODEL, 1, mlp.bytes);
    await writeFile(join(mlpFile, '..', 'weights.bin'), mlp.externalData!.bytes);
    site = await openBrowserSite({ modelsDir });
    ({ origin, browser } = site);
  });

  afterAll(async () => {
    await site.close();
    await rm(modelsDir, { recursive: true, force: true });
  });

  async function openPage(
    context: BrowserContext,
    at = origin,
  ): Promise<{ page: Page; modelRequests: string[]; runtimeRequests: string[] }> {
    const page = await context.newPage();
    const modelRequests: string[] = [];
    // onnxruntime-web's runtime binary (Vite names it ort-wasm-simd-threaded[.jsep]-<hash>.wasm),
    // requested by the local worker: the page reports its workers' requests too.
    const runtimeRequests: string[] = [];
    page.on('request', (request) => {
      if (request.url().endsWith('model.onnx')) modelRequests.push(request.url());
      if (request.url().endsWith('.wasm')) runtimeRequests.push(request.url());
    });
    await page.goto(`${at}/`);
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready');
    return { page, modelRequests, runtimeRequests };
  }

  it('runs locally on wasm, agreeing with the server', async () => {
    const context = await browser.newContext();
    const { page } = await openPage(context);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    const local = await runInPage(page, { placement: 'local-only' });
    const remote = await runInPage(page, { placement: 'remote-only' });
    expect(local.code).toBeUndefined();
    expect(local).toMatchObject({ placement: 'local', backend: 'wasm' });
    expect(remote).toMatchObject({ placement: 'remote', backend: 'cpu' });
    expect(local.values).toHaveLength(2);
    local.values.forEach((value, i) =>
      expect(Math.abs(value - remote.values[i]!)).toBeLessThan(1e-4),
    );
    await context.close();
  });

  it('runs locally on WebGPU when the software adapter is allowed, and not otherwise', async () => {
    const context = await browser.newContext();
    const { page, runtimeRequests } = await openPage(context);
    const gpu = await runInPage(page, { placement: 'local-only', allowSoftwareGpu: true });
    expect(gpu.code).toBeUndefined();
    expect(gpu.backend).toBe('webgpu');
    const wasm = await runInPage(page, { placement: 'local-only' });
    expect(wasm.backend).toBe('wasm');
    // WebGPU needs onnxruntime-web's full (JSEP) build; without it, the worker loads the wasm-only
    // build, with half the runtime to download.
    expect(runtimeRequests.map((url) => url.includes('.jsep'))).toEqual([true, false]);
    gpu.values.forEach((value, i) => expect(Math.abs(value - wasm.values[i]!)).toBeLessThan(1e-3));
    await context.close();
  });

  it('runs two local calls at once on WebGPU, and a call right after one cancelled mid-run: every one answered', async () => {
    const context = await browser.newContext();
    const { page } = await openPage(context);
    const outcome = await page.evaluate(async () => {
      const tandem = window.tandemClient.createTandem({
        server: location.origin,
        allowSoftwareGpu: true,
        placement: 'local-only',
      });
      const inputs = (seed: number) => {
        const data = new Float32Array(3 * 48 * 192);
        for (let i = 0; i < data.length; i++) data[i] = ((i + seed) % 97) / 97;
        return { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } } as const;
      };
      const settle = async (job: PromiseLike<{ backend: string }>) => {
        try {
          return (await job).backend;
        } catch (error) {
          return (error as { code?: string }).code ?? String(error);
        }
      };
      try {
        const first = await settle(tandem.run('paddleocr-cls', inputs(1)));
        const together = await Promise.all([
          settle(tandem.run('paddleocr-cls', inputs(2))),
          settle(tandem.run('paddleocr-cls', inputs(3))),
        ]);
        // Progress comes after run() has returned: `job` is set by then.
        const job: ReturnType<typeof tandem.run> = tandem.run('paddleocr-cls', inputs(4), {
          onProgress: (event) => {
            if (event.stage === 'running') job.cancel();
          },
        });
        const cancelled = await settle(job);
        const after = await settle(tandem.run('paddleocr-cls', inputs(5)));
        return { first, together, cancelled, after };
      } finally {
        await tandem.close();
      }
    });
    expect(outcome).toEqual({
      first: 'webgpu',
      together: ['webgpu', 'webgpu'],
      cancelled: 'E_CANCELLED',
      after: 'webgpu',
    });
    await context.close();
  });

  it('reads the model and the runtime .wasm from Cache Storage on a second page load, requesting neither', async () => {
    const context = await browser.newContext();
    const first = await openPage(context);
    const cold = await runInPage(first.page, { placement: 'local-only' });
    expect(cold.code).toBeUndefined();
    expect(first.modelRequests).toHaveLength(1);
    expect(first.runtimeRequests).toHaveLength(1);
    expect(cold.downloadMs).toBeGreaterThan(0);
    // The runtime's download showed as bytes, never going back, up to its whole size.
    const loaded = cold.runtimeBytes.map((report) => report.loaded);
    expect(loaded.length).toBeGreaterThan(0);
    expect(loaded).toEqual([...loaded].sort((a, b) => a - b));
    const last = cold.runtimeBytes.at(-1)!;
    expect(last.total).toBeGreaterThan(1_000_000);
    expect(last.loaded).toBe(last.total);
    await first.page.close();
    const second = await openPage(context);
    const warm = await runInPage(second.page, { placement: 'local-only' });
    expect(warm.code).toBeUndefined();
    expect(warm).toMatchObject({ placement: 'local', backend: 'wasm' });
    expect(second.modelRequests).toHaveLength(0);
    expect(second.runtimeRequests).toHaveLength(0);
    expect(warm.downloadMs).toBe(0);
    expect(warm.runtimeBytes).toEqual([]);
    // The runtime from storage computes what the server does.
    const remote = await runInPage(second.page, { placement: 'remote-only' });
    expect(warm.values).toHaveLength(2);
    warm.values.forEach((value, i) =>
      expect(Math.abs(value - remote.values[i]!)).toBeLessThan(1e-4),
    );
    await context.close();
  });

  it('reads a model and its external data file from Cache Storage on a second page load, requesting neither', async () => {
    const manifest = (await (
      await fetch(`${origin}/v1/models/${EXTERNAL_DATA_MODEL}/manifest`)
    ).json()) as { bytes: number; externalData: { bytes: number }[] };
    const total = manifest.bytes + manifest.externalData[0]!.bytes;
    /** Runs the model here; reports its first download event's total and what is stored. */
    const runMlp = (page: Page) =>
      page.evaluate(async (model) => {
        const tandem = window.tandemClient.createTandem({
          server: location.origin,
          placement: 'local-only',
        });
        try {
          const x = Float32Array.from({ length: 16 }, (_, i) => (i % 7) / 7 - 0.5);
          const job = tandem.run(model, { x: { dtype: 'float32', dims: [2, 8], data: x } });
          const totals: number[] = [];
          for await (const event of job) {
            if (event.stage === 'download' && event.total !== undefined) totals.push(event.total);
          }
          const result = await job;
          return {
            probs: Array.from(result.outputs.probs!.data as Float32Array),
            downloadMs: result.timings.downloadMs,
            totals,
            listed: await tandem.cache.list(),
          };
        } finally {
          await tandem.close();
        }
      }, EXTERNAL_DATA_MODEL);
    const context = await browser.newContext();
    const first = await openPage(context);
    const requested: string[] = [];
    const fileRequest = (request: { url(): string }): void => {
      if (request.url().includes(`/v1/models/${EXTERNAL_DATA_MODEL}/versions/`))
        requested.push(new URL(request.url()).pathname);
    };
    first.page.on('request', fileRequest);
    const cold = await runMlp(first.page);
    expect(requested).toEqual([
      `/v1/models/${EXTERNAL_DATA_MODEL}/versions/1/model.onnx`,
      `/v1/models/${EXTERNAL_DATA_MODEL}/versions/1/files/weights.bin`,
    ]);
    expect(new Set(cold.totals)).toEqual(new Set([total]));
    expect(cold.downloadMs).toBeGreaterThan(0);
    expect(cold.listed).toEqual([
      expect.objectContaining({
        name: EXTERNAL_DATA_MODEL,
        bytes: total,
        storage: 'cache',
        externalData: [expect.objectContaining({ path: 'weights.bin', storage: 'cache' })],
      }),
    ]);
    await first.page.close();
    const second = await openPage(context);
    second.page.on('request', fileRequest);
    const warm = await runMlp(second.page);
    expect(requested).toHaveLength(2);
    expect(warm.downloadMs).toBe(0);
    expect(warm.totals).toEqual([]);
    expect(warm.probs).toEqual(cold.probs);
    expect(warm.probs).toHaveLength(2 * MLP.classes);
    await context.close();
  });

  it('runs onnxruntime-web on several wasm threads on a cross-origin isolated page, and on one without isolation', async () => {
    const context = await browser.newContext();
    /** A page of the site, with the workers onnxruntime-web starts as its wasm threads. */
    const open = async (at: string) => {
      const { page } = await openPage(context, at);
      // Besides the client's own worker (Vite names it local-worker-<hash>.js), a page's workers
      // are onnxruntime-web's threads.
      const isThread = (url: string): boolean => !url.includes('/local-worker');
      const threadWorkers: string[] = [];
      page.on('worker', (worker) => {
        if (isThread(worker.url())) threadWorkers.push(worker.url());
      });
      return { page, threadWorkers, isThread };
    };
    const isolated = await open(origin);
    const threadStarted = isolated.page.waitForEvent('worker', {
      predicate: (worker) => isolated.isThread(worker.url()),
      timeout: 20_000,
    });
    threadStarted.catch(() => undefined); // awaited below, unless an assertion fails first
    const withThreads = await runWithThreadsInPage(isolated.page);
    expect(withThreads).toMatchObject({ crossOriginIsolated: true, backend: 'wasm' });
    expect(withThreads.threads).toBeGreaterThan(1);
    // onnxruntime-web really started them: reporting a number is not enough.
    await threadStarted;
    const unisolated = await open(site.unisolatedOrigin);
    const single = await runWithThreadsInPage(unisolated.page);
    expect(single).toMatchObject({ crossOriginIsolated: false, backend: 'wasm', threads: 1 });
    // One thread needs no thread workers; the run, done by now, would have started them.
    expect(unisolated.threadWorkers).toEqual([]);
    expect(single.values).toHaveLength(2);
    single.values.forEach((value, i) =>
      expect(Math.abs(value - withThreads.values[i]!)).toBeLessThan(1e-4),
    );
    await context.close();
  });

  it('lists, estimates and deletes the model in Cache Storage; the next page load downloads it again', async () => {
    const manifest = (await (await fetch(`${origin}/v1/models/paddleocr-cls/manifest`)).json()) as {
      bytes: number;
      sha256: string;
    };
    const context = await browser.newContext();
    const first = await openPage(context);
    expect((await runInPage(first.page, { placement: 'local-only' })).code).toBeUndefined();
    const cache = await first.page.evaluate(async () => {
      const tandem = window.tandemClient.createTandem({ server: location.origin });
      try {
        const listed = await tandem.cache.list();
        const estimate = await tandem.cache.estimate();
        const deleted = await tandem.cache.delete('paddleocr-cls');
        return {
          listed,
          estimate,
          deleted,
          listedAfter: await tandem.cache.list(),
          estimateAfter: await tandem.cache.estimate(),
        };
      } finally {
        await tandem.close();
      }
    });
    expect(cache.listed).toEqual([
      {
        name: 'paddleocr-cls',
        // Resolved against the page: the manifest gave it relative.
        url: `${origin}/v1/models/paddleocr-cls/versions/1/model.onnx`,
        bytes: manifest.bytes,
        sha256: manifest.sha256,
        storage: 'cache',
      },
    ]);
    expect(cache.estimate.modelBytes).toBe(manifest.bytes);
    // The origin's usage holds the model and onnxruntime-web's runtime .wasm, within its quota.
    expect(cache.estimate.usageBytes).toBeGreaterThan(manifest.bytes);
    expect(cache.estimate.quotaBytes).toBeGreaterThan(cache.estimate.usageBytes!);
    expect(cache.deleted).toBe(1);
    expect(cache.listedAfter).toEqual([]);
    expect(cache.estimateAfter.modelBytes).toBe(0);
    await first.page.close();
    const second = await openPage(context);
    const again = await runInPage(second.page, { placement: 'local-only' });
    expect(again.code).toBeUndefined();
    expect(second.modelRequests).toHaveLength(1);
    expect(again.downloadMs).toBeGreaterThan(0);
    await context.close();
  });

  it('deletes a model with its compiled session: the same client downloads and compiles it again', async () => {
    const context = await browser.newContext();
    const { page, modelRequests } = await openPage(context);
    const runs = await page.evaluate(async () => {
      const tandem = window.tandemClient.createTandem({
        server: location.origin,
        placement: 'local-only',
      });
      const inputs = {
        x: { dtype: 'float32', dims: [1, 3, 48, 192], data: new Float32Array(3 * 48 * 192) },
      } as const;
      const run = async () => {
        const { cold, timings } = await tandem.run('paddleocr-cls', inputs);
        return { cold, downloadMs: timings.downloadMs };
      };
      try {
        const first = await run();
        const warm = await run();
        const deleted = await tandem.cache.delete('paddleocr-cls');
        return { first, warm, deleted, after: await run() };
      } finally {
        await tandem.close();
      }
    });
    expect(runs.first.cold).toBe(true);
    expect(runs.warm).toEqual({ cold: false, downloadMs: 0 });
    expect(runs.deleted).toBe(1);
    expect(runs.after.cold).toBe(true);
    expect(runs.after.downloadMs).toBeGreaterThan(0);
    expect(modelRequests).toHaveLength(2);
    await context.close();
  });

  it('keeps a server model warm while the page is visible, and lets it scale to zero while hidden', async () => {
    const context = await browser.newContext();
    const { page } = await openPage(context);
    const serverState = (): ModelState | undefined =>
      site.server.manager.statuses().find((status) => status.name === KEEP_WARM_MODEL)?.state;
    // The page's WebSocket, as Chromium saw it on the wire: the warms it sent, and the states of
    // the model the server announced (a `model` answer to each warm, and every state change).
    let warmsSent = 0;
    /** warmsSent when the server first announced the model ready. */
    let sentBeforeReady: number | undefined;
    const announced: ModelState[] = [];
    page.on('websocket', (socket) => {
      socket.on('framesent', ({ payload }) => {
        if (typeof payload !== 'string' && decodeMessage(new Uint8Array(payload)).type === 'warm')
          warmsSent += 1;
      });
      socket.on('framereceived', ({ payload }) => {
        if (typeof payload === 'string') return;
        const message = decodeServerMessage(new Uint8Array(payload));
        if (message.type !== 'model' || message.model.name !== KEEP_WARM_MODEL) return;
        announced.push(message.model.state);
        if (message.model.state === 'ready') sentBeforeReady ??= warmsSent;
      });
    });
    await page.evaluate((model) => {
      const tandem = window.tandemClient.createTandem({
        server: location.origin,
        keepWarm: { models: [model], intervalMs: 100 },
      });
      (window as Window & { keptWarm?: Tandem }).keptWarm = tandem;
    }, KEEP_WARM_MODEL);
    // Visible: ten warms sent once the model was ready, one per interval, span twice its idle
    // timeout; the server answered them, and never unloaded the model in between.
    const sentSinceReady = (): number =>
      sentBeforeReady === undefined ? 0 : warmsSent - sentBeforeReady;
    await expect.poll(sentSinceReady, { timeout: 20_000 }).toBeGreaterThanOrEqual(10);
    await expect
      .poll(() => announced.filter((state) => state === 'ready').length, { timeout: 20_000 })
      .toBeGreaterThan(10);
    expect(announced).not.toContain('unloaded');
    expect(serverState()).toBe('ready');
    // Hidden, as when the user switches tabs. Headless Chromium never hides a page by itself, so
    // the page is told, as the browser would tell it.
    await setVisibility(page, 'hidden');
    const sentWhenHidden = warmsSent;
    // No warm for KEEP_WARM_IDLE_MS (five intervals) and the server unloads it: had warms gone on
    // every 100 ms, its idle clock would never have run out.
    await expect.poll(serverState, { timeout: 20_000 }).toBe('unloaded');
    // One warm may have been on its way as the page was hidden; none was sent after.
    expect(warmsSent - sentWhenHidden).toBeLessThanOrEqual(1);
    // Back on screen: the warms resume, and the server loads the model again.
    await setVisibility(page, 'visible');
    await expect.poll(serverState, { timeout: 20_000 }).toBe('ready');
    await page.evaluate(() => (window as Window & { keptWarm?: Tandem }).keptWarm?.close());
    await context.close();
  });

  it('fails a local call with E_RUNTIME when the worker script cannot load, and auto uses the server', async () => {
    const context = await browser.newContext();
    const { page } = await openPage(context);
    const outcome = await page.evaluate(async () => {
      const { createTandem, webWorkerHandle } = window.tandemClient;
      const tandem = createTandem({
        server: location.origin,
        // A deployment that serves the worker script from the wrong place.
        createWorker: () =>
          Promise.resolve(webWorkerHandle(new Worker('/no-such-worker.js', { type: 'module' }))),
      });
      const data = new Float32Array(3 * 48 * 192);
      const inputs = { x: { dtype: 'float32' as const, dims: [1, 3, 48, 192], data } };
      try {
        const local = await tandem.run('paddleocr-cls', inputs, { placement: 'local-only' }).then(
          () => 'ran',
          (error: unknown) => (error as { code?: string }).code ?? String(error),
        );
        const auto = await tandem.run('paddleocr-cls', inputs, { placement: 'prefer-local' });
        return { local, placement: auto.placement, fallback: auto.fallback };
      } finally {
        await tandem.close();
      }
    });
    expect(outcome.local).toBe('E_RUNTIME');
    expect(outcome.placement).toBe('remote');
    expect(outcome.fallback).toMatchObject({ from: 'local', code: 'E_RUNTIME' });
    await context.close();
  });

  it('reports a file that does not match its manifest as E_INTEGRITY', async () => {
    const context = await browser.newContext();
    const { page } = await openPage(context);
    const result = await runInPage(page, { placement: 'local-only', sha256: '0'.repeat(64) });
    expect(result.code).toBe('E_INTEGRITY');
    await context.close();
  });
});
