// CORS on the HTTP routes, over real sockets against a listening server: preflights from allowed
// origins, the headers a page needs on manifests, model files, /v1 and OIP v2 answers (errors
// included, so a page can read their codes), nothing for a foreign origin, and requests without
// an Origin (curl, Triton clients) served as before. Follows `origins` as the WebSocket does:
// undefined allows any page.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseModelManifest } from '@tandem/shared';
import { createServer, hashApiKey } from '@tandem/server';
import {
  buildMlpClassifier,
  connectClient,
  rejectionCode,
  writeModelFile,
} from '@tandem/test-support';
import { startServer, type TestServer } from './fixtures.js';

const MLP = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 5 });
const APP = 'https://app.example';
const KEY = 'tk_test_cors';

/** A JSON OIP v2 request for one row of MLP input. */
const INFER_BODY = JSON.stringify({
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
});

/** The lower-cased, comma-separated entries of a header, for order-free comparison. */
function listOf(response: Response, name: string): string[] {
  return (response.headers.get(name) ?? '')
    .split(',')
    .map((value) => value.trim().toLowerCase())
    .filter((value) => value.length > 0);
}

/** A browser's preflight for `method` with `headers` from `origin`. */
function preflight(
  url: string,
  origin: string,
  method: string,
  headers: readonly string[],
): Promise<Response> {
  return fetch(url, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': method,
      'access-control-request-headers': headers.join(','),
    },
  });
}

describe('cors: a server with an origins allowlist', () => {
  let ctx: TestServer;
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      { origins: [APP], apiKeys: [{ id: 'cors', sha256: hashApiKey(KEY) }] },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('answers a preflight from an allowed origin with 204, the methods, headers and a max-age', async () => {
    for (const [path, method] of [
      ['/v1/models/mlp/manifest', 'GET'],
      ['/v1/models/mlp/versions/1/model.onnx', 'GET'],
      ['/v2/models/mlp/infer', 'POST'],
      ['/v1/usage', 'GET'],
    ] as const) {
      const answer = await preflight(`${ctx.url}${path}`, APP, method, [
        'authorization',
        'content-type',
        'content-encoding',
        'inference-header-content-length',
        'if-none-match',
      ]);
      expect(answer.status, path).toBe(204);
      expect(answer.headers.get('access-control-allow-origin'), path).toBe(APP);
      expect(listOf(answer, 'vary'), path).toContain('origin');
      expect(listOf(answer, 'access-control-allow-methods').sort(), path).toEqual([
        'get',
        'head',
        'options',
        'post',
      ]);
      expect(listOf(answer, 'access-control-allow-headers'), path).toEqual(
        expect.arrayContaining([
          'authorization',
          'content-type',
          'content-encoding',
          'inference-header-content-length',
          'if-none-match',
        ]),
      );
      expect(Number(answer.headers.get('access-control-max-age')), path).toBeGreaterThan(0);
    }
  });

  it('lets an allowed page read manifests, model files, /v1 and OIP v2 answers and their headers', async () => {
    const headers = { origin: APP, ...auth };
    const manifestAnswer = await fetch(`${ctx.url}/v1/models/mlp/manifest`, { headers });
    expect(manifestAnswer.status).toBe(200);
    const manifest = parseModelManifest(await manifestAnswer.json());
    const file = await fetch(new URL(manifest.url!, ctx.url), { headers });
    expect(file.status).toBe(200);
    expect(new Uint8Array(await file.arrayBuffer())).toEqual(MLP.bytes);
    const infer = await fetch(`${ctx.url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: INFER_BODY,
    });
    expect(infer.status).toBe(200);
    const list = await fetch(`${ctx.url}/v1/models`, { headers });
    const usage = await fetch(`${ctx.url}/v1/usage`, { headers });
    const meta = await fetch(`${ctx.url}/v2`, { headers });
    for (const answer of [manifestAnswer, file, infer, list, usage, meta]) {
      expect(answer.status, answer.url).toBe(200);
      expect(answer.headers.get('access-control-allow-origin'), answer.url).toBe(APP);
      expect(listOf(answer, 'vary'), answer.url).toContain('origin');
      expect(listOf(answer, 'access-control-expose-headers'), answer.url).toEqual(
        expect.arrayContaining([
          'etag',
          'content-length',
          'retry-after',
          'inference-header-content-length',
        ]),
      );
    }
    expect(file.headers.get('etag')).toMatch(/^"[0-9a-f]{64}"$/);
  });

  it('lets an allowed page read refusals too, with their codes', async () => {
    const noKey = await fetch(`${ctx.url}/v1/models/mlp/manifest`, { headers: { origin: APP } });
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('access-control-allow-origin')).toBe(APP);
    expect(((await noKey.json()) as { code: string }).code).toBe('E_UNAUTHORIZED');
    const unknown = await fetch(`${ctx.url}/v2/models/nope/infer`, {
      method: 'POST',
      headers: { origin: APP, 'content-type': 'application/json', ...auth },
      body: INFER_BODY,
    });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('access-control-allow-origin')).toBe(APP);
    expect(((await unknown.json()) as { code: string }).code).toBe('E_MODEL_NOT_FOUND');
    expect(listOf(unknown, 'access-control-expose-headers')).toContain('retry-after');
  });

  it('gives a foreign origin no CORS headers (the browser blocks it) and no 403', async () => {
    const foreign = 'https://evil.example';
    const answer = await preflight(`${ctx.url}/v1/models/mlp/manifest`, foreign, 'GET', [
      'authorization',
    ]);
    expect(answer.headers.get('access-control-allow-origin')).toBeNull();
    expect(answer.headers.get('access-control-allow-methods')).toBeNull();
    expect(answer.status).not.toBe(204);
    const get = await fetch(`${ctx.url}/v1/models/mlp/manifest`, {
      headers: { origin: foreign, ...auth },
    });
    expect(get.status).toBe(200);
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
    expect(get.headers.get('access-control-expose-headers')).toBeNull();
  });

  it('serves requests without an Origin (curl, Triton clients) as before, with no CORS headers', async () => {
    const manifest = await fetch(`${ctx.url}/v1/models/mlp/manifest`, { headers: auth });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('access-control-allow-origin')).toBeNull();
    const infer = await fetch(`${ctx.url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: INFER_BODY,
    });
    expect(infer.status).toBe(200);
    expect(infer.headers.get('access-control-allow-origin')).toBeNull();
    expect((await fetch(`${ctx.url}/v2/health/ready`)).status).toBe(200);
  });
});

describe('cors: a server without an origins allowlist', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeModelFile(dir, 'mlp', 1, MLP.bytes);
    });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('allows any page, as its WebSocket does: each origin gets its own back', async () => {
    for (const origin of ['https://one.example', 'http://localhost:5173']) {
      const answer = await preflight(`${ctx.url}/v2/models/mlp/infer`, origin, 'POST', [
        'content-type',
      ]);
      expect(answer.status, origin).toBe(204);
      expect(answer.headers.get('access-control-allow-origin'), origin).toBe(origin);
      const manifest = await fetch(`${ctx.url}/v1/models/mlp/manifest`, { headers: { origin } });
      expect(manifest.status, origin).toBe(200);
      expect(manifest.headers.get('access-control-allow-origin'), origin).toBe(origin);
    }
  });
});

describe('cors: allowlist entries as people write them', () => {
  it('matches an entry with a trailing slash or capitals, and takes * for any page', async () => {
    for (const [origins, page] of [
      [['https://App.example/'], 'https://app.example'],
      [['https://other.example', '*'], 'https://third.example'],
    ] as const) {
      const ctx = await startServer(
        async (dir) => {
          await writeModelFile(dir, 'mlp', 1, MLP.bytes);
        },
        { origins: [...origins] },
      );
      try {
        const manifest = await fetch(`${ctx.url}/v1/models/mlp/manifest`, {
          headers: { origin: page },
        });
        expect(manifest.headers.get('access-control-allow-origin'), origins.join()).toBe(page);
        // The WebSocket upgrade follows the same list.
        const client = await connectClient(ctx.url, { origin: page });
        await client.close();
      } finally {
        await ctx.close();
      }
    }
  });

  it('refuses an entry that is no page origin with E_INVALID_ARGUMENT', async () => {
    expect(await rejectionCode(createServer({ port: 0, origins: ['app.example'] }))).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});
