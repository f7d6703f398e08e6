// <tandem-progress> in real Chromium, driven by real jobs: the test page (built with Vite, importing
// '@tandem/client/progress' as an app does) served by a real Tandem server. Every aria-valuenow the
// bar ever had is recorded with a MutationObserver (old values included), so "never decreases" is
// checked on the whole history, not on samples.

import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBrowserSite, type BrowserSite } from './browser-site.js';

/** What the page recorded about one element and its job. */
interface Recorded {
  values: number[];
  labels: string[];
  events: { type: string; code?: string; placement?: string; job?: boolean }[];
  code?: string;
  state: string;
  label: string;
  where: string;
  live: string;
  errorCode: string;
  errorHidden: boolean;
  cancelHidden: boolean;
  retryHidden: boolean;
  focused: string;
}

declare global {
  interface Window {
    progressTest: {
      element: HTMLElementTagNameMap['tandem-progress'];
      values: number[];
      labels: string[];
      events: Recorded['events'];
      observer: MutationObserver;
      code?: string;
    };
  }
}

/**
 * Adds a <tandem-progress> to the page, records its history, and starts a run of paddleocr-cls
 * with `element.job = job`. Does not wait for the job.
 */
function startRun(
  page: Page,
  options: { placement: string; sha256?: string; label?: string },
): Promise<void> {
  return page.evaluate(async ({ placement, sha256, label }) => {
    const element = document.createElement('tandem-progress');
    if (label !== undefined) element.setAttribute('label', label);
    document.body.append(element);
    const root = element.shadowRoot!;
    const values: number[] = [];
    const labels: string[] = [];
    const observer = new MutationObserver((records) => {
      for (const record of records) {
        const target = record.target as Element;
        if (record.type === 'attributes' && record.attributeName === 'aria-valuenow')
          values.push(Number(record.oldValue));
        if (record.type === 'childList' && target.classList.contains('label'))
          record.removedNodes.forEach((node) => labels.push(node.textContent ?? ''));
      }
    });
    observer.observe(root, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeOldValue: true,
      attributeFilter: ['aria-valuenow'],
    });
    const events: Recorded['events'] = [];
    for (const type of ['done', 'failed', 'cancelled', 'retry', 'cancelrequest']) {
      element.addEventListener(type, (event) => {
        const detail = (
          event as CustomEvent<{
            error?: { code: string };
            result?: { placement: string };
            job?: unknown;
          }>
        ).detail;
        events.push({
          type,
          ...(type === 'done'
            ? { job: detail.job !== undefined && detail.job === element.job }
            : {}),
          ...(detail.error === undefined ? {} : { code: detail.error.code }),
          ...(detail.result === undefined ? {} : { placement: detail.result.placement }),
        });
      });
    }
    window.progressTest = { element, values, labels, events, observer };

    const server = location.origin;
    const manifest = (await (
      await fetch(`${server}/v1/models/paddleocr-cls/manifest`)
    ).json()) as Record<string, unknown>;
    const tandem = window.tandemClient.createTandem({
      server,
      models: { cls: { ...manifest, ...(sha256 === undefined ? {} : { sha256 }) } as never },
    });
    const data = new Float32Array(3 * 48 * 192);
    for (let i = 0; i < data.length; i++) data[i] = (i % 97) / 97;
    const job = tandem.run(
      'cls',
      { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } },
      { placement: placement as never },
    );
    element.job = job;
    job.then(
      () => void tandem.close(),
      (error: unknown) => {
        window.progressTest.code = (error as { code?: string }).code ?? String(error);
        void tandem.close();
      },
    );
  }, options);
}

/** Waits until the element has ended, then returns everything it recorded and shows. */
async function finished(page: Page): Promise<Recorded> {
  await page.waitForFunction(() =>
    ['done', 'error', 'cancelled'].includes(window.progressTest.element.state),
  );
  return page.evaluate(() => {
    const { element, values, labels, events, observer, code } = window.progressTest;
    const root = element.shadowRoot!;
    const part = (name: string): HTMLElement => root.querySelector(`[part~="${name}"]`)!;
    for (const record of observer.takeRecords()) {
      if (record.attributeName === 'aria-valuenow') values.push(Number(record.oldValue));
    }
    observer.disconnect();
    const bar = part('bar');
    return {
      values: [...values, Number(bar.getAttribute('aria-valuenow'))],
      labels,
      events,
      ...(code === undefined ? {} : { code }),
      state: element.state,
      label: part('label').textContent,
      where: part('where').textContent,
      live: root.querySelector('[role="status"]')?.textContent ?? '',
      errorCode: part('error-code').textContent,
      errorHidden: part('error').hidden,
      cancelHidden: (part('cancel') as HTMLButtonElement).hidden,
      retryHidden: (part('retry') as HTMLButtonElement).hidden,
      focused: root.activeElement?.getAttribute('part') ?? '',
    };
  });
}

function expectMonotoneTo100(values: number[]): void {
  expect(values.length).toBeGreaterThan(1);
  for (let i = 1; i < values.length; i++) expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
  expect(values.at(-1)).toBe(100);
  expect(values.slice(0, -1).every((value) => value < 100)).toBe(true);
}

describe('<tandem-progress> in Chromium', () => {
  let site: BrowserSite;
  let origin: string;
  let browser: Browser;

  beforeAll(async () => {
    site = await openBrowserSite();
    ({ origin, browser } = site);
  });

  afterAll(() => site.close());

  async function openPage(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready');
    return page;
  }

  it('follows a local wasm run: words per stage, a bar that never goes back and ends at 100', async () => {
    const context = await browser.newContext();
    const page = await openPage(context);
    await startRun(page, { placement: 'local-only', label: 'Reading the text' });
    const bar = page.locator('tandem-progress').getByRole('progressbar');
    await expect(bar.getAttribute('aria-valuemin')).resolves.toBe('0');
    await expect(bar.getAttribute('aria-valuemax')).resolves.toBe('100');
    await expect(bar.getAttribute('aria-label')).resolves.toBe('Reading the text');
    const run = await finished(page);
    expect(run.code).toBeUndefined();
    expect(run.state).toBe('done');
    expectMonotoneTo100(run.values);
    // A first visit downloads the model, and the bar said so in words.
    expect(
      run.labels.some((label) => /^Downloading model [\d.]+ \/ [\d.]+ [kM]B$/.test(label)),
    ).toBe(true);
    expect(run.label).toMatch(/^Done in [\d.]+ s$/);
    expect(run.live).toBe(run.label);
    expect(run.where).toBe('On this device · WebAssembly');
    expect(run.events).toEqual([{ type: 'done', job: true, placement: 'local' }]);
    expect(run.cancelHidden).toBe(true);
    expect(run.retryHidden).toBe(true);
    await expect(bar.getAttribute('aria-valuetext')).resolves.toBe(`${run.label}, 100%`);
    await context.close();
  });

  it('follows a remote run to 100 and says it ran on the server', async () => {
    const context = await browser.newContext();
    const page = await openPage(context);
    await startRun(page, { placement: 'remote-only' });
    const run = await finished(page);
    expect(run.code).toBeUndefined();
    expectMonotoneTo100(run.values);
    expect(run.where).toBe('On the server · CPU');
    expect(run.events).toEqual([{ type: 'done', job: true, placement: 'remote' }]);
    await context.close();
  });

  it('cancels the job from the keyboard (Tab to Cancel, Enter): E_CANCELLED', async () => {
    const context = await browser.newContext();
    const page = await openPage(context);
    // The model file never arrives, so the job waits in its download until it is cancelled.
    const held: Route[] = [];
    await page.route('**/model.onnx', (route) => {
      held.push(route);
    });
    await startRun(page, { placement: 'local-only' });
    const cancel = page.locator('tandem-progress').getByRole('button', { name: 'Cancel' });
    await cancel.waitFor({ state: 'visible' });
    await page.keyboard.press('Tab');
    await page.waitForFunction(
      () =>
        window.progressTest.element.shadowRoot!.activeElement?.getAttribute('part') === 'cancel',
    );
    await page.keyboard.press('Enter');
    const run = await finished(page);
    expect(run.code).toBe('E_CANCELLED');
    expect(run.state).toBe('cancelled');
    expect(run.label).toBe('Cancelled');
    expect(run.events).toEqual([
      { type: 'cancelrequest' },
      { type: 'cancelled', code: 'E_CANCELLED' },
    ]);
    expect(run.values.at(-1)).toBeLessThan(100);
    for (let i = 1; i < run.values.length; i++)
      expect(run.values[i]!).toBeGreaterThanOrEqual(run.values[i - 1]!);
    // The keyboard user keeps their place: focus moved from Cancel to Retry.
    expect(run.cancelHidden).toBe(true);
    expect(run.retryHidden).toBe(false);
    expect(run.focused).toBe('retry');
    await Promise.all(held.map((route) => route.abort()));
    await context.close();
  });

  it('shows a failed job with its code and message, and Retry dispatches `retry`', async () => {
    const context = await browser.newContext();
    const page = await openPage(context);
    await startRun(page, { placement: 'local-only', sha256: '0'.repeat(64) });
    const run = await finished(page);
    expect(run.code).toBe('E_INTEGRITY');
    expect(run.state).toBe('error');
    expect(run.label).toBe('Failed');
    expect(run.errorHidden).toBe(false);
    expect(run.errorCode).toBe('E_INTEGRITY');
    expect(run.live).toContain('E_INTEGRITY');
    expect(run.values.at(-1)).toBeLessThan(100);
    const retry = page.locator('tandem-progress').getByRole('button', { name: 'Retry' });
    await retry.focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => window.progressTest.events.some((e) => e.type === 'retry'));
    const events = await page.evaluate(() => window.progressTest.events);
    expect(events).toEqual([
      { type: 'failed', code: 'E_INTEGRITY' },
      { type: 'retry', code: 'E_INTEGRITY' },
    ]);
    await context.close();
  });

  it('shows a retry hint as a sentence of its own after the error message', async () => {
    const context = await browser.newContext();
    const page = await openPage(context);
    const messages = await page.evaluate(() =>
      [
        // The server's own E_BUSY message, which ends without a full stop.
        'the queue for paddleocr-det@1 is full (256 jobs)',
        'the server is shutting down.',
        '',
      ].map((message) => {
        const element = document.createElement('tandem-progress');
        document.body.append(element);
        element.showError({ code: 'E_BUSY', message, retryable: true, retryAfterMs: 1500 });
        return element.shadowRoot!.querySelector('[part~="error-message"]')!.textContent;
      }),
    );
    expect(messages).toEqual([
      'the queue for paddleocr-det@1 is full (256 jobs). Try again in 2 s.',
      'the server is shutting down. Try again in 2 s.',
      'Try again in 2 s.',
    ]);
    await context.close();
  });

  it('keeps the estimate moving without CSS motion when reduced motion is asked for', async () => {
    const context = await browser.newContext({ reducedMotion: 'reduce' });
    const page = await openPage(context);
    const before = await page.evaluate(() => {
      const element = document.createElement('tandem-progress');
      document.body.append(element);
      element.update({
        jobId: 'manual',
        model: 'm',
        where: 'remote',
        stage: 'loading',
        fraction: 0.2,
        elapsedMs: 0,
      });
      const fill = element.shadowRoot!.querySelector('[part~="fill"]')!;
      const style = getComputedStyle(fill);
      return {
        percent: Number(
          element.shadowRoot!.querySelector('[role="progressbar"]')!.getAttribute('aria-valuenow'),
        ),
        animation: style.animationName,
        transition: style.transitionDuration,
      };
    });
    expect(before.animation).toBe('none');
    expect(before.transition).toBe('0s');
    // The bar still follows the curve, redrawn frame by frame.
    await page.waitForFunction(
      (start) =>
        Number(
          document
            .querySelector('tandem-progress')!
            .shadowRoot!.querySelector('[role="progressbar"]')!
            .getAttribute('aria-valuenow'),
        ) > start,
      before.percent,
    );
    await page.emulateMedia({ reducedMotion: 'no-preference' });
    const animation = await page.evaluate(
      () =>
        getComputedStyle(
          document.querySelector('tandem-progress')!.shadowRoot!.querySelector('[part~="fill"]')!,
        ).animationName,
    );
    expect(animation).toBe('tandem-progress-sheen');
    await context.close();
  });
});
