// The OIP model repository extension (`model_repository`, which `GET /v2` advertises) over real
// sockets against a listening server: the index with Triton's state names, load as a warm that
// answers once the model is ready or has failed, unload of idle instances (keep-warm ones stay),
// bodies as Triton clients send them (JSON, or none), and refusals with codes.

import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '@tandem/server';
import {
  buildMlpClassifier,
  buildTinyModel,
  connectClient,
  writeModelFile,
} from '@tandem/test-support';
import {
  expectSameTensors,
  resultOf,
  slowInput,
  startServer,
  writeSlowModel,
  type TestServer,
} from './fixtures.js';
import { writeModelConfig } from './server-fixtures.js';

const MLP = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 11 });
const KEY = 'tk_test_repository';

interface IndexEntry {
  name: string;
  version: string;
  state: string;
  reason: string;
}

describe('oip-repository: index, load and unload', () => {
  let ctx: TestServer;
  const auth = { authorization: `Bearer ${KEY}` };

  /** POSTs `body` (JSON when an object, nothing when undefined) to a /v2/repository path. */
  const post = (path: string, body?: unknown, headers: Record<string, string> = auth) =>
    fetch(`${ctx.url}/v2/repository${path}`, {
      method: 'POST',
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  const index = async (body: unknown = {}): Promise<IndexEntry[]> => {
    const answer = await post('/index', body);
    expect(answer.status).toBe(200);
    return ((await answer.json()) as IndexEntry[]).sort((a, b) =>
      `${a.name}@${a.version}`.localeCompare(`${b.name}@${b.version}`),
    );
  };

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
        await writeModelFile(dir, 'tiny', 1, buildTinyModel().bytes);
        await writeModelFile(dir, 'tiny', 2, buildTinyModel().bytes);
        await writeModelFile(dir, 'warm', 1, buildTinyModel().bytes);
        writeModelConfig(dir, 'warm', 1, { minReady: 1 });
        await writeModelFile(dir, 'broken', 1, new Uint8Array([1, 2, 3, 4]));
        await writeSlowModel(dir);
      },
      { apiKeys: [{ id: 'repo', sha256: hashApiKey(KEY) }] },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('is advertised by GET /v2', async () => {
    const meta = (await (await fetch(`${ctx.url}/v2`)).json()) as { extensions: string[] };
    expect(meta.extensions).toContain('model_repository');
  });

  it('lists every model version with its state; an unloaded one is UNAVAILABLE "unloaded"', async () => {
    const entries = await index();
    const byLabel = new Map(entries.map((e) => [`${e.name}@${e.version}`, e]));
    expect([...byLabel.keys()].sort()).toEqual([
      'broken@1',
      'mlp@1',
      'slow@1',
      'tiny@1',
      'tiny@2',
      'warm@1',
    ]);
    expect(byLabel.get('mlp@1')).toEqual({
      name: 'mlp',
      version: '1',
      state: 'UNAVAILABLE',
      reason: 'unloaded',
    });
    for (const entry of entries) expect(['READY', 'LOADING', 'UNAVAILABLE']).toContain(entry.state);
    // An index request without a body is taken as {}.
    expect((await post('/index')).status).toBe(200);
  });

  it('reads a gzip-compressed body, as the infer route does (tritonclient with request_compression_algorithm)', async () => {
    const answer = await fetch(`${ctx.url}/v2/repository/index`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(JSON.stringify({ ready: true })),
    });
    expect(answer.status).toBe(200);
    const entries = (await answer.json()) as IndexEntry[];
    expect(entries.every((entry) => entry.state === 'READY')).toBe(true);
    const brotli = await fetch(`${ctx.url}/v2/repository/index`, {
      method: 'POST',
      headers: { ...auth, 'content-encoding': 'br' },
      body: '{}',
    });
    expect([brotli.status, ((await brotli.json()) as { code: string }).code]).toEqual([
      415,
      'E_UNSUPPORTED_ENCODING',
    ]);
  });

  it('loads a model (its latest version), answering once it is ready; the index then says READY', async () => {
    const answer = await post('/models/tiny/load', {});
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ name: 'tiny', load: true });
    const entries = await index();
    expect(entries.find((e) => e.name === 'tiny' && e.version === '2')).toMatchObject({
      state: 'READY',
      reason: '',
    });
    expect(entries.find((e) => e.name === 'tiny' && e.version === '1')?.state).toBe('UNAVAILABLE');
    // {ready: true} lists only the models ready now.
    const ready = await index({ ready: true });
    expect(ready.map((e) => `${e.name}@${e.version}`)).toContain('tiny@2');
    expect(ready.every((e) => e.state === 'READY')).toBe(true);
    expect(ready.map((e) => e.name)).not.toContain('mlp');
  });

  it('unloads the idle instances of a model: the index says UNAVAILABLE again', async () => {
    // A load without a body, as the spec allows.
    expect((await post('/models/mlp/load')).status).toBe(200);
    expect((await index()).find((e) => e.name === 'mlp')?.state).toBe('READY');
    const answer = await post('/models/mlp/unload');
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ name: 'mlp', unload: true });
    expect((await index()).find((e) => e.name === 'mlp')).toMatchObject({
      state: 'UNAVAILABLE',
      reason: 'unloaded',
    });
    // Unloaded is not out of service: the next request loads it again.
    const infer = await fetch(`${ctx.url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
      }),
    });
    expect(infer.status).toBe(200);
  });

  it('leaves an instance that is running a job: the job completes, a later unload takes it', async () => {
    expect((await post('/models/slow/load', {})).status).toBe(200);
    const client = await connectClient(ctx.url, { apiKey: KEY });
    client.send({ type: 'infer', id: 'held', model: 'slow', inputs: slowInput(4096, 3) });
    await client.nextOf('progress', (m) => m.event.jobId === 'held' && m.event.stage === 'running');
    expect((await post('/models/slow/unload', {})).status).toBe(200);
    expect((await index()).find((e) => e.name === 'slow')?.state).toBe('READY');
    expectSameTensors(resultOf(await client.collectJob('held')).outputs, {
      y: slowInput(4096, 3).x!,
    });
    expect((await post('/models/slow/unload', {})).status).toBe(200);
    expect((await index()).find((e) => e.name === 'slow')?.state).toBe('UNAVAILABLE');
    await client.close();
  });

  it('keeps the keep-warm instances (model.json minReady) through an unload', async () => {
    expect((await post('/models/warm/load', {})).status).toBe(200);
    expect((await post('/models/warm/unload', {})).status).toBe(200);
    expect((await index()).find((e) => e.name === 'warm')?.state).toBe('READY');
  });

  it('answers a load that fails with its error, and lists the model UNAVAILABLE with the reason', async () => {
    const answer = await post('/models/broken/load', {});
    expect(answer.status).toBe(500);
    const body = (await answer.json()) as { error: string; code: string };
    expect(body.code).toBe('E_MODEL_LOAD_FAILED');
    expect(body.error.length).toBeGreaterThan(0);
    const entry = (await index()).find((e) => e.name === 'broken');
    expect(entry?.state).toBe('UNAVAILABLE');
    expect(entry?.reason).not.toBe('');
    expect(entry?.reason).not.toBe('unloaded');
  });

  it('refuses unknown models, config overrides, bad bodies and missing keys with codes', async () => {
    const cases: [Response, number, string][] = [
      [await post('/models/nope/load', {}), 404, 'E_MODEL_NOT_FOUND'],
      [await post('/models/nope/unload', {}), 404, 'E_MODEL_NOT_FOUND'],
      [
        await post('/models/tiny/load', { parameters: { config: '{"max_batch_size": 8}' } }),
        400,
        'E_INVALID_ARGUMENT',
      ],
      [await post('/index', { ready: 'yes' }), 400, 'E_INVALID_ARGUMENT'],
      [await post('/index', [1]), 400, 'E_INVALID_ARGUMENT'],
      [await post('/index', {}, {}), 401, 'E_UNAUTHORIZED'],
      [await post('/models/tiny/load', {}, {}), 401, 'E_UNAUTHORIZED'],
    ];
    for (const [answer, status, code] of cases) {
      expect([answer.status, ((await answer.json()) as { code: string }).code]).toEqual([
        status,
        code,
      ]);
    }
  });
});
