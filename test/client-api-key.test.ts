// createTandem's apiKey against a real server that requires keys: the manifest and model files
// are fetched with it (a local run works, not only the WebSocket), a client without a key is told
// E_UNAUTHORIZED, and the key never goes to a host other than the server's.

import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseModelManifest, type ModelManifest, type TensorMap } from '@tandem/shared';
import { createServer, hashApiKey, type TandemServer } from '@tandem/server';
import { createTandem } from '@tandem/client';
import { createPrng, fillUniform, realModelPath, rejectionCode } from '@tandem/test-support';
import { readFileSync } from 'node:fs';

const KEY = 'alice-key-0123456789';

function clsInput(seed: number): TensorMap {
  const data = fillUniform(new Float32Array(3 * 48 * 192), createPrng(seed), 0, 1);
  return { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } };
}

describe('createTandem with an apiKey, against a server that requires keys', () => {
  let server: TandemServer;
  let url: string;
  const fileRequests: (string | undefined)[] = [];

  beforeAll(async () => {
    server = await createServer({
      port: 0,
      apiKeys: [{ id: 'alice', sha256: hashApiKey(KEY) }],
    });
    server.fastify.addHook('onRequest', async (request) => {
      if (request.url.endsWith('/model.onnx')) fileRequests.push(request.headers.authorization);
    });
    url = await server.listen();
  });

  afterAll(async () => {
    await server.close();
  });

  it('runs local-only: the manifest and the model file are fetched with the key', async () => {
    const tandem = createTandem({ server: url, apiKey: KEY, placement: 'local-only' });
    try {
      const result = await tandem.run('paddleocr-cls', clsInput(1));
      expect(result.placement).toBe('local');
      expect(fileRequests).toEqual([`Bearer ${KEY}`]);
      const remote = await tandem.run('paddleocr-cls', clsInput(1), { placement: 'remote-only' });
      expect(remote.placement).toBe('remote');
    } finally {
      await tandem.close();
    }
  });

  it('without a key, a call fails E_UNAUTHORIZED (not a network error)', async () => {
    const tandem = createTandem({ server: url, placement: 'local-only' });
    try {
      expect(await rejectionCode(tandem.run('paddleocr-cls', clsInput(2)))).toBe('E_UNAUTHORIZED');
    } finally {
      await tandem.close();
    }
  });

  it('refuses a key a WebSocket cannot carry with E_INVALID_ARGUMENT, at once', () => {
    const base64 = 'ab+cd/ef==';
    expect(() => createTandem({ server: url, apiKey: base64 })).toThrow(
      expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }),
    );
    // Over HTTP (OIP) the key is a header value, where these characters are fine.
    expect(() => createTandem({ server: url, apiKey: base64, remote: 'oip' })).not.toThrow();
  });

  it('never sends the key to another host a manifest points at', async () => {
    const bytes = readFileSync(realModelPath('paddleocr-cls'));
    const seen: IncomingHttpHeaders[] = [];
    const cdn = createHttpServer((request, response) => {
      seen.push(request.headers);
      response.writeHead(200, { 'content-length': bytes.byteLength });
      response.end(bytes);
    });
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
    const served: ModelManifest = parseModelManifest(
      await (
        await fetch(`${url}/v1/models/paddleocr-cls/manifest`, {
          headers: { authorization: `Bearer ${KEY}` },
        })
      ).json(),
    );
    const onCdn: ModelManifest = {
      ...served,
      url: `http://127.0.0.1:${(cdn.address() as AddressInfo).port}/cls.onnx`,
    };
    const tandem = createTandem({
      server: url,
      apiKey: KEY,
      placement: 'local-only',
      models: { cls: onCdn },
    });
    try {
      expect((await tandem.run('cls', clsInput(3))).placement).toBe('local');
      expect(seen).toHaveLength(1);
      expect(seen[0]?.authorization).toBeUndefined();
    } finally {
      await tandem.close();
      await new Promise((resolve) => cdn.close(resolve));
    }
  });
});
