// Tandem's /v1 routes beside OIP v2: the model list, the "wake up" call, manifests with a sha256
// that matches the file, the model file download, the per-key usage report, and their refusals
// counted in /metrics.

import { createHash } from 'node:crypto';
import type * as Fs from 'node:fs';
import {
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseModelManifest, type ModelStatus } from '@tandem/shared';
import { createServer, hashApiKey, type TandemServer } from '@tandem/server';
import {
  buildMlpClassifier,
  buildModel,
  buildTinyModel,
  writeModelFile,
} from '@tandem/test-support';
import { metricValue, runDirect } from './fixtures.js';
import { encodeInferRequest } from './oip-client.js';
import { tempDir, writeModelConfig } from './server-fixtures.js';

/**
 * Reads of model files to fail, once each, as a file deleted between its stat and its open does
 * (the read opens a path that is not there: ENOENT) while the file itself stays as it was. Real
 * files cannot stage that race, and root ignores permissions. Every other read is untouched.
 */
const failingReads = vi.hoisted(() => new Set<string>());
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof Fs>();
  const createReadStream: typeof fs.createReadStream = (path, options) =>
    fs.createReadStream(
      typeof path === 'string' && failingReads.delete(path) ? `${path}.gone` : path,
      options,
    );
  return { ...fs, createReadStream, default: { ...fs, createReadStream } };
});

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

describe('warming while the server shuts down', () => {
  it('answers a warm 503 E_SHUTTING_DOWN with Retry-After, as a job', async () => {
    const temp = tempDir('model-routes-drain');
    await writeModelFile(temp.dir, 'tiny', 1, tiny.bytes);
    const server = await createServer({ modelsDir: temp.dir, catalog: false });
    try {
      await server.manager.drain();
      const refused = await server.fastify.inject({
        method: 'POST',
        url: '/v1/models/tiny/warm?wait=true',
      });
      expect(codeOf(refused)).toEqual({ status: 503, code: 'E_SHUTTING_DOWN' });
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.json<{ retryAfterMs?: number }>().retryAfterMs).toBe(1000);
    } finally {
      await server.close();
      temp.remove();
    }
  });
});

describe('a model file whose read fails', () => {
  let server: TandemServer;
  let path: string;
  let remove: () => void;

  beforeAll(async () => {
    const temp = tempDir('model-routes-read-failure');
    remove = temp.remove;
    path = await writeModelFile(temp.dir, 'mlp', 1, mlp.bytes);
    server = await createServer({ modelsDir: temp.dir, catalog: false });
  });

  afterAll(async () => {
    await server.close();
    remove();
  });

  it('reads it again on the next request: a failed sha256 is not kept for the unchanged file', async () => {
    failingReads.add(path);
    const failed = await server.fastify.inject({ url: '/v1/models/mlp/manifest' });
    expect(failed.statusCode).toBe(500);
    expect(failingReads.has(path)).toBe(false);
    // The same file, stat for stat: the cache key still matches, and the failure is not in it.
    const manifest = await server.fastify.inject({ url: '/v1/models/mlp/manifest' });
    expect(manifest.statusCode).toBe(200);
    const sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
    expect(parseModelManifest(manifest.json()).sha256).toBe(sha256);
    const download = await server.fastify.inject({ url: '/v1/models/mlp/versions/1/model.onnx' });
    expect(download.statusCode).toBe(200);
    expect(download.headers.etag).toBe(`"${sha256}"`);
  });
});

describe('manifests of a model file replaced while the server runs', () => {
  const V1 = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 11 });
  const V2 = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 12 });
  const FILE_TIME = new Date('2026-01-02T03:04:05Z');
  let server: TandemServer;
  let path: string;
  let remove: () => void;

  beforeAll(async () => {
    const temp = tempDir('model-routes-swap');
    remove = temp.remove;
    path = await writeModelFile(temp.dir, 'swap', 1, V1.bytes);
    // Whole seconds: times copied onto another file keep them exactly.
    utimesSync(path, FILE_TIME, FILE_TIME);
    server = await createServer({ modelsDir: temp.dir, catalog: false });
  });

  afterAll(async () => {
    await server.close();
    remove();
  });

  const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
  const manifestSha256 = async (): Promise<string> =>
    parseModelManifest((await server.fastify.inject({ url: '/v1/models/swap/manifest' })).json())
      .sha256!;

  it('gives the new file its own sha256 and ETag, renamed over the old or rewritten in place with its size and times', async () => {
    expect(await manifestSha256()).toBe(sha256(V1.bytes));
    const stampBefore = server.manager.host('swap').entry.stamp;
    // rsync -a's way: a new file of the same size, its times copied, renamed over the old. Only
    // the inode tells them apart (the repository's stamp has it, so the new file is served).
    expect(V2.bytes.length).toBe(V1.bytes.length);
    const old = statSync(path);
    writeFileSync(`${path}.tmp`, V2.bytes);
    utimesSync(`${path}.tmp`, FILE_TIME, FILE_TIME);
    renameSync(`${path}.tmp`, path);
    expect(statSync(path).mtimeMs).toBe(old.mtimeMs);
    expect(statSync(path).ino).not.toBe(old.ino);
    // The repository rescans at most once a second: a bounded poll (about 4 s) for the new host.
    for (let i = 0; i < 40 && server.manager.host('swap').entry.stamp === stampBefore; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(server.manager.host('swap').entry.stamp).not.toBe(stampBefore);
    const download = await server.fastify.inject({ url: '/v1/models/swap/versions/1/model.onnx' });
    expect(download.rawPayload.equals(Buffer.from(V2.bytes))).toBe(true);
    expect(await manifestSha256()).toBe(sha256(V2.bytes));
    expect(download.headers.etag).toBe(`"${sha256(V2.bytes)}"`);

    // cp -p's way back: V1 written into the same file, its times set back again. Only the
    // change time (ctime) tells this file from the one before.
    const stampOfV2 = server.manager.host('swap').entry.stamp;
    const v2Stat = statSync(path);
    writeFileSync(path, V1.bytes);
    utimesSync(path, FILE_TIME, FILE_TIME);
    const v1Stat = statSync(path);
    expect([v1Stat.size, v1Stat.mtimeMs, v1Stat.ino]).toEqual([
      v2Stat.size,
      v2Stat.mtimeMs,
      v2Stat.ino,
    ]);
    for (let i = 0; i < 40 && server.manager.host('swap').entry.stamp === stampOfV2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(server.manager.host('swap').entry.stamp).not.toBe(stampOfV2);
    expect(await manifestSha256()).toBe(sha256(V1.bytes));
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

describe('/v1/usage on a real server', () => {
  it('shows a key whose id is "anonymous" its own usage only, never every key\'s', async () => {
    const temp = tempDir('usage-anonymous-id');
    await writeModelFile(temp.dir, 'mlp', 1, mlp.bytes);
    const server = await createServer({
      host: '127.0.0.1',
      port: 0,
      modelsDir: temp.dir,
      catalog: false,
      apiKeys: [
        { id: 'alice', sha256: hashApiKey('alice-key') },
        { id: 'anonymous', sha256: hashApiKey('anon-key') },
      ],
    });
    try {
      const url = await server.listen();
      const infer = await fetch(`${url}/v2/models/mlp/infer`, {
        method: 'POST',
        body: new Uint8Array(mlpRequest.body),
        headers: { ...mlpRequest.headers, authorization: 'Bearer alice-key' },
      });
      expect(infer.status).toBe(200);
      const usageOf = async (key: string) => {
        const response = await fetch(`${url}/v1/usage`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(response.status).toBe(200);
        return ((await response.json()) as { usage: { key: string }[] }).usage;
      };
      expect((await usageOf('alice-key')).map((row) => row.key)).toEqual(['alice']);
      expect(await usageOf('anon-key')).toEqual([]);
    } finally {
      await server.close();
      temp.remove();
    }
  });
});

describe('load failures on a real server', () => {
  it('name no directory of the server in error answers or model states', async () => {
    const temp = tempDir('load-failure-paths');
    // onnxruntime refuses it (no such operator) after the server read its signature.
    await writeModelFile(
      temp.dir,
      'bad',
      1,
      buildModel({
        inputs: [{ name: 'x', dtype: 'float32', dims: ['n'] }],
        outputs: [{ name: 'y', dtype: 'float32', dims: ['n'] }],
        nodes: [{ opType: 'NoSuchOp', inputs: ['x'], outputs: ['y'] }],
      }),
    );
    // Found by the scan at start, gone when it is first loaded.
    const gone = await writeModelFile(temp.dir, 'gone', 1, tiny.bytes);
    const server = await createServer({
      host: '127.0.0.1',
      port: 0,
      modelsDir: temp.dir,
      catalog: false,
    });
    try {
      const url = await server.listen();
      rmSync(gone);
      for (const name of ['bad', 'gone']) {
        const warm = await fetch(`${url}/v1/models/${name}/warm?wait=true`, { method: 'POST' });
        const text = await warm.text();
        expect(warm.status).toBe(500);
        expect((JSON.parse(text) as { code: string }).code).toBe('E_MODEL_LOAD_FAILED');
        expect(text).not.toContain(temp.dir);
      }
      const models = await fetch(`${url}/v1/models`);
      const listed = await models.text();
      const states = (JSON.parse(listed) as { models: ModelStatus[] }).models;
      expect(states.map((status) => status.state)).toEqual(['failed', 'failed']);
      expect(listed).not.toContain(temp.dir);
    } finally {
      await server.close();
      temp.remove();
    }
  });
});

describe('models whose weights are external data files', () => {
  let server: TandemServer;
  let dir: string;
  let remove: () => void;
  /** Writes an MLP whose weights live in `location` beside (or, `at` given, elsewhere than) it. */
  const writeExternal = async (name: string, location: string, at = location): Promise<string> => {
    const built = buildMlpClassifier({
      features: 4,
      hidden: 8,
      classes: 3,
      seed: 5,
      externalData: location,
    });
    const path = await writeModelFile(dir, name, 1, built.bytes);
    if (at !== '') {
      mkdirSync(dirname(join(dirname(path), at)), { recursive: true });
      writeFileSync(join(dirname(path), at), built.externalData!.bytes);
    }
    return path;
  };
  const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
  const infer = (name: string): Promise<LightMyRequestResponse> =>
    server.fastify.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: mlpRequest.body,
      headers: mlpRequest.headers,
    });
  let bigPath: string;

  beforeAll(async () => {
    const temp = tempDir('model-routes-external');
    ({ dir, remove } = temp);
    bigPath = await writeExternal('big', 'weights.bin');
    await writeExternal('nested', 'parts/w.bin');
    // onnxruntime reads "./w.bin" fine, but a browser could not be told that name safely.
    await writeExternal('dotted', './w.bin');
    await writeExternal('lost', 'gone.bin', '');
    await writeExternal('escape', '../outside.bin');
    server = await createServer({ modelsDir: dir, catalog: false });
  });

  afterAll(async () => {
    await server.close();
    remove();
  });

  it('lists every external file in the manifest, each served by its location with an ETag', async () => {
    const manifest = parseModelManifest(
      (await server.fastify.inject({ url: '/v1/models/big/manifest' })).json(),
    );
    const model = readFileSync(bigPath);
    const weights = readFileSync(join(dirname(bigPath), 'weights.bin'));
    expect(manifest).toMatchObject({
      url: '/v1/models/big/versions/1/model.onnx',
      bytes: model.byteLength,
      sha256: sha256(model),
      externalData: [
        {
          path: 'weights.bin',
          url: '/v1/models/big/versions/1/files/weights.bin',
          bytes: weights.byteLength,
          sha256: sha256(weights),
        },
      ],
    });
    const file = manifest.externalData![0]!;
    const download = await server.fastify.inject({ url: file.url });
    expect(download.statusCode).toBe(200);
    expect(download.rawPayload.equals(weights)).toBe(true);
    expect(download.headers.etag).toBe(`"${file.sha256}"`);
    expect(Number(download.headers['content-length'])).toBe(file.bytes);
    const revalidated = await server.fastify.inject({
      url: file.url,
      headers: { 'if-none-match': `"${file.sha256}"` },
    });
    expect(revalidated.statusCode).toBe(304);

    const nested = parseModelManifest(
      (await server.fastify.inject({ url: '/v1/models/nested/manifest' })).json(),
    );
    expect(nested.externalData?.map((f) => [f.path, f.url])).toEqual([
      ['parts/w.bin', '/v1/models/nested/versions/1/files/parts/w.bin'],
    ]);
    expect((await server.fastify.inject({ url: nested.externalData![0]!.url })).statusCode).toBe(
      200,
    );
  });

  it('serves only files the model references: other paths of the repository are 404', async () => {
    for (const path of [
      'files/other.bin',
      'files/model.json',
      'files/..%2F..%2Fbig%2F1%2Fweights.bin',
      'files/%2E%2E/1/model.onnx',
    ]) {
      const response = await server.fastify.inject({ url: `/v1/models/nested/versions/1/${path}` });
      // Either this route's coded 404 or fastify's own, for a path that names no route at all.
      expect(response.statusCode, path).toBe(404);
    }
  });

  it('offers no download for a location a browser could not use safely, and still runs it', async () => {
    const manifest = parseModelManifest(
      (await server.fastify.inject({ url: '/v1/models/dotted/manifest' })).json(),
    );
    expect(manifest.url).toBeUndefined();
    expect(manifest.externalData).toBeUndefined();
    expect(manifest.inputs?.map((i) => i.name)).toEqual(['x']);
    const response = await infer('dotted');
    expect(response.statusCode).toBe(200);
  });

  it('runs them with outputs equal to onnxruntime-node, counting the weights in the memory budget', async () => {
    const response = await infer('big');
    expect(response.statusCode).toBe(200);
    const probs = response
      .json<{ outputs: { name: string; data: number[] }[] }>()
      .outputs.find((o) => o.name === 'probs')!.data;
    const direct = await runDirect(bigPath, {
      x: { dtype: 'float32', dims: [2, 4], data: new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]) },
    });
    expect(probs).toEqual(Array.from(direct.probs!.data as Float32Array));
    const metrics = await server.fastify.inject({ url: '/metrics' });
    const loaded = metricValue(metrics.body, 'tandem_memory_loaded_bytes');
    const dotted =
      statSync(join(dir, 'dotted', '1', 'model.onnx')).size +
      statSync(join(dir, 'dotted', '1', 'w.bin')).size;
    const big = statSync(bigPath).size + statSync(join(dirname(bigPath), 'weights.bin')).size;
    // "dotted" ran in the test before; each instance counts its model and its weights.
    expect(loaded).toBe(big + dotted);
  });

  it('fails a model whose external file is missing or outside its folder, and keeps serving others', async () => {
    const { models } = (await server.fastify.inject({ url: '/v1/models' })).json<{
      models: ModelStatus[];
    }>();
    const states = Object.fromEntries(models.map((m) => [m.name, [m.state, m.reason]]));
    expect(states.lost).toEqual(['failed', expect.stringContaining('gone.bin')]);
    expect(states.escape).toEqual(['failed', expect.stringContaining('outside')]);
    for (const name of ['lost', 'escape']) {
      const response = await infer(name);
      expect(response.json<{ code: string }>().code, name).toBe('E_MODEL_LOAD_FAILED');
    }
    const ok = await infer('big');
    expect(ok.statusCode).toBe(200);
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
