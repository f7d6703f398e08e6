// The server's CORS as a browser enforces it: real Chromium on pages from two other origins (plain
// HTTP servers on localhost) calling a real Tandem server on 127.0.0.1 with an `origins`
// allowlist. The listed page reads a manifest and a model file with its API key (a preflighted
// request), reads the file's ETag, and runs an OIP v2 JSON inference; the other page's requests
// are blocked by the browser.

import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, hashApiKey, type TandemServer } from '@tandem/server';
import { buildMlpClassifier, launchChromium, writeModelFile } from '@tandem/test-support';

const MLP = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 9 });
const KEY = 'tk_test_browser_cors';

/** What a page saw of its cross-origin calls. */
interface PageCalls {
  readonly manifestStatus?: number;
  readonly fileBytes?: number;
  readonly etag?: string | null;
  readonly inferOutputs?: readonly string[];
  readonly failure?: string;
}

/** Serves an empty HTML page on localhost: a page origin other than the Tandem server's. */
async function pageServer(): Promise<{ server: Server; origin: string }> {
  const server = createHttpServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!doctype html><title>app</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://localhost:${(server.address() as AddressInfo).port}` };
}

describe('server CORS in Chromium', () => {
  let browser: Browser;
  let tandem: TandemServer;
  let tandemUrl: string;
  let modelsDir: string;
  let allowed: { server: Server; origin: string };
  let foreign: { server: Server; origin: string };

  beforeAll(async () => {
    [allowed, foreign] = await Promise.all([pageServer(), pageServer()]);
    modelsDir = await mkdtemp(join(tmpdir(), 'tandem-cors-browser-'));
    await writeModelFile(modelsDir, 'mlp', 1, MLP.bytes);
    tandem = await createServer({
      port: 0,
      catalog: false,
      modelsDir,
      origins: [allowed.origin],
      apiKeys: [{ id: 'page', sha256: hashApiKey(KEY) }],
    });
    tandemUrl = await tandem.listen();
    browser = await launchChromium({ webgpu: false });
  });
  afterAll(async () => {
    await browser.close();
    await tandem.close();
    for (const page of [allowed, foreign]) {
      page.server.closeAllConnections();
      page.server.close();
    }
    await rm(modelsDir, { recursive: true, force: true });
  });

  /** Opens a page at `origin` and makes the calls an app makes to the server, with the key. */
  async function callsFrom(origin: string): Promise<PageCalls> {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${origin}/`);
      return await page.evaluate(
        async ({ server, key }) => {
          const auth = { authorization: `Bearer ${key}` };
          try {
            const manifestAnswer = await fetch(`${server}/v1/models/mlp/manifest`, {
              headers: auth,
            });
            const manifest = (await manifestAnswer.json()) as { url: string };
            const file = await fetch(new URL(manifest.url, server), { headers: auth });
            const fileBytes = (await file.arrayBuffer()).byteLength;
            const infer = await fetch(`${server}/v2/models/mlp/infer`, {
              method: 'POST',
              headers: { ...auth, 'content-type': 'application/json' },
              body: JSON.stringify({
                inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
              }),
            });
            const outputs = ((await infer.json()) as { outputs: { name: string }[] }).outputs;
            return {
              manifestStatus: manifestAnswer.status,
              fileBytes,
              etag: file.headers.get('etag'),
              inferOutputs: outputs.map((output) => output.name),
            };
          } catch (error) {
            return { failure: String(error) };
          }
        },
        { server: tandemUrl, key: KEY },
      );
    } finally {
      await context.close();
    }
  }

  it('lets a page on a listed origin fetch manifests and model files with its key, and run OIP v2', async () => {
    const calls = await callsFrom(allowed.origin);
    expect(calls.failure).toBeUndefined();
    expect(calls.manifestStatus).toBe(200);
    expect(calls.fileBytes).toBe(MLP.bytes.byteLength);
    expect(calls.etag).toMatch(/^"[0-9a-f]{64}"$/);
    expect(calls.inferOutputs).toContain('probs');
  });

  it('leaves a page on another origin blocked by the browser', async () => {
    const calls = await callsFrom(foreign.origin);
    expect(calls.failure).toMatch(/TypeError/);
  });
});
