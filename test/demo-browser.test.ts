// End-to-end: the demo app, built as `npm start` builds it and served by the real `tandem serve`
// CLI with its default catalog (the real PaddleOCR models), in real Chromium. The OCR flow reads
// a sample's text; detection runs locally on wasm or (software adapter allowed) WebGPU, and on
// wasm where the browser has no WebGPU; a stopped server makes recognition fall back to this
// device, shown in the panel; every progress bar's aria-valuenow only rises and ends at 100; the
// element's cancel button cancels. A screenshot after a run is written to test-artifacts/.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tandem } from '@tandem/client';
import { SAMPLES } from '../demo/scripts/sample-specs.js';
import { buildDemo, launchChromium, startCli, type CliProcess } from '@tandem/test-support';

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const SAMPLE_DIR = fileURLToPath(new URL('../demo/public/samples/', import.meta.url));
/** What the receipt says, in reading order, from the spec it was rendered from. */
const RECEIPT_LINES = SAMPLES.find((sample) => sample.file === 'receipt.png')!.lines.flat();

/** The demo page's globals. */
interface DemoWindow {
  tandem: Tandem;
}

/** One row of the "where each step ran" panel. */
interface StepRow {
  model: string;
  placement: string;
  backend: string;
  fallback: string | undefined;
}

/** Records every aria-valuenow each <tandem-progress> bar takes, keyed by the element's label. */
const RECORD_PROGRESS = `
  window.__progress = {};
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) {
      const elements = node instanceof Element
        ? [node, ...node.querySelectorAll('tandem-progress')].filter((e) => e.localName === 'tandem-progress')
        : [];
      for (const element of elements) {
        const bar = element.shadowRoot.querySelector('[role="progressbar"]');
        const key = element.getAttribute('label') + '#' + Object.keys(window.__progress).length;
        const values = (window.__progress[key] = [Number(bar.getAttribute('aria-valuenow'))]);
        new MutationObserver(() => values.push(Number(bar.getAttribute('aria-valuenow'))))
          .observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
      }
    }
  }).observe(document, { childList: true, subtree: true });
`;

async function openDemo(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  await page.addInitScript(RECORD_PROGRESS);
  await page.goto(url);
  return page;
}

/** Waits for the page's run to end; returns its final state ('done', 'error', 'cancelled'). */
async function runEnds(page: Page): Promise<string> {
  await page.waitForFunction(
    () => ['done', 'error', 'cancelled'].includes(document.body.dataset.state ?? ''),
    null,
    { timeout: 120_000 },
  );
  return page.evaluate(() => document.body.dataset.state ?? '');
}

function recognisedLines(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('#lines .line-text')].map((e) => e.textContent),
  );
}

function panelRows(page: Page): Promise<StepRow[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLTableRowElement>('#panel-body tr[data-model]')].map(
      (row) => ({
        model: row.dataset.model ?? '',
        placement: row.dataset.placement ?? '',
        backend: row.dataset.backend ?? '',
        fallback: row.dataset.fallback,
      }),
    ),
  );
}

function progressLog(page: Page): Promise<Record<string, number[]>> {
  return page.evaluate(
    () => (window as unknown as { __progress: Record<string, number[]> }).__progress,
  );
}

/** Every bar's values never go down and end at 100. */
function expectHonestBars(log: Record<string, number[]>): void {
  expect(Object.keys(log).length).toBeGreaterThan(0);
  for (const [label, values] of Object.entries(log)) {
    const decreases = values.filter((value, i) => i > 0 && value < (values[i - 1] as number));
    expect(decreases, `${label}: ${values.join(' ')}`).toEqual([]);
    expect(values.at(-1), label).toBe(100);
  }
}

describe('the demo in Chromium, served by `tandem serve`', () => {
  let site: { dir: string; remove: () => Promise<void> };
  let server: CliProcess;
  let origin: string;
  let browser: Browser;

  beforeAll(async () => {
    site = await buildDemo();
    server = await startCli(['serve', '--port', '0', '--static', site.dir]);
    // WebGPU needs a secure context: http://localhost is one.
    origin = server.url.replace('127.0.0.1', 'localhost');
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser.close();
    await server.stop();
    await site.remove();
  });

  it('reads a sample: detection on this device (wasm), recognition on the server, honest bars', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    try {
      const page = await openDemo(context, `${origin}/`);
      // The page-load wake-up call reaches the server.
      await page.waitForFunction(() => document.body.dataset.server === 'ready', null, {
        timeout: 60_000,
      });
      expect(await page.evaluate(() => typeof (window as unknown as DemoWindow).tandem.run)).toBe(
        'function',
      );
      await page.click('button[data-sample="receipt.png"]');
      expect(await runEnds(page)).toBe('done');
      expect(await recognisedLines(page)).toEqual(RECEIPT_LINES);
      expect(await page.locator('#overlay polygon').count()).toBe(RECEIPT_LINES.length);

      const rows = await panelRows(page);
      expect(rows[0]).toEqual({
        model: 'paddleocr-det',
        placement: 'local',
        backend: 'wasm', // a software adapter does not count as a GPU unless allowed
        fallback: undefined,
      });
      expect(rows.length).toBeGreaterThan(1);
      for (const row of rows.slice(1)) {
        expect(row).toMatchObject({ model: 'paddleocr-rec', placement: 'remote', backend: 'cpu' });
      }
      expectHonestBars(await progressLog(page));

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });
      expect(readFileSync(join(ARTIFACTS, 'demo.png')).byteLength).toBeGreaterThan(10_000);
    } finally {
      await context.close();
    }
  });

  // SwiftShader is slow (seconds per detection run here), so recognition stays on the server.
  it('detects on WebGPU when the software adapter is allowed', { timeout: 180_000 }, async () => {
    const context = await browser.newContext();
    try {
      const page = await openDemo(context, `${origin}/?allowSoftwareGpu`);
      await page.click('button[data-sample="sign.png"]');
      expect(await runEnds(page)).toBe('done');
      expect((await recognisedLines(page)).join(' ')).toContain('EXIT');
      const rows = await panelRows(page);
      expect(rows[0]).toMatchObject({
        model: 'paddleocr-det',
        placement: 'local',
        backend: 'webgpu',
      });
      expectHonestBars(await progressLog(page));
    } finally {
      await context.close();
    }
  });

  it('uses wasm where the browser has no WebGPU', async () => {
    const noGpu = await launchChromium({ webgpu: false });
    try {
      const page = await openDemo(
        await noGpu.newContext(),
        `${origin}/?allowSoftwareGpu&placement=local`,
      );
      const adapter = await page.evaluate(async () => {
        const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
        return gpu === undefined ? 'no navigator.gpu' : String(await gpu.requestAdapter());
      });
      expect(['no navigator.gpu', 'null']).toContain(adapter);
      await page.click('button[data-sample="sign.png"]');
      expect(await runEnds(page)).toBe('done');
      expect((await recognisedLines(page)).join(' ')).toContain('EXIT');
      for (const row of await panelRows(page)) {
        expect(row).toMatchObject({ placement: 'local', backend: 'wasm' });
      }
    } finally {
      await noGpu.close();
    }
  });

  it('cancels from the progress element (keyboard): the job ends cancelled', async () => {
    const context = await browser.newContext();
    try {
      const page = await openDemo(context, `${origin}/`);
      await page.click('button[data-sample="receipt.png"]');
      // A fresh context has nothing cached: detection downloads and compiles for a while.
      const cancel = page.locator('tandem-progress').first().locator('button.cancel');
      await cancel.waitFor({ state: 'visible' });
      await cancel.focus();
      await page.keyboard.press('Enter');
      expect(await runEnds(page)).toBe('cancelled');
      // The page says 'cancelled' only for a TandemError with code E_CANCELLED.
      const state = await page
        .locator('tandem-progress')
        .first()
        .evaluate((e) => (e as unknown as { state: string }).state);
      expect(state).toBe('cancelled');
    } finally {
      await context.close();
    }
  });
});

describe('the demo when its server goes away', () => {
  it('falls back to this device for recognition and says so in the panel', async () => {
    const site = await buildDemo();
    const server = await startCli(['serve', '--port', '0', '--static', site.dir]);
    const browser = await launchChromium();
    try {
      const page = await openDemo(
        await browser.newContext(),
        server.url.replace('127.0.0.1', 'localhost'),
      );
      await page.click('button[data-sample="receipt.png"]');
      expect(await runEnds(page)).toBe('done');
      // The demo prefetches what the server ran, so this device can take over later.
      await page.waitForFunction(
        async () =>
          (await (window as unknown as DemoWindow).tandem.cache.list()).some(
            (m) => m.name === 'paddleocr-rec',
          ),
        null,
        { timeout: 60_000, polling: 250 },
      );

      expect((await server.stop()).code).toBe(0);
      // The page is already loaded; the image comes from disk, not from the stopped server.
      await page.evaluate(() => delete document.body.dataset.state);
      await page.setInputFiles('#file', join(SAMPLE_DIR, 'receipt.png'));
      expect(await runEnds(page)).toBe('done');
      expect(await recognisedLines(page)).toEqual(RECEIPT_LINES);
      const rows = await panelRows(page);
      expect(rows[0]).toMatchObject({ model: 'paddleocr-det', placement: 'local' });
      for (const row of rows.slice(1)) {
        expect(row).toMatchObject({
          model: 'paddleocr-rec',
          placement: 'local',
          fallback: 'E_NETWORK',
        });
      }
      expect(await page.locator('#panel-body .fallback').first().textContent()).toContain(
        'E_NETWORK',
      );
    } finally {
      await browser.close();
      await server.stop('SIGKILL');
      await site.remove();
    }
  });
});
