// Tandem's /v1 routes beside OIP v2: the model list, the "wake up" call, manifests with a sha256
// that matches the file, the model file download, the per-key usage report, and their refusals
// counted in /metrics.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseModelManifest, type ModelStatus } from '@tandem/shared';
import { createServer, hashApiKey, type TandemServer } from '@tandem/server';
import { buildMlpClassifier, buildTinyModel, writeModelFile } from '@tandem/test-support';
import { metricValue } from './fixtures.js';
import { encodeInferRequest } from './oip-client.js';
import { tempDir, writeModelConfig } from './server-fixtures.js';

const mlp = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 3 });
const tiny = buildTinyModel();
const mlpRequest = encodeInferRequest({
  inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] }],
});

function codeOf(response: LightMyRequestResponse): { status: number; code: string } {
  return { status: response.statusCode, code: response.json<{ code: string }>().code };
}

describe('models, warm-up, manifests and downloads', () => {
  let server: TandemServer;
  let mlpPath: string;
  let remove: () => void;

  beforeAll(async () => {
    const temp = tempDir('model-routes');
    remove = temp.remove;
    mlpPath = await writeModelFile(temp.dir, 'mlp', 1, mlp.bytes);
    writeModelConfig(temp.dir, 'mlp', 1, { placement: { prefer: 'local', minBackend: 'wasm' } });
    await writeModelFile(temp.dir, 'tiny', 1, tiny.bytes);
    await writeModelFile(temp.dir, 'tiny', 2, tiny.bytes.slice());
    await writeModelFile(temp.dir, 'broken', 1, new Uint8Array([1, 2, 3, 4]));
    server = await createServer({ modelsDir: temp.dir, catalog: false });
  });

  afterAll(async () => {
    await server.close();
    remove();
  });

  it('lists every model version with its state', async () => {
    const response = await server.fastify.inject({ url: '/v1/models' });
    expect(response.statusCode).toBe(200);
    const { models } = response.json<{ models: ModelStatus[] }>();
    const byKey = new Map(models.map((m) => [`${m.name}@${m.version}`, m]));
    expect([...byKey.keys()].sort()).toEqual(['broken@1', 'mlp@1', 'tiny@1', 'tiny@2']);
    expect(byKey.get('mlp@1')).toMatchObject({ state: 'unloaded', instances: 0 });
    expect(byKey.get('broken@1')!.state).toBe('failed');
    expect(typeof byKey.get('broken@1')!.reason).toBe('string');
  });

  it('warms a model: 202 at once, or 200 once ready with ?wait=true', async () => {
    const started = await server.fastify.inject({ method: 'POST', url: '/v1/models/tiny/warm' });
    expect(started.statusCode).toBe(202);
    expect(started.json<ModelStatus>()).toMatchObject({ name: 'tiny', version: '2' });
    const waited = await server.fastify.inject({
      method: 'POST',
      url: '/v1/models/tiny/warm?wait=true&version=1',
    });
    expect(waited.statusCode).toBe(200);
    expect(waited.json<ModelStatus>()).toMatchObject({
      name: 'tiny',
      version: '1',
      state: 'ready',
      instances: 1,
    });
    expect(waited.json<ModelStatus>().estimates?.loadMs).toBeGreaterThan(0);
  });

  it('answers warming an unknown model with 404 and a broken one with E_MODEL_LOAD_FAILED', async () => {
    const unknown = await server.fastify.inject({ method: 'POST', url: '/v1/models/nope/warm' });
    expect(codeOf(unknown)).toEqual({ status: 404, code: 'E_MODEL_NOT_FOUND' });
    const broken = await server.fastify.inject({
      method: 'POST',
      url: '/v1/models/broken/warm?wait=true',
    });
    expect(codeOf(broken)).toEqual({ status: 500, code: 'E_MODEL_LOAD_FAILED' });
  });

  it('serves a manifest whose bytes and sha256 match the file', async () => {
    const response = await server.fastify.inject({ url: '/v1/models/mlp/manifest' });
    expect(response.statusCode).toBe(200);
    const manifest = parseModelManifest(response.json());
    const file = readFileSync(mlpPath);
    expect(manifest).toEqual({
      name: 'mlp',
      version: '1',
      url: '/v1/models/mlp/versions/1/model.onnx',
      bytes: file.byteLength,
      sha256: createHash('sha256').update(file).digest('hex'),
      inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
      outputs: [
        { name: 'probs', dtype: 'float32', dims: ['batch', 3] },
        { name: 'label', dtype: 'int64', dims: ['batch'] },
      ],
      placement: { prefer: 'local', minBackend: 'wasm' },
    });
    const versioned = await server.fastify.inject({ url: '/v1/models/tiny/manifest?version=1' });
    expect(versioned.json<{ url: string }>().url).toBe('/v1/models/tiny/versions/1/model.onnx');
    const unknown = await server.fastify.inject({ url: '/v1/models/nope/manifest' });
    expect(codeOf(unknown)).toEqual({ status: 404, code: 'E_MODEL_NOT_FOUND' });
  });

  it('downloads the model file the manifest points at, with an ETag that revalidates', async () => {
    const manifest = parseModelManifest(
      (await server.fastify.inject({ url: '/v1/models/mlp/manifest' })).json(),
    );
    const download = await server.fastify.inject({ url: manifest.url! });
    expect(download.statusCode).toBe(200);
    expect(download.headers['content-type']).toBe('application/octet-stream');
    expect(Number(download.headers['content-length'])).toBe(manifest.bytes);
    expect(download.rawPayload.equals(Buffer.from(mlp.bytes))).toBe(true);
    expect(createHash('sha256').update(download.rawPayload).digest('hex')).toBe(manifest.sha256);
    expect(download.headers.etag).toBe(`"${manifest.sha256}"`);
    expect(download.headers['cache-control']).toContain('immutable');
    const revalidated = await server.fastify.inject({
      url: manifest.url!,
      headers: { 'if-none-match': `"${manifest.sha256}"` },
    });
    expect(revalidated.statusCode).toBe(304);
    expect(revalidated.rawPayload.byteLength).toBe(0);
    const missing = await server.fastify.inject({ url: '/v1/models/mlp/versions/7/model.onnx' });
    expect(codeOf(missing)).toEqual({ status: 404, code: 'E_MODEL_NOT_FOUND' });
  });
});

describe('/v1/usage', () => {
  let server: TandemServer;
  let remove: () => void;

  beforeAll(async () => {
    const temp = tempDir('usage');
    remove = temp.remove;
    await writeModelFile(temp.dir, 'mlp', 1, mlp.bytes);
    server = await createServer({
      modelsDir: temp.dir,
      catalog: false,
      apiKeys: [
        { id: 'alice', sha256: hashApiKey('alice-key') },
        { id: 'bob', sha256: hashApiKey('bob-key') },
      ],
    });
  });

  afterAll(async () => {
    await server.close();
    remove();
  });

  const infer = (key: string) =>
    server.fastify.inject({
      method: 'POST',
      url: '/v2/models/mlp/infer',
      payload: mlpRequest.body,
      headers: { ...mlpRequest.headers, authorization: `Bearer ${key}` },
    });

  const usageOf = async (key: string) => {
    const response = await server.fastify.inject({
      url: '/v1/usage',
      headers: { authorization: `Bearer ${key}` },
    });
    expect(response.statusCode).toBe(200);
    return response.json<{
      usage: {
        key: string;
        model: string;
        version: string;
        computeSeconds: number;
        jobs: number;
        coldStarts: number;
      }[];
    }>().usage;
  };

  it('reports compute-seconds, jobs and cold starts per key, each key seeing its own', async () => {
    expect(await usageOf('alice-key')).toEqual([]);
    for (const key of ['alice-key', 'alice-key', 'bob-key']) {
      expect((await infer(key)).statusCode).toBe(200);
    }
    // A rejected request is not billed.
    const rejected = await server.fastify.inject({
      method: 'POST',
      url: '/v2/models/mlp/infer',
      payload: '{"inputs": []}',
      headers: { 'content-type': 'application/json', authorization: 'Bearer bob-key' },
    });
    expect(rejected.statusCode).toBe(400);

    const alice = await usageOf('alice-key');
    expect(alice).toHaveLength(1);
    expect(alice[0]).toMatchObject({ key: 'alice', model: 'mlp', version: '1', jobs: 2 });
    expect(alice[0]!.coldStarts).toBe(1); // the first job paid the load
    expect(alice[0]!.computeSeconds).toBeGreaterThan(0);
    const bob = await usageOf('bob-key');
    expect(bob).toHaveLength(1);
    expect(bob[0]).toMatchObject({ key: 'bob', model: 'mlp', jobs: 1, coldStarts: 0 });
    expect(bob[0]!.computeSeconds).toBeGreaterThan(0);
  });
});

describe('refusals of the /v1 routes in /metrics', () => {
  let server: TandemServer;
  let remove: () => void;

  beforeAll(async () => {
    const temp = tempDir('model-routes-refusals');
    remove = temp.remove;
    await writeModelFile(temp.dir, 'tiny', 1, tiny.bytes);
    await writeModelFile(temp.dir, 'broken', 1, new Uint8Array([1, 2, 3, 4]));
    server = await createServer({
      modelsDir: temp.dir,
      catalog: false,
      apiKeys: [{ id: 'alice', sha256: hashApiKey('alice-key') }],
    });
  });

  afterAll(async () => {
    await server.close();
    remove();
  });

  it('counts each by code, with the model of the path when the server has it', async () => {
    const authorization = 'Bearer alice-key';
    const answers = [
      await server.fastify.inject({ url: '/v1/models' }),
      await server.fastify.inject({
        url: '/v1/models/tiny/manifest',
        headers: { authorization: 'Bearer wrong-key' },
      }),
      await server.fastify.inject({
        method: 'POST',
        url: '/v1/models/made-up-name/warm',
        headers: { authorization },
      }),
      await server.fastify.inject({
        method: 'POST',
        url: '/v1/models/broken/warm?wait=true',
        headers: { authorization },
      }),
    ];
    expect(answers.map(codeOf)).toEqual([
      { status: 401, code: 'E_UNAUTHORIZED' },
      { status: 401, code: 'E_UNAUTHORIZED' },
      { status: 404, code: 'E_MODEL_NOT_FOUND' },
      { status: 500, code: 'E_MODEL_LOAD_FAILED' },
    ]);
    const metrics = (await server.fastify.inject({ url: '/metrics' })).body;
    const rejections = (code: string, model: string): number | undefined =>
      metricValue(metrics, 'tandem_rejections_total', { code, model });
    expect(rejections('E_UNAUTHORIZED', '')).toBe(1);
    expect(rejections('E_UNAUTHORIZED', 'tiny')).toBe(1);
    expect(rejections('E_MODEL_NOT_FOUND', '')).toBe(1);
    expect(rejections('E_MODEL_LOAD_FAILED', 'broken')).toBe(1);
    expect(metrics).not.toContain('made-up-name');
  });
});
