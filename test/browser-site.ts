// What the browser tests share: the test page built with Vite, served by a real Tandem server on
// http://localhost (WebGPU needs a secure context, and localhost is one), and one Chromium.

import type { Browser } from 'playwright-core';
import { createServer, type TandemServer } from '@tandem/server';
import { buildBrowserPage, launchChromium } from '@tandem/test-support';

/** A served test page and a browser to open it in. */
export interface BrowserSite {
  readonly origin: string;
  readonly server: TandemServer;
  readonly browser: Browser;
  close(): Promise<void>;
}

/** Builds the test page, serves it (with the default catalog) and launches Chromium. */
export async function openBrowserSite(): Promise<BrowserSite> {
  const site = await buildBrowserPage();
  const server = await createServer({ port: 0, staticDir: site.dir });
  const origin = (await server.listen()).replace('127.0.0.1', 'localhost');
  const browser = await launchChromium();
  return {
    origin,
    server,
    browser,
    async close() {
      await browser.close();
      await server.close();
      await site.remove();
    },
  };
}
