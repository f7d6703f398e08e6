// The client in an app bundled with Vite's default worker setting (classic workers, format
// 'iife'), served cross-origin isolated as docs/api.md asks for wasm threads. onnxruntime-web then
// sits inside Tandem's worker script and starts its wasm threads from that script: a local run
// must fail with a coded error that names the fix (and 'auto' must fall back to the server), never
// wait for ever.

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TandemServer } from '@tandem/server';
import { buildBrowserPage, launchChromium } from '@tandem/test-support';

/** How a run of paddleocr-cls in the page ended. */
interface Outcome {
  placement?: string;
  fallback?: { from: string; code: string };
  code?: string;
  message?: string;
}

/** Runs paddleocr-cls in the page under `placement`, with a fresh client. */
function runInPage(page: Page, placement: string): Promise<Outcome> {
  return page.evaluate(async (placement) => {
    const tandem = window.tandemClient.createTandem({ server: location.origin });
    const data = new Float32Array(3 * 48 * 192);
    try {
      const result = await tandem.run(
        'paddleocr-cls',
        { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } },
        { placement: placement as never },
      );
      return {
        placement: result.placement,
        ...(result.fallback === undefined ? {} : { fallback: result.fallback }),
      };
    } catch (error) {
      const { code, message } = error as { code?: string; message?: string };
      return { code: code ?? String(error), message: message ?? '' };
    } finally {
      await tandem.close();
    }
  }, placement);
}

describe('an app whose workers Vite bundled as classic scripts (its default)', () => {
  let site: { dir: string; remove: () => Promise<void> };
  let server: TandemServer;
  let origin: string;
  let browser: Browser;

  beforeAll(async () => {
    site = await buildBrowserPage({ workerFormat: 'iife' });
    server = await createServer({ port: 0, staticDir: site.dir });
    origin = (await server.listen()).replace('127.0.0.1', 'localhost');
    browser = await launchChromium({ webgpu: false });
  });

  afterAll(async () => {
    await browser.close();
    await server.close();
    await site.remove();
  });

  it('fails a local run on a cross-origin isolated page with E_RUNTIME naming the fix; auto runs on the server', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready');
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);

    const local = await runInPage(page, 'local-only');
    expect(local.code).toBe('E_RUNTIME');
    expect(local.message).toContain("worker: { format: 'es' }");

    const auto = await runInPage(page, 'prefer-local');
    expect(auto.placement).toBe('remote');
    expect(auto.fallback).toMatchObject({ from: 'local', code: 'E_RUNTIME' });
    await context.close();
  });
});
