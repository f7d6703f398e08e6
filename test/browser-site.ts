// What the browser tests share: the test page built with Vite, served by a real Tandem server on
// http://localhost (WebGPU needs a secure context, and localhost is one), and one Chromium. The
// server makes every page cross-origin isolated (COOP/COEP); the same site is also served
// through a proxy that drops those two headers, for what a page without isolation gets.

import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { createServer, type TandemServer } from '@tandem/server';
import { buildBrowserPage, launchChromium } from '@tandem/test-support';

/** A served test page and a browser to open it in. */
export interface BrowserSite {
  /** The site on the Tandem server: cross-origin isolated. */
  readonly origin: string;
  /**
   * The same site, server and page, on another port through a proxy that drops the
   * Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy headers: not cross-origin
   * isolated. HTTP only (no WebSocket).
   */
  readonly unisolatedOrigin: string;
  readonly server: TandemServer;
  readonly browser: Browser;
  close(): Promise<void>;
}

/** Options of {@link openBrowserSite}. */
export interface BrowserSiteOptions {
  /** A model repository for the server, beside the default catalog. @default none */
  readonly modelsDir?: string;
}

/** Builds the test page, serves it (with the default catalog) and launches Chromium. */
export async function openBrowserSite(options: BrowserSiteOptions = {}): Promise<BrowserSite> {
  const site = await buildBrowserPage();
  const server = await createServer({
    port: 0,
    staticDir: site.dir,
    ...(options.modelsDir === undefined ? {} : { modelsDir: options.modelsDir }),
  });
  const listening = await server.listen();
  const origin = listening.replace('127.0.0.1', 'localhost');
  const proxy = await startUnisolatingProxy(new URL(listening));
  const browser = await launchChromium();
  return {
    origin,
    unisolatedOrigin: proxy.origin,
    server,
    browser,
    async close() {
      await browser.close();
      await proxy.close();
      await server.close();
      await site.remove();
    },
  };
}

/** The headers that make a page cross-origin isolated (lower case, as Node gives them). */
const ISOLATION_HEADERS: ReadonlySet<string> = new Set([
  'cross-origin-opener-policy',
  'cross-origin-embedder-policy',
]);

/** Forwards HTTP requests to `upstream` and answers without {@link ISOLATION_HEADERS}. */
async function startUnisolatingProxy(
  upstream: URL,
): Promise<{ origin: string; close(): Promise<void> }> {
  const proxy = createHttpServer((request, response) => {
    const forwarded = httpRequest(
      {
        hostname: upstream.hostname,
        port: upstream.port,
        method: request.method,
        path: request.url,
        headers: { ...request.headers, host: upstream.host },
        // A connection per request: nothing pooled outlives the test.
        agent: false,
      },
      (answer) => {
        const headers = Object.fromEntries(
          Object.entries(answer.headers).filter(([name]) => !ISOLATION_HEADERS.has(name)),
        );
        response.writeHead(answer.statusCode ?? 502, headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => response.destroy());
    request.pipe(forwarded);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  return {
    origin: `http://localhost:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        proxy.closeAllConnections();
        proxy.close(() => resolve());
      }),
  };
}
