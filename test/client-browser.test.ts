// The client in real Chromium (playwright-core, Debian's chromium): a test page built with Vite and
// served by a real Tandem server (cross-origin isolated) on http://localhost. Local runs on wasm and
// on WebGPU (the software adapter allowed here), agreement with the server's result, a second page
// load reading the model and onnxruntime-web's runtime .wasm from Cache Storage with no network,
// and an integrity failure.

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBrowserSite, type BrowserSite } from './browser-site.js';

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

describe('the client in Chromium', () => {
  let site: BrowserSite;
  let origin: string;
  let browser: Browser;

  beforeAll(async () => {
    site = await openBrowserSite();
    ({ origin, browser } = site);
  });

  afterAll(() => site.close());

  async function openPage(
    context: BrowserContext,
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
    await page.goto(`${origin}/`);
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
