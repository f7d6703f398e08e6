// Integration tests of a model's lifecycle and scheduler, driven over real WebSockets against a
// real server on loopback: cold start then warm (progress stages and fractions), the `warm` wake-up
// call, scale to zero after idleTimeoutMs (seen in `model` messages and /metrics), load failures
// of corrupt files while other models keep serving, the bounded queue (E_BUSY), cancellation,
// deadlines and priorities, the autoscaler (maxInstances) and keep-warm (minReady), and an instance
// whose worker thread dies.

import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { InferenceSession, listSupportedBackends } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ModelState, ResultMessage, TensorMap } from '@tandem/shared';
import {
  buildMlpClassifier,
  buildTinyModel,
  buildModel,
  connectClient,
  createPrng,
  realModelPath,
  writeModelFile,
  type TestClient,
} from '@tandem/test-support';
import {
  errorCodeOf,
  expectMonotoneFractions,
  expectSameTensors,
  metricValue,
  resultOf,
  scrapeMetrics,
  slowInput,
  stagesOf,
  startServer,
  writeSlowModel,
  type TestServer,
} from './fixtures.js';
import { GROUP_MAX_JOBS } from '../src/model-host.js';
import { writeModelConfig } from './server-fixtures.js';

const MLP = buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 5 });

function mlpInput(rows = 2): TensorMap {
  const prng = createPrng(rows);
  const data = new Float32Array(rows * MLP.features);
  for (let i = 0; i < data.length; i++) data[i] = prng.uniform(-1, 1);
  return { x: { dtype: 'float32', dims: [rows, MLP.features], data } };
}

/** Rows of a job that keeps the slow model's one instance busy for a while (tens of ms or more). */
const BUSY_ROWS = 1024;

/** Waits for a `model` message saying `name` reached `state`. */
async function modelState(client: TestClient, name: string, state: ModelState): Promise<void> {
  await client.nextOf('model', (m) => m.model.name === name && m.model.state === state);
}

/** States announced for a model so far, in order. */
function announcedStates(client: TestClient, name: string): ModelState[] {
  return client.received.flatMap((m) =>
    m.type === 'model' && m.model.name === name ? [m.model.state] : [],
  );
}

/** Ids (starting with `prefix`) of the results received so far, in arrival order. */
function resultOrder(client: TestClient, prefix: string): string[] {
  return client.received.flatMap((m) =>
    m.type === 'result' && m.id.startsWith(prefix) ? [m.id] : [],
  );
}

describe('model-host: cold start, then warm', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      for (const name of ['mlp', 'mlp-ws-warm', 'mlp-http-warm'])
        await writeModelFile(dir, name, 1, MLP.bytes);
    });
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('streams queued → loading → warmup → running with a rising fraction, then a cold result', async () => {
    const log = await client.infer({ id: 'cold', model: 'mlp', inputs: mlpInput() });
    const result = resultOf(log);
    // Queued comes from submit(), before the load it triggers starts; each later stage is
    // reported when the instance changes state or the job starts running.
    expect(stagesOf(log.progress)).toEqual(['queued', 'loading', 'warmup', 'running']);
    expect(log.progress[0]!.queuePosition).toBe(0);
    expect(log.progress.every((event) => event.where === 'remote' && event.model === 'mlp')).toBe(
      true,
    );
    expectMonotoneFractions(log.progress);
    expect(result.coldStart).toBe(true);
    expect(result.timings.loadMs).toBeGreaterThan(0);
    expect(result.timings.totalMs).toBeGreaterThanOrEqual(result.timings.runMs);
    // Timings go out to the microsecond, not as full-precision doubles.
    for (const ms of Object.values(result.timings)) {
      expect(Math.abs(ms * 1000 - Math.round(ms * 1000))).toBeLessThan(1e-6);
    }
    expect(announcedStates(client, 'mlp')).toEqual(['loading', 'warming', 'ready']);
  });

  it('runs the next job warm: no loading stage, coldStart false, an ETA from measurements', async () => {
    const log = await client.infer({ id: 'warm-1', model: 'mlp', inputs: mlpInput() });
    expect(stagesOf(log.progress)).toEqual(['queued', 'running']);
    expectMonotoneFractions(log.progress);
    expect(resultOf(log).coldStart).toBe(false);
    expect(log.progress[0]!.etaMs).toBeGreaterThanOrEqual(0);
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_cold_starts_total', { model: 'mlp' })).toBe(1);
  });

  it('loads on a `warm` message so the first job has no loading stage', async () => {
    client.send({ type: 'warm', model: 'mlp-ws-warm' });
    await modelState(client, 'mlp-ws-warm', 'ready');
    const log = await client.infer({ id: 'ws-warmed', model: 'mlp-ws-warm', inputs: mlpInput() });
    expect(stagesOf(log.progress)).toEqual(['queued', 'running']);
    expect(resultOf(log).coldStart).toBe(false);
  });

  it('loads on POST /v1/models/:name/warm?wait=true so the first job has no loading stage', async () => {
    const response = await fetch(`${ctx.url}/v1/models/mlp-http-warm/warm?wait=true`, {
      method: 'POST',
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { state: string }).state).toBe('ready');
    const log = await client.infer({
      id: 'http-warmed',
      model: 'mlp-http-warm',
      inputs: mlpInput(),
    });
    expect(stagesOf(log.progress)).toEqual(['queued', 'running']);
    expect(resultOf(log).coldStart).toBe(false);
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_cold_starts_total', { model: 'mlp-http-warm' })).toBe(
      undefined,
    );
  });
});

describe('model-host: scale to zero', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      { idleTimeoutMs: 300 },
    );
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('unloads an idle model after idleTimeoutMs, visible in model messages and /metrics', async () => {
    resultOf(await client.infer({ id: 'before', model: 'mlp', inputs: mlpInput() }));
    let metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_model_instances', { model: 'mlp', state: 'ready' })).toBe(
      1,
    );
    await modelState(client, 'mlp', 'unloaded');
    metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_model_instances', { model: 'mlp', state: 'ready' })).toBe(
      0,
    );
    expect(metricValue(metrics, 'tandem_memory_loaded_bytes')).toBe(0);
    const listed = (await (await fetch(`${ctx.url}/v1/models`)).json()) as {
      models: { name: string; state: string }[];
    };
    expect(listed.models.find((m) => m.name === 'mlp')?.state).toBe('unloaded');
    // From zero, the next job is a cold start again.
    const log = await client.infer({ id: 'after', model: 'mlp', inputs: mlpInput() });
    expect(resultOf(log).coldStart).toBe(true);
    expect(stagesOf(log.progress)).toContain('loading');
  });
});

describe('model-host: corrupt model files fail alone', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      const prng = createPrng(42);
      await writeModelFile(
        dir,
        'garbage',
        1,
        Uint8Array.from({ length: 4096 }, () => prng.integer(0, 255)),
      );
      const real = readFileSync(realModelPath('paddleocr-cls'));
      await writeModelFile(dir, 'truncated', 1, real.subarray(0, Math.floor(real.length * 0.6)));
      // Well-formed ONNX whose metadata reads fine, but onnxruntime cannot create a session.
      await writeModelFile(
        dir,
        'unknown-op',
        1,
        buildModel({
          inputs: [{ name: 'x', dtype: 'float32', dims: ['n'] }],
          outputs: [{ name: 'y', dtype: 'float32', dims: ['n'] }],
          nodes: [{ opType: 'NoSuchOperator', inputs: ['x'], outputs: ['y'] }],
        }),
      );
    });
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('reports unreadable files as failed, with a reason, in welcome and /metrics', async () => {
    const models = client.welcome!.models;
    for (const name of ['garbage', 'truncated']) {
      const status = models.find((m) => m.name === name);
      expect(status?.state, name).toBe('failed');
      expect(status?.reason, name).toBeTruthy();
    }
    expect(models.find((m) => m.name === 'mlp')?.state).toBe('unloaded');
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_model_failed', { model: 'garbage' })).toBe(1);
    expect(metricValue(metrics, 'tandem_model_failed', { model: 'mlp' })).toBe(0);
  });

  it('answers jobs for them with E_MODEL_LOAD_FAILED while the good model keeps serving', async () => {
    const x: TensorMap = { x: { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) } };
    const cls: TensorMap = {
      x: { dtype: 'float32', dims: [1, 3, 48, 192], data: new Float32Array(3 * 48 * 192) },
    };
    const jobs: [string, string, TensorMap][] = [
      ['good-1', 'mlp', mlpInput()],
      ['bad-garbage', 'garbage', x],
      ['bad-truncated', 'truncated', cls],
      ['bad-op', 'unknown-op', x],
      ['good-2', 'mlp', mlpInput(3)],
    ];
    for (const [id, model, inputs] of jobs) client.send({ type: 'infer', id, model, inputs });
    const logs = new Map(
      await Promise.all(jobs.map(async ([id]) => [id, await client.collectJob(id)] as const)),
    );
    for (const id of ['bad-garbage', 'bad-truncated', 'bad-op'])
      expect(errorCodeOf(logs.get(id)!), id).toBe('E_MODEL_LOAD_FAILED');
    for (const id of ['good-1', 'good-2']) resultOf(logs.get(id)!);
    // The session failed in its worker thread: the model is announced failed, with a reason.
    const failed = client.received.find(
      (m) => m.type === 'model' && m.model.name === 'unknown-op' && m.model.state === 'failed',
    );
    expect(failed?.type === 'model' && failed.model.reason).toBeTruthy();
    // A wake-up call for a failed model is answered with the code too.
    client.send({ type: 'warm', model: 'garbage' });
    expect((await client.nextOf('error', (m) => m.id === null)).code).toBe('E_MODEL_LOAD_FAILED');
    resultOf(await client.infer({ id: 'good-3', model: 'mlp', inputs: mlpInput() }));
    // Each refused job counted once: refused at once (garbage, truncated) or failed in the queue
    // when its session could not be created (unknown-op); the warm of garbage counts too.
    const metrics = await scrapeMetrics(ctx.url);
    const refused = (model: string): number | undefined =>
      metricValue(metrics, 'tandem_rejections_total', { model, code: 'E_MODEL_LOAD_FAILED' });
    expect([refused('garbage'), refused('truncated'), refused('unknown-op')]).toEqual([2, 1, 1]);
  });
});

describe('model-host: scheduler (one busy instance)', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeSlowModel(dir);
    });
    const warm = await fetch(`${ctx.url}/v1/models/slow/warm?wait=true`, { method: 'POST' });
    expect(warm.status).toBe(200);
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  /** Sends a job that occupies the instance, and waits until it runs. */
  async function occupy(id: string): Promise<void> {
    client.send({ type: 'infer', id, model: 'slow', inputs: slowInput(BUSY_ROWS) });
    await client.nextOf('progress', (m) => m.event.jobId === id && m.event.stage === 'running');
  }

  function quick(id: string, priority?: number, deadlineMs?: number): void {
    client.send({
      type: 'infer',
      id,
      model: 'slow',
      inputs: slowInput(1, id.length),
      ...(priority === undefined ? {} : { priority }),
      ...(deadlineMs === undefined ? {} : { deadlineMs }),
    });
  }

  it('runs a high-priority job before low-priority jobs queued earlier', async () => {
    await occupy('p-busy');
    quick('p-low-1', 1);
    quick('p-low-2', 1);
    quick('p-low-3', 1);
    quick('p-high', 9);
    for (const id of ['p-busy', 'p-low-1', 'p-low-2', 'p-low-3', 'p-high'])
      resultOf(await client.collectJob(id));
    expect(resultOrder(client, 'p-')).toEqual([
      'p-busy',
      'p-high',
      'p-low-1',
      'p-low-2',
      'p-low-3',
    ]);
  });

  it('cancels a queued job with E_CANCELLED; it never runs and the others complete', async () => {
    await occupy('c-busy');
    quick('c-1');
    quick('c-2');
    quick('c-3');
    client.send({ type: 'cancel', id: 'c-2' });
    const cancelled = await client.collectJob('c-2');
    expect(errorCodeOf(cancelled)).toBe('E_CANCELLED');
    // Cancelled while c-busy still ran: nothing after the cancel came for it.
    expect(client.received.some((m) => m.type === 'result' && m.id === 'c-busy')).toBe(false);
    for (const id of ['c-busy', 'c-1', 'c-3']) resultOf(await client.collectJob(id));
    await client.roundTrip();
    expect(resultOrder(client, 'c-')).toEqual(['c-busy', 'c-1', 'c-3']);
  });

  it('cancels a running job: E_CANCELLED, and its result is dropped', async () => {
    await occupy('x-busy');
    client.send({ type: 'cancel', id: 'x-busy' });
    expect(errorCodeOf(await client.collectJob('x-busy'))).toBe('E_CANCELLED');
    // The next job runs after the cancelled run ends; by its result, a leaked one would be in.
    quick('x-next');
    resultOf(await client.collectJob('x-next'));
    await client.roundTrip();
    expect(resultOrder(client, 'x-')).toEqual(['x-next']);
  });

  it('fails a job with E_DEADLINE_EXCEEDED while it waits, never running it late', async () => {
    await occupy('d-busy');
    quick('d-tight', 5, 20);
    quick('d-loose', 5, 60_000);
    expect(errorCodeOf(await client.collectJob('d-tight'))).toBe('E_DEADLINE_EXCEEDED');
    // It failed at its deadline, while the job ahead of it was still running.
    expect(resultOrder(client, 'd-')).toEqual([]);
    resultOf(await client.collectJob('d-busy'));
    resultOf(await client.collectJob('d-loose'));
    const metrics = await scrapeMetrics(ctx.url);
    expect(
      metricValue(metrics, 'tandem_rejections_total', {
        model: 'slow',
        code: 'E_DEADLINE_EXCEEDED',
      }),
    ).toBe(1);
  });

  it('runs a queued job whose deadline lies further ahead than one timer reaches (2^31 ms)', async () => {
    // setTimeout keeps 32 bits: a 35-day deadline fired after 1 ms and failed the job at once.
    await occupy('far-busy');
    quick('far', 5, 3e9);
    resultOf(await client.collectJob('far-busy'));
    resultOf(await client.collectJob('far'));
  });
});

describe('model-host: a failure only new files cure', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      // Input `x` is bfloat16, a type onnxruntime's JavaScript API cannot feed.
      const bytes = buildModel({
        inputs: [
          { name: 'x', dtype: 'uint16', dims: [2], elemType: 16 },
          { name: 'ok', dtype: 'float32', dims: [2] },
        ],
        outputs: [{ name: 'y', dtype: 'float32', dims: [2] }],
        nodes: [{ opType: 'Identity', inputs: ['ok'], outputs: ['y'] }],
      });
      await writeModelFile(dir, 'bf16', 1, bytes);
    });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('keeps a model with unsupported tensor types failed through a `warm`', async () => {
    const warm = await fetch(`${ctx.url}/v1/models/bf16/warm?wait=true`, { method: 'POST' });
    const body = (await warm.json()) as { code?: string };
    expect(body.code).toBe('E_MODEL_LOAD_FAILED');
    const host = ctx.server.manager.host('bf16');
    expect(host.state).toBe('failed');
    expect(host.failure).toContain('unsupported tensor types for x');
    expect(host.status().instances).toBe(0);
  });
});

describe('model-host: deadlines in a dynamic batch', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeSlowModel(dir, 'batched');
      writeModelConfig(dir, 'batched', 1, { maxBatch: 8, maxDelayMs: 5 });
    });
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('fails a batch member its run estimate says would finish late, never starting it', async () => {
    // One long run makes the run estimate long.
    const long = resultOf(
      await client.infer({ id: 'b-long', model: 'batched', inputs: slowInput(BUSY_ROWS) }),
    );
    const deadlineMs = Math.max(1, Math.round(long.timings.runMs / 2));
    // The head has no deadline; the member behind it joins its batch, which waits up to 5 ms for
    // more rows. By the estimate the member cannot finish within its deadline.
    client.send({ type: 'infer', id: 'b-head', model: 'batched', inputs: slowInput(1, 1) });
    client.send({
      type: 'infer',
      id: 'b-member',
      model: 'batched',
      inputs: slowInput(1, 2),
      deadlineMs,
    });
    const member = await client.collectJob('b-member');
    expect(errorCodeOf(member)).toBe('E_DEADLINE_EXCEEDED');
    expect(stagesOf(member.progress)).not.toContain('running');
    expectSameTensors(resultOf(await client.collectJob('b-head')).outputs, {
      y: slowInput(1, 1).x!,
    });
  });
});

describe('model-host: an instance whose worker thread dies', () => {
  it('is replaced: the next job loads a new instance instead of failing on the dead one', async () => {
    const ctx = await startServer(async (dir) => {
      await writeSlowModel(dir);
    });
    const client = await connectClient(ctx.url);
    // The session worker is this process's own: note the workers the load starts, to end one
    // from outside as a crash (an uncaught error, a resource limit) would. Ended while idle: a
    // worker ended inside onnxruntime-node's native run takes the whole process down.
    const on = vi.spyOn(Worker.prototype, 'on');
    let started: Set<Worker>;
    try {
      const warm = await fetch(`${ctx.url}/v1/models/slow/warm?wait=true`, { method: 'POST' });
      expect(warm.status).toBe(200);
    } finally {
      started = new Set(on.mock.contexts as Worker[]);
      on.mockRestore();
    }
    expect(started.size).toBeGreaterThan(0);
    await Promise.all([...started].map((worker) => worker.terminate()));
    await modelState(client, 'slow', 'unloaded');
    client.send({ type: 'infer', id: 'w-next', model: 'slow', inputs: slowInput(1, 7) });
    const next = await client.collectJob('w-next');
    expectSameTensors(resultOf(next).outputs, { y: slowInput(1, 7).x! });
    expect(resultOf(next).coldStart).toBe(true);
    expect(stagesOf(next.progress)).toContain('loading');
    await client.close();
    await ctx.close();
  });
});

describe('model-host: a keep-warm instance whose worker thread dies', () => {
  it('is loaded again at once, with no job asking, so the next job is still warm', async () => {
    // Note the session workers the keep-warm load at start makes (see the test above).
    const on = vi.spyOn(Worker.prototype, 'on');
    let ctx: TestServer | undefined;
    let started: Set<Worker>;
    let client: TestClient;
    try {
      ctx = await startServer(async (dir) => {
        await writeSlowModel(dir, 'kept');
        writeModelConfig(dir, 'kept', 1, { minReady: 1 });
      });
      client = await connectClient(ctx.url);
      if (client.welcome!.models.find((m) => m.name === 'kept')?.state !== 'ready')
        await modelState(client, 'kept', 'ready');
    } finally {
      started = new Set(on.mock.contexts as Worker[]);
      on.mockRestore();
    }
    expect(started.size).toBeGreaterThan(0);
    await Promise.all([...started].map((worker) => worker.terminate()));
    const lost = await client.nextOf(
      'model',
      (m) => m.model.name === 'kept' && m.model.state === 'unloaded',
    );
    // No job, no warm: minReady alone brings it back (a load takes well under the guard).
    const lostAt = client.received.indexOf(lost);
    await client.nextOf(
      'model',
      (m) =>
        m.model.name === 'kept' && m.model.state === 'ready' && client.received.indexOf(m) > lostAt,
      10_000,
    );
    const log = await client.infer({ id: 'after-loss', model: 'kept', inputs: slowInput(1, 2) });
    expect(resultOf(log).coldStart).toBe(false);
    await client.close();
    await ctx.close();
  });
});

describe('model-host: a full queue answers E_BUSY', () => {
  const MAX_QUEUE = 2;
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir);
      },
      { maxQueue: MAX_QUEUE },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('refuses jobs past maxQueue with a retryable E_BUSY and retryAfterMs, and serves the rest', async () => {
    const client = await connectClient(ctx.url);
    const ids = Array.from({ length: 12 }, (_, i) => `q-${i}`);
    // Sent at once while the model is still cold: at most one job runs and MAX_QUEUE wait.
    for (const id of ids)
      client.send({ type: 'infer', id, model: 'slow', inputs: slowInput(BUSY_ROWS, id.length) });
    const logs = await Promise.all(ids.map((id) => client.collectJob(id)));
    const busy = logs.filter((log) => log.error !== undefined);
    const done = logs.filter((log) => log.result !== undefined);
    expect(busy.length + done.length).toBe(ids.length);
    expect(done.length).toBeGreaterThanOrEqual(MAX_QUEUE);
    expect(busy.length).toBeGreaterThanOrEqual(1);
    // No accepted job ever waited behind MAX_QUEUE others.
    for (const log of done) {
      for (const event of log.progress) expect(event.queuePosition ?? 0).toBeLessThan(MAX_QUEUE);
    }
    for (const log of busy) {
      expect(log.error.code).toBe('E_BUSY');
      expect(log.error.retryable).toBe(true);
      expect(log.error.retryAfterMs).toBeGreaterThan(0);
    }
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_rejections_total', { model: 'slow', code: 'E_BUSY' })).toBe(
      busy.length,
    );
    // Once the queue has drained the server takes work again.
    const again: ResultMessage = resultOf(
      await client.infer({ id: 'q-again', model: 'slow', inputs: slowInput(1) }),
    );
    expect(again.outputs.y?.dims).toEqual([1, 256]);
    await client.close();
  });
});

describe('model-host: E_BUSY while the model is cold', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    // Many layers: a load takes hundreds of ms (graph optimisation), a one-row run a few.
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir, 'slowload', 2000);
      },
      { maxQueue: 2 },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('hints at a retry after the cold start it measured, not after one run', async () => {
    // A first load measures the cold start; the model then scales to zero (unload).
    const warm = await fetch(`${ctx.url}/v1/models/slowload/warm?wait=true`, { method: 'POST' });
    expect(warm.status).toBe(200);
    const unload = await fetch(`${ctx.url}/v2/repository/models/slowload/unload`, {
      method: 'POST',
    });
    expect(unload.status).toBe(200);
    const client = await connectClient(ctx.url);
    const ids = Array.from({ length: 6 }, (_, i) => `cold-${i}`);
    for (const id of ids)
      client.send({ type: 'infer', id, model: 'slowload', inputs: slowInput(1, id.length) });
    const logs = await Promise.all(ids.map((id) => client.collectJob(id)));
    const done = logs.flatMap((log) => (log.result === undefined ? [] : [log.result]));
    const busy = logs.flatMap((log) => (log.error === undefined ? [] : [log.error]));
    expect(done.length).toBe(2);
    expect(busy.map((error) => error.code)).toEqual(Array(4).fill('E_BUSY'));
    // Nothing left the queue before the cold start ended: a retry sooner found it as full.
    const coldStartMs = Math.min(...done.map((r) => r.timings.loadMs + r.timings.warmupMs));
    for (const error of busy) expect(error.retryAfterMs).toBeGreaterThan(coldStartMs / 2);
    await client.close();
  });
});

/** Instance counts announced for a model in `model` messages since `from` (an index into received). */
function announcedInstances(client: TestClient, name: string, from = 0): number[] {
  return client.received
    .slice(from)
    .flatMap((m) => (m.type === 'model' && m.model.name === name ? [m.model.instances] : []));
}

/**
 * Rows of a burst job: long enough (tens of ms) that a burst of them keeps a queue deep, and over
 * the inline input limit (256 KiB), so each runs in its instance's worker thread.
 */
const BURST_ROWS = 320;
const BURST_JOBS = 8;

/** Sends `count` jobs at once to the slow model `name` and returns their ids. */
function sendBurst(client: TestClient, name: string, prefix: string, count = BURST_JOBS): string[] {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  ids.forEach((id, i) => {
    client.send({ type: 'infer', id, model: name, inputs: slowInput(BURST_ROWS, i) });
  });
  return ids;
}

describe('model-host: autoscaler', () => {
  let ctx: TestServer;
  let client: TestClient;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir, 'scaled');
        writeModelConfig(dir, 'scaled', 1, { maxInstances: 2 });
        await writeSlowModel(dir, 'single');
      },
      // One waiting job per instance is already "deep": any burst scales.
      { scaleUpQueueDepth: 1, idleTimeoutMs: 300 },
    );
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('stays at one instance while jobs come one at a time', async () => {
    const from = client.received.length;
    for (let i = 0; i < 4; i++)
      resultOf(await client.infer({ id: `one-${i}`, model: 'scaled', inputs: slowInput(1, i) }));
    expect(Math.max(...announcedInstances(client, 'scaled', from))).toBe(1);
  });

  it('adds an instance while the queue is deep, up to maxInstances, and removes them when idle', async () => {
    client.send({ type: 'warm', model: 'scaled' });
    await client.nextOf('model', (m) => m.model.name === 'scaled' && m.model.state === 'ready');
    const from = client.received.length;
    const ids = sendBurst(client, 'scaled', 'burst');
    const scaled = await client.nextOf(
      'model',
      (m) => m.model.name === 'scaled' && m.model.instances === 2,
    );
    const logs = await Promise.all(ids.map((id) => client.collectJob(id)));
    for (const [index, log] of logs.entries())
      expectSameTensors(resultOf(log).outputs, { y: slowInput(BURST_ROWS, index).x! });
    // The second instance came while jobs were still waiting, not after the burst.
    const lastResult = Math.max(
      ...ids.map((id) => client.received.findIndex((m) => m.type === 'result' && m.id === id)),
    );
    expect(client.received.indexOf(scaled)).toBeLessThan(lastResult);
    expect(Math.max(...announcedInstances(client, 'scaled', from))).toBe(2);

    // Idle: both instances go (minReady 0), announced and visible in /metrics.
    await client.nextOf(
      'model',
      (m) => m.model.name === 'scaled' && m.model.state === 'unloaded' && m.model.instances === 0,
    );
    const metrics = await scrapeMetrics(ctx.url);
    for (const state of ['loading', 'warming', 'ready'])
      expect(
        metricValue(metrics, 'tandem_model_instances', { model: 'scaled', state }),
        state,
      ).toBe(0);
  });

  it('never adds an instance beyond maxInstances (1 by default)', async () => {
    const from = client.received.length;
    // Three wait behind the first: deep enough to scale a model that may.
    const ids = sendBurst(client, 'single', 'capped', 4);
    for (const id of ids) resultOf(await client.collectJob(id));
    const announced = announcedInstances(client, 'single', from);
    expect(announced).toContain(1);
    expect(Math.max(...announced)).toBe(1);
  });
});

describe('model-host: keep-warm (minReady)', () => {
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeSlowModel(dir, 'kept');
        writeModelConfig(dir, 'kept', 1, { minReady: 1, maxInstances: 2 });
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
        // Longer than the server's: when mlp unloads, kept's idle timers have all fired.
        writeModelConfig(dir, 'mlp', 1, { idleTimeoutMs: 400 });
      },
      { scaleUpQueueDepth: 1, idleTimeoutMs: 200 },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('loads a minReady model at startup, before any request, so its first job is warm', async () => {
    const client = await connectClient(ctx.url);
    const models = client.welcome!.models;
    // Loading began when the server started listening; models without minReady wait for work.
    expect(models.find((m) => m.name === 'kept')?.state).not.toBe('unloaded');
    expect(models.find((m) => m.name === 'mlp')?.state).toBe('unloaded');
    if (models.find((m) => m.name === 'kept')?.state !== 'ready')
      await modelState(client, 'kept', 'ready');
    const log = await client.infer({ id: 'first', model: 'kept', inputs: slowInput(1) });
    expect(resultOf(log).coldStart).toBe(false);
    expect(stagesOf(log.progress)).toEqual(['queued', 'running']);
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_cold_starts_total', { model: 'kept' })).toBe(undefined);
    await client.close();
  });

  it('keeps a minReady model warm when it is copied in after startup, once the server finds it', async () => {
    const client = await connectClient(ctx.url);
    await writeModelFile(ctx.modelsDir, 'late-kept', 1, buildTinyModel().bytes);
    writeModelConfig(ctx.modelsDir, 'late-kept', 1, { minReady: 1 });
    // Unknown names trigger a rescan at most once a second: a bounded poll of its metadata.
    let found = await fetch(`${ctx.url}/v2/models/late-kept`);
    for (let attempt = 0; found.status === 404 && attempt < 40; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      found = await fetch(`${ctx.url}/v2/models/late-kept`);
    }
    expect(found.status).toBe(200);
    // Found, it loads on its own: no job, no warm.
    await modelState(client, 'late-kept', 'ready');
    const log = await client.infer({
      id: 'late-kept-1',
      model: 'late-kept',
      inputs: { x: { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) } },
    });
    expect(resultOf(log).coldStart).toBe(false);
    await client.close();
  });

  it('scales up under load, then idles back down to minReady and never below', async () => {
    const client = await connectClient(ctx.url);
    const from = client.received.length;
    const ids = sendBurst(client, 'kept', 'kept');
    await client.nextOf('model', (m) => m.model.name === 'kept' && m.model.instances === 2);
    for (const id of ids) resultOf(await client.collectJob(id));
    await client.nextOf('model', (m) => m.model.name === 'kept' && m.model.instances === 1);

    // mlp's idle timer starts after kept's last ones and is longer: once mlp has scaled to zero,
    // every idle timer of kept has fired.
    resultOf(await client.infer({ id: 'mlp', model: 'mlp', inputs: mlpInput() }));
    await modelState(client, 'mlp', 'unloaded');
    expect(announcedInstances(client, 'kept', from)).not.toContain(0);
    expect(announcedStates(client, 'kept')).not.toContain('unloaded');
    const metrics = await scrapeMetrics(ctx.url);
    expect(metricValue(metrics, 'tandem_model_instances', { model: 'kept', state: 'ready' })).toBe(
      1,
    );
    const log = await client.infer({ id: 'after-idle', model: 'kept', inputs: slowInput(1) });
    expect(resultOf(log).coldStart).toBe(false);
    expect(stagesOf(log.progress)).toEqual(['queued', 'running']);
    await client.close();
  });
});

describe('model-host: main-thread sessions only for models fast enough to use one', () => {
  it('creates none for a small model whose worker run is far over inlineMaxRunMs, one for a tiny one', async () => {
    // Both files are under inlineMaxModelBytes (8 MiB); PaddleOCR's detector runs in tens of
    // milliseconds, the tiny model in microseconds. Sessions made in worker threads do not pass
    // through this thread's onnxruntime: what the spy sees are main-thread (inline) sessions.
    const ctx = await startServer(async (dir) => {
      await writeModelFile(dir, 'det', 1, readFileSync(realModelPath('paddleocr-det')));
      writeModelConfig(dir, 'det', 1, { warmupDims: { x: [1, 3, 320, 320] } });
      await writeModelFile(dir, 'tiny', 1, buildTinyModel().bytes);
    });
    const create = vi.spyOn(InferenceSession, 'create');
    try {
      for (const model of ['det', 'tiny']) {
        const warm = await fetch(`${ctx.url}/v1/models/${model}/warm?wait=true`, {
          method: 'POST',
        });
        expect(warm.status).toBe(200);
      }
      const status = (await (await fetch(`${ctx.url}/v1/models`)).json()) as {
        models: { name: string; estimates: { warmupMs: number } }[];
      };
      // The premise: one warm-up run of det takes several times the 1 ms limit.
      expect(status.models.find((m) => m.name === 'det')?.estimates.warmupMs).toBeGreaterThan(4);
      const paths = create.mock.calls.map((call) => String(call[0]));
      expect(paths.filter((path) => path.includes('/det/'))).toEqual([]);
      expect(paths.filter((path) => path.includes('/tiny/'))).toHaveLength(1);
    } finally {
      create.mockRestore();
      await ctx.close();
    }
  });
});

describe('model-host: grouped runs of a small fast model', () => {
  let ctx: TestServer;
  let client: TestClient;
  const tiny = buildTinyModel();

  beforeAll(async () => {
    ctx = await startServer(async (dir) => {
      await writeModelFile(dir, 'tiny', 1, tiny.bytes);
    });
    const warm = await fetch(`${ctx.url}/v1/models/tiny/warm?wait=true`, { method: 'POST' });
    expect(warm.status).toBe(200);
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('sends waiting jobs to the worker together; each gets its own answer, in order', async () => {
    const ids = Array.from({ length: 48 }, (_, i) => `g-${i}`);
    ids.forEach((id, i) => {
      const data = new Float32Array([i, -i, i / 2]);
      client.send({
        type: 'infer',
        id,
        model: 'tiny',
        inputs: { x: { dtype: 'float32', dims: [3], data } },
      });
    });
    const logs = await Promise.all(ids.map((id) => client.collectJob(id)));
    logs.forEach((log, i) => {
      const expected = [i, -i, i / 2].map((x) => x * tiny.scale + tiny.offset);
      expect(Array.from(resultOf(log).outputs.y!.data as Float32Array)).toEqual(expected);
    });
    expect(resultOrder(client, 'g-')).toEqual(ids);
    // Run one at a time, a job starts at the earliest right after the job before it answered
    // (its result goes out a microtask after the next job starts), so never before the answer
    // of the job two ahead. In a group, jobs start together, before any of them answers.
    const index = (match: (m: (typeof client.received)[number]) => boolean): number =>
      client.received.findIndex(match);
    const grouped = ids.slice(2).some((id, i) => {
      const running = index(
        (m) => m.type === 'progress' && m.event.jobId === id && m.event.stage === 'running',
      );
      const answered = index((m) => m.type === 'result' && m.id === ids[i]);
      return running >= 0 && running < answered;
    });
    expect(grouped).toBe(true);
  });

  it('hands a full second group to the worker while the first runs; answers stay in order', async () => {
    const ids = Array.from({ length: 3 * GROUP_MAX_JOBS }, (_, i) => `p-${i}`);
    ids.forEach((id, i) => {
      client.send({
        type: 'infer',
        id,
        model: 'tiny',
        inputs: { x: { dtype: 'float32', dims: [3], data: new Float32Array([i, 1, 2]) } },
      });
    });
    const logs = await Promise.all(ids.map((id) => client.collectJob(id)));
    logs.forEach((log, i) => {
      expect(resultOf(log).outputs.y!.data[0]).toBe(i * tiny.scale + tiny.offset);
    });
    expect(resultOrder(client, 'p-')).toEqual(ids);
    // A group's answers go out before the next group is handed over, unless that group went
    // behind it: a job starting before the answer of a job GROUP_MAX_JOBS or more ahead of it
    // (never in the same group) waited in the worker.
    const index = (match: (m: (typeof client.received)[number]) => boolean): number =>
      client.received.findIndex(match);
    const pipelined = ids.slice(GROUP_MAX_JOBS).some((id, i) => {
      const running = index(
        (m) => m.type === 'progress' && m.event.jobId === id && m.event.stage === 'running',
      );
      const answered = index((m) => m.type === 'result' && m.id === ids[i]);
      return running >= 0 && running < answered;
    });
    expect(pipelined).toBe(true);
  });
});

describe('model-host: execution providers', () => {
  let ctx: TestServer;
  let client: TestClient;
  /** A provider the settings accept that this build of onnxruntime-node lacks. */
  const built = new Set(listSupportedBackends().map((backend) => backend.name));
  const missing = (['dml', 'coreml', 'tensorrt', 'cuda'] as const).find((p) => !built.has(p));

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      },
      {
        session: { executionProviders: [missing ?? 'cpu', 'cpu'] },
      },
    );
    client = await connectClient(ctx.url);
  });
  afterAll(async () => {
    await client.close();
    await ctx.close();
  });

  it('serves on the next provider when the first is missing here, and names the one that ran', async () => {
    expect(missing, 'every provider is built in: nothing to skip').toBeDefined();
    const result = resultOf(await client.infer({ id: 'ep', model: 'mlp', inputs: mlpInput() }));
    expect(result.backend).toBe('cpu');
  });
});
