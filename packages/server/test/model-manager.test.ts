// The model manager's memory budget (memoryBudgetBytes), against a real server on loopback over
// real WebSockets: a model that does not fit evicts the least recently used idle model, never a
// busy one; with every loaded model busy the first instance of a model loads anyway; and the
// autoscaler adds no instance the budget has no room for.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelState } from '@tandem/shared';
import { buildMatMulChainModel, connectClient, type TestClient } from '@tandem/test-support';
import {
  expectSameTensors,
  metricValue,
  resultOf,
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
async function loadedState(url: string): Promise<{ ready: Record<string, number>; bytes: number }> {
  const metrics = await scrapeMetrics(url);
  const ready: Record<string, number> = {};
  for (const model of ['a', 'b', 'c'])
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
