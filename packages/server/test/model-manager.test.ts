// The model manager, against a real server on loopback over real WebSockets. The memory budget
// (memoryBudgetBytes): a model that does not fit evicts the least recently used idle model, never
// a busy one; with every loaded model busy the first instance of a model loads anyway; and the
// autoscaler adds no instance the budget has no room for (nor evicts idle models for one that
// cannot fit anyway). Files replaced while the server runs:
// a model whose first copy was unreadable serves once a whole file replaces it, and a replaced
// model serves new jobs from the new file while its old instance unloads.

import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ModelState, TensorMap } from '@tandem/shared';
import {
  buildMatMulChainModel,
  buildMlpClassifier,
  buildTinyModel,
  connectClient,
  createPrng,
  MODEL_FILE_NAME,
  writeModelFile,
  type JobLog,
  type TestClient,
} from '@tandem/test-support';
import {
  bytesOf,
  errorCodeOf,
  expectSameTensors,
  metricValue,
  resultOf,
  runDirect,
  scrapeMetrics,
  slowInput,
  startServer,
  writeSlowModel,
  type TestServer,
} from './fixtures.js';
import { writeModelConfig } from './server-fixtures.js';

/** Bytes of one slow-model file: what the budget counts per instance. */
const MODEL_BYTES = buildMatMulChainModel().length;
/** Room for two instances, not three. */
const BUDGET_BYTES = Math.floor(2.5 * MODEL_BYTES);
/** Rows of a job that keeps its instance busy (hundreds of ms) while the test loads another. */
const LONG_ROWS = 1024;

/** States announced for a model in `model` messages since `from` (an index into received). */
function announcedStates(client: TestClient, name: string, from = 0): ModelState[] {
  return client.received
    .slice(from)
    .flatMap((m) => (m.type === 'model' && m.model.name === name ? [m.model.state] : []));
}

/** Runs one small job on `model` and checks its output (y = x). */
async function runSmall(client: TestClient, id: string, model: string): Promise<void> {
  const log = await client.infer({ id, model, inputs: slowInput(1, id.length) });
  expectSameTensors(resultOf(log).outputs, { y: slowInput(1, id.length).x! });
}

/** Sends a long job to `model` and waits until it runs; resolves to a check of its result. */
async function occupy(client: TestClient, id: string, model: string): Promise<() => Promise<void>> {
  client.send({ type: 'infer', id, model, inputs: slowInput(LONG_ROWS, 3) });
  await client.nextOf('progress', (m) => m.event.jobId === id && m.event.stage === 'running');
  return async () => {
    expectSameTensors(resultOf(await client.collectJob(id)).outputs, {
      y: slowInput(LONG_ROWS, 3).x!,
    });
  };
}

/** Ready instances of each model, and the bytes the budget counts, from /metrics. */
async function loadedState(
  url: string,
  models: readonly string[] = ['a', 'b', 'c'],
): Promise<{ ready: Record<string, number>; bytes: number }> {
  const metrics = await scrapeMetrics(url);
  const ready: Record<string, number> = {};
  for (const model of models)
    ready[model] = metricValue(metrics, 'tandem_model_instances', { model, state: 'ready' }) ?? 0;
  return { ready, bytes: metricValue(metrics, 'tandem_memory_loaded_bytes') ?? NaN };
}

describe('model-manager: memory budget', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        for (const name of ['a', 'b', 'c']) await writeSlowModel(dir, name);
      },
      { memoryBudgetBytes: BUDGET_BYTES },
    );
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('evicts the least recently used idle model to load one that does not fit', async () => {
    await runSmall(client, 'a-1', 'a');
    await runSmall(client, 'b-1', 'b');
    // a is used again: b is now the least recently used.
    await runSmall(client, 'a-2', 'a');
    const from = client.received.length;
    await runSmall(client, 'c-1', 'c');
    await client.nextOf('model', (m) => m.model.name === 'b' && m.model.state === 'unloaded');
    expect(announcedStates(client, 'a', from)).toEqual([]);
    expect(await loadedState(ctx.url)).toEqual({
      ready: { a: 1, b: 0, c: 1 },
      bytes: 2 * MODEL_BYTES,
    });
  });

  it('never evicts a busy model, even when it is the least recently used', async () => {
    // Loaded: a (least recently used), c. While a runs, b needs room: c goes, not a.
    const from = client.received.length;
    const longJob = await occupy(client, 'a-long', 'a');
    await runSmall(client, 'b-2', 'b');
    await client.nextOf('model', (m) => m.model.name === 'c' && m.model.state === 'unloaded');
    await longJob();
    expect(announcedStates(client, 'a', from)).toEqual([]);
    expect(await loadedState(ctx.url)).toEqual({
      ready: { a: 1, b: 1, c: 0 },
      bytes: 2 * MODEL_BYTES,
    });
  });

  it('loads a first instance past the budget when every loaded model is busy', async () => {
    // Loaded: a and b, both running: nothing may be evicted, and c still gets served.
    const from = client.received.length;
    const longA = await occupy(client, 'a-long-2', 'a');
    const longB = await occupy(client, 'b-long', 'b');
    await runSmall(client, 'c-2', 'c');
    await longA();
    await longB();
    expect(announcedStates(client, 'a', from)).toEqual([]);
    expect(announcedStates(client, 'b', from)).toEqual([]);
    expect(await loadedState(ctx.url)).toEqual({
      ready: { a: 1, b: 1, c: 1 },
      bytes: 3 * MODEL_BYTES,
    });
  });
});

describe('model-manager: the autoscaler within the memory budget', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir, 'scaled');
        writeModelConfig(dir, 'scaled', 1, { maxInstances: 2 });
      },
      // Room for one instance; any queue would otherwise scale (see model-host.test.ts).
      { memoryBudgetBytes: Math.floor(1.5 * MODEL_BYTES), scaleUpQueueDepth: 1 },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('adds no instance the budget has no room for, and serves the burst with one', async () => {
    const client = await connectClient(ctx.url);
    const ids = Array.from({ length: 6 }, (_, i) => `burst-${i}`);
    // Over the inline input limit, so each job runs in the worker (see model-host.test.ts).
    for (const [i, id] of ids.entries())
      client.send({ type: 'infer', id, model: 'scaled', inputs: slowInput(320, i) });
    for (const [i, id] of ids.entries())
      expectSameTensors(resultOf(await client.collectJob(id)).outputs, { y: slowInput(320, i).x! });
    const instances = client.received.flatMap((m) =>
      m.type === 'model' && m.model.name === 'scaled' ? [m.model.instances] : [],
    );
    expect(instances).toContain(1);
    expect(Math.max(...instances)).toBe(1);
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_memory_loaded_bytes')).toBe(MODEL_BYTES);
    await client.close();
  });
});

describe('model-manager: an extra instance that cannot fit', () => {
  /** A small model beside the slow one: evicting it cannot make room for a second slow one. */
  const SMALL = buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 7 });
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir, 'scaled');
        writeModelConfig(dir, 'scaled', 1, { maxInstances: 2 });
        await writeModelFile(dir, 'small', 1, SMALL.bytes);
      },
      // Room for one slow instance and the small model, never for two slow ones.
      { memoryBudgetBytes: Math.floor(1.5 * MODEL_BYTES), scaleUpQueueDepth: 1 },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('evicts no idle model for an instance the budget has no room for anyway', async () => {
    expect(SMALL.bytes.length).toBeLessThan(MODEL_BYTES / 2);
    const client = await connectClient(ctx.url);
    const small = await fetch(`${ctx.url}/v1/models/small/warm?wait=true`, { method: 'POST' });
    expect(small.status).toBe(200);
    // The socket may hear of the load after the HTTP answer: count from after that message.
    await client.nextOf('model', (m) => m.model.name === 'small' && m.model.state === 'ready');
    const from = client.received.length;
    const ids = Array.from({ length: 6 }, (_, i) => `fit-${i}`);
    // Over the inline input limit, so each job runs in the worker and the queue stays deep.
    for (const [i, id] of ids.entries())
      client.send({ type: 'infer', id, model: 'scaled', inputs: slowInput(320, i) });
    for (const [i, id] of ids.entries())
      expectSameTensors(resultOf(await client.collectJob(id)).outputs, { y: slowInput(320, i).x! });
    expect(announcedStates(client, 'small', from)).toEqual([]);
    expect(await loadedState(ctx.url, ['scaled', 'small'])).toEqual({
      ready: { scaled: 1, small: 1 },
      bytes: MODEL_BYTES + SMALL.bytes.length,
    });
    await client.close();
  });
});

describe('model-manager: files replaced while the server runs', () => {
  const V1 = buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 1 });
  const V2 = buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 2 });
  const rows = (): TensorMap => {
    const prng = createPrng(5);
    const data = new Float32Array(2 * V1.features);
    for (let i = 0; i < data.length; i++) data[i] = prng.uniform(-2, 2);
    return { x: { dtype: 'float32', dims: [2, V1.features], data } };
  };
  let ctx: TestServer;
  let client: TestClient;

  beforeEach(async () => {
    ctx = await startServer(async (dir) => {
      await writeModelFile(dir, 'swap', 1, V1.bytes);
      // What a scan finds while a copy is still being written: not yet an ONNX model.
      await writeModelFile(dir, 'late', 1, new TextEncoder().encode('half a copy'));
    });
    client = await connectClient(ctx.url);
  });
  afterEach(async () => {
    await client.close();
    await ctx.close();
  });

  /**
   * Sends jobs until one is not answered with `stale`'s code or output; the repository rescans at
   * most once a second, so this is a bounded poll (about 4 s), not a wait for a fixed time.
   */
  async function inferUntil(
    model: string,
    inputs: TensorMap,
    done: (log: JobLog) => boolean,
  ): Promise<JobLog> {
    let log = await client.infer({ id: `${model}-0`, model, inputs });
    for (let attempt = 1; !done(log) && attempt < 40; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      log = await client.infer({ id: `${model}-${attempt}`, model, inputs });
    }
    return log;
  }

  it('serves a model whose first copy was unreadable once a whole file replaces it', async () => {
    const tiny = buildTinyModel();
    const inputs: TensorMap = {
      x: { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) },
    };
    const before = await client.infer({ id: 'late-before', model: 'late', inputs });
    expect(errorCodeOf(before)).toBe('E_MODEL_LOAD_FAILED');
    expect(ctx.server.manager.host('late').state).toBe('failed');

    await writeModelFile(ctx.modelsDir, 'late', 1, tiny.bytes);
    const after = await inferUntil('late', inputs, (log) => log.error === undefined);
    expect(Array.from(resultOf(after).outputs.y!.data as Float32Array)).toEqual([3, 5]);
    expect(ctx.server.manager.host('late').state).toBe('ready');
  });

  it('serves new jobs from a replaced file and unloads the old instance', async () => {
    const path = join(ctx.modelsDir, 'swap', '1', MODEL_FILE_NAME);
    const expectedV1 = await runDirect(path, rows());
    expectSameTensors(
      resultOf(await client.infer({ id: 'v1', model: 'swap', inputs: rows() })).outputs,
      expectedV1,
    );

    // Same size, same path, same inode: only the modification time and the bytes differ.
    expect(V2.bytes.length).toBe(V1.bytes.length);
    await writeFile(path, V2.bytes);
    const expectedV2 = await runDirect(path, rows());
    expect(bytesOf(expectedV2.probs!).equals(bytesOf(expectedV1.probs!))).toBe(false);
    const log = await inferUntil(
      'swap',
      rows(),
      (answer) =>
        answer.error !== undefined ||
        bytesOf(resultOf(answer).outputs.probs!).equals(bytesOf(expectedV2.probs!)),
    );
    expectSameTensors(resultOf(log).outputs, expectedV2);

    // The old instance drains and unloads: one ready instance, one file's bytes in the budget.
    let metrics = await scrapeMetrics(ctx.url);
    for (let attempt = 0; attempt < 40; attempt++) {
      if (metricValue(metrics, 'tandem_memory_loaded_bytes') === V2.bytes.length) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
      metrics = await scrapeMetrics(ctx.url);
    }
    expect(metricValue(metrics, 'tandem_memory_loaded_bytes')).toBe(V2.bytes.length);
    expect(metricValue(metrics, 'tandem_model_instances', { model: 'swap', state: 'ready' })).toBe(
      1,
    );
  });
});

describe('model-manager: models removed while the server runs', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeSlowModel(dir, 'kept');
      await writeSlowModel(dir, 'gone');
      // Keep-warm: neither idles out, so only the removal can unload 'gone'.
      writeModelConfig(dir, 'kept', 1, { minReady: 1 });
      writeModelConfig(dir, 'gone', 1, { minReady: 1 });
    });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('unloads a keep-warm model whose folder was deleted, and refuses it E_MODEL_NOT_FOUND', async () => {
    for (const model of ['kept', 'gone']) {
      const warm = await fetch(`${ctx.url}/v1/models/${model}/warm?wait=true`, { method: 'POST' });
      expect(warm.status, model).toBe(200);
    }
    const loadedBytes = async (): Promise<number> =>
      metricValue(await scrapeMetrics(ctx.url), 'tandem_memory_loaded_bytes') ?? NaN;
    expect(await loadedBytes()).toBe(2 * MODEL_BYTES);

    await rm(join(ctx.modelsDir, 'gone'), { recursive: true });
    // The repository rescans at most once a second and the unload takes a worker's exit: a
    // bounded poll (about 4 s) of what /metrics counts.
    for (let i = 0; i < 80 && (await loadedBytes()) !== MODEL_BYTES; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await loadedBytes()).toBe(MODEL_BYTES);
    const client = await connectClient(ctx.url);
    const log = await client.infer({ id: 'gone-1', model: 'gone', inputs: slowInput(1) });
    expect(errorCodeOf(log)).toBe('E_MODEL_NOT_FOUND');
    await runSmall(client, 'kept-1', 'kept');
    await client.close();
  });
});
