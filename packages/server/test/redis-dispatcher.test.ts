// Scale-out through Redis, end to end with real parts: a real redis-server, gateways
// (`tandem serve --redis`) and workers (`tandem worker`) as real processes of the built CLI, real
// WebSocket and OIP v2 clients on loopback, and onnxruntime-node as the reference for outputs.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelStatus, ProgressEvent, TensorMap } from '@tandem/shared';
import { hashApiKey } from '@tandem/server';
import {
  buildMlpClassifier,
  buildModel,
  freePort,
  buildTinyModel,
  connectClient,
  slowInput,
  writeModelFile,
  writeSlowModel,
  type CliProcess,
  type JobLog,
  type TestClient,
} from '@tandem/test-support';
import {
  errorCodeOf,
  expectMonotoneFractions,
  expectSameTensors,
  metricValue,
  resultOf,
  runDirect,
  stagesOf,
  startServer,
} from './fixtures.js';
import { decodeInferResponse, encodeInferRequest, float32Of } from './oip-client.js';
import { Cluster, FAST_FAILOVER, pollUntil } from './redis-fixtures.js';
import { buildSlowModel, tempDir, writeModelConfig } from './server-fixtures.js';

const FEATURES = 16;
const MLP = buildMlpClassifier({ features: FEATURES, hidden: 16, classes: 5, seed: 3 });
const ONE = { x: { dtype: 'float32', dims: [1], data: new Float32Array([0.001]) } } as const;
/** Rows of a "crawl" job: 128 MatMuls of 1024×256 by 256×256 on one thread, about a second. */
const CRAWL_ROWS = 1024;

/** One row of MLP features, distinct per seed. */
function mlpInput(seed: number): TensorMap {
  const data = new Float32Array(FEATURES);
  for (let i = 0; i < FEATURES; i++) data[i] = Math.sin(seed * 31 + i);
  return { x: { dtype: 'float32', dims: [1, FEATURES], data } };
}

/** Writes the models every scale-out test uses; each model.json names its pool. */
async function writeModels(dir: string): Promise<void> {
  await writeModelFile(dir, 'mlp', 1, MLP.bytes);
  // A few hundred ms per run on one thread: jobs are still running when a test acts on them.
  await writeModelFile(dir, 'slow', 1, buildSlowModel(512, 48));
  writeModelConfig(dir, 'slow', 1, { intraOpNumThreads: 1, minReady: 1 });
  // About a second per run at CRAWL_ROWS: a cancel sent once it runs surely reaches the worker
  // first (with "slow", a loaded machine sometimes finished the run before the cancel got there,
  // and the cancel then removed the finished job).
  await writeSlowModel(dir, 'crawl');
  writeModelConfig(dir, 'crawl', 1, { intraOpNumThreads: 1 });
  // Pool "solo" has one worker: a long job (its run grows with the rows; warm-up takes one row)
  // and a quick one.
  await writeSlowModel(dir, 'solo-long');
  writeModelConfig(dir, 'solo-long', 1, { pool: 'solo', intraOpNumThreads: 1 });
  await writeModelFile(dir, 'solo-quick', 1, MLP.bytes);
  writeModelConfig(dir, 'solo-quick', 1, { pool: 'solo' });
  // Pool "later" has no worker until a test starts one.
  await writeModelFile(dir, 'later', 1, buildTinyModel().bytes);
  writeModelConfig(dir, 'later', 1, { pool: 'later' });
}

const tinyInput = (value: number): TensorMap => ({
  x: { dtype: 'float32', dims: [1], data: new Float32Array([value]) },
});

/** The BullMQ job of a client's job id in a pool's queue, in whatever state it is. */
async function bullJobOf(cluster: Cluster, pool: string, id: string): Promise<BullJob | undefined> {
  const jobs = await cluster
    .queue(pool)
    .getJobs(['active', 'waiting', 'prioritized', 'completed', 'failed']);
  return jobs.find((job) => (job.data as { id?: unknown }).id === id);
}

async function scrape(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

describe('redis-dispatcher: one gateway, two workers', () => {
  let cluster: Cluster;
  let gateway: CliProcess;
  let client: TestClient;
  const mlpPath = (): string => join(cluster.modelsDir, 'mlp', '1', 'model.onnx');

  beforeAll(async () => {
    cluster = await Cluster.start(writeModels);
    [gateway] = await Promise.all([cluster.gateway(), cluster.worker(), cluster.worker()]);
    client = await connectClient(gateway.url);
  });

  afterAll(async () => {
    await client.close();
    await cluster.close();
  });

  it('serves WebSocket jobs with outputs equal to onnxruntime-node and progress on the way', async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `ws-${i}`);
    const logs = await Promise.all(
      ids.map((id, seed) => client.infer({ id, model: 'mlp', inputs: mlpInput(seed) })),
    );
    for (const [seed, log] of logs.entries()) {
      const result = resultOf(log);
      expect(result.id).toBe(ids[seed]);
      expectSameTensors(result.outputs, await runDirect(mlpPath(), mlpInput(seed)));
      // Queued at the gateway (with its position), then the worker's own stages.
      const stages = stagesOf(log.progress);
      expect(stages[0]).toBe('queued');
      expect(stages).toContain('running');
      expect(log.progress[0]?.queuePosition).toBeGreaterThanOrEqual(0);
      expect(log.progress.every((event) => event.where === 'remote')).toBe(true);
      expectMonotoneFractions(log.progress);
    }
  });

  it('runs a job whose deadline lies further ahead than one timer reaches (2^31 ms)', async () => {
    // setTimeout keeps 32 bits: the gateway's 35-day deadline fired after 1 ms, failing the job.
    const log = await client.infer({
      id: 'far',
      model: 'mlp',
      inputs: mlpInput(7),
      deadlineMs: 3e9,
    });
    expectSameTensors(resultOf(log).outputs, await runDirect(mlpPath(), mlpInput(7)));
  });

  it('serves OIP v2 requests (binary tensors) with outputs equal to onnxruntime-node', async () => {
    const input = mlpInput(42);
    const data = input.x!.data as Float32Array;
    const { body, headers } = encodeInferRequest({
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [1, FEATURES], binary: new Uint8Array(data.buffer) },
      ],
      outputs: [{ name: 'probs', binary: true }],
    });
    const response = await fetch(`${gateway.url}/v2/models/mlp/infer`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers,
    });
    expect(response.status).toBe(200);
    const { outputs } = decodeInferResponse(
      Buffer.from(await response.arrayBuffer()),
      response.headers.get('inference-header-content-length') ?? undefined,
    );
    const expected = await runDirect(mlpPath(), input, ['probs']);
    expect(float32Of(outputs.probs!.bytes!)).toEqual(expected.probs!.data);
  });

  it('answers the OIP repository extension: index and load as in one process, unload refused', async () => {
    const post = (path: string): Promise<Response> =>
      fetch(`${gateway.url}/v2/repository${path}`, { method: 'POST' });
    // Load is a warm job that a worker takes; it answers once that worker has the model ready.
    const load = await post('/models/mlp/load');
    expect(load.status).toBe(200);
    expect(await load.json()).toEqual({ name: 'mlp', load: true });
    const index = (await (await post('/index')).json()) as { name: string; state: string }[];
    const mlp = index.find((entry) => entry.name === 'mlp');
    expect(['READY', 'LOADING', 'UNAVAILABLE']).toContain(mlp?.state);
    // The workers hold the models and unload them when idle: a gateway cannot.
    const unload = await post('/models/mlp/unload');
    expect(unload.status).toBe(400);
    expect(((await unload.json()) as { code: string }).code).toBe('E_INVALID_ARGUMENT');
  });

  it('spreads concurrent jobs over both workers', async () => {
    const ids = ['spread-0', 'spread-1', 'spread-2', 'spread-3'];
    const logs = await Promise.all(
      ids.map((id) => client.infer({ id, model: 'slow', inputs: ONE })),
    );
    logs.forEach((log) => resultOf(log));
    const workers = new Set(
      (await cluster.queue().getCompleted(0, -1))
        .filter((job) => (job.data as { id?: string }).id?.startsWith('spread-') === true)
        .map((job) => job.processedBy),
    );
    expect(workers.size).toBe(2);
  });

  it('answers bad input with codes at the gateway and keeps serving', async () => {
    const wrongShape = await client.infer({
      id: 'bad-shape',
      model: 'mlp',
      inputs: { x: { dtype: 'float32', dims: [1, 3], data: new Float32Array(3) } },
    });
    expect(errorCodeOf(wrongShape)).toBe('E_INPUT_SHAPE');
    const unknown = await client.infer({ id: 'bad-model', model: 'nope', inputs: ONE });
    expect(errorCodeOf(unknown)).toBe('E_MODEL_NOT_FOUND');
    const { body, headers } = encodeInferRequest({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: [1, 2] }],
    });
    const oip = await fetch(`${gateway.url}/v2/models/mlp/infer`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers,
    });
    expect(oip.status).toBe(400);
    expect(((await oip.json()) as { code: string }).code).toBe('E_INPUT_SHAPE');
    resultOf(await client.infer({ id: 'after-bad', model: 'mlp', inputs: mlpInput(1) }));
  });

  it('wakes a model on a worker: warm over HTTP and over the WebSocket', async () => {
    const response = await fetch(`${gateway.url}/v1/models/mlp/warm?wait=true`, {
      method: 'POST',
    });
    expect(response.status).toBe(200);
    // The status comes from the worker that loaded it.
    expect(await response.json()).toMatchObject({ name: 'mlp', state: 'ready', instances: 1 });
    // Earlier loads were broadcast as `model` messages too; the warm is answered with `ready`.
    client.send({ type: 'warm', model: 'mlp' });
    await client.nextOf('model', (m) => m.model.name === 'mlp' && m.model.state === 'ready');
    expect(
      client.received.some(
        (m) => m.type === 'model' && m.model.name === 'mlp' && m.model.state === 'loading',
      ),
      'a broadcast of the cold start on a worker',
    ).toBe(true);
    client.send({ type: 'warm', model: 'nope' });
    expect((await client.nextOf('error', (m) => m.id === null)).code).toBe('E_MODEL_NOT_FOUND');
    // The workers publish their models' states; the gateway shows them (bounded poll: the
    // heartbeat is not an event a test can wait for).
    const listed = await pollUntil(async () => {
      const { models } = (await (await fetch(`${gateway.url}/v1/models`)).json()) as {
        models: ModelStatus[];
      };
      const mlp = models.find((m) => m.name === 'mlp');
      return mlp?.state === 'ready' ? mlp : undefined;
    }, 'the gateway to list mlp as ready');
    expect(listed.instances).toBeGreaterThanOrEqual(1);
    expect(listed.estimates?.loadMs).toBeGreaterThan(0);
    const fresh = await connectClient(gateway.url);
    expect(fresh.welcome?.models.find((m) => m.name === 'mlp')?.state).toBe('ready');
    // A model nobody loaded stays unloaded.
    expect(fresh.welcome?.models.find((m) => m.name === 'later')?.state).toBe('unloaded');
    await fresh.close();
  });

  it('passes a cancel on to the worker that holds the job, and removes a waiting one', async () => {
    client.send({
      type: 'infer',
      id: 'cancel-running',
      model: 'crawl',
      inputs: slowInput(CRAWL_ROWS),
    });
    await client.nextOf(
      'progress',
      (m) => m.event.jobId === 'cancel-running' && m.event.stage === 'running',
    );
    client.send({ type: 'cancel', id: 'cancel-running' });
    expect(errorCodeOf(await client.collectJob('cancel-running'))).toBe('E_CANCELLED');
    // The worker heard it: it ended the job as cancelled rather than running it to a result.
    let seen = 'no job';
    const ended = await pollUntil(
      async () => {
        const job = await bullJobOf(cluster, 'default', 'cancel-running');
        seen =
          job === undefined
            ? 'no job'
            : `${await job.getState()}, started ${job.attemptsStarted}× on ${job.processedBy}`;
        return job?.finishedOn === undefined ? undefined : job;
      },
      () => `the worker to end the cancelled job (last seen: ${seen})`,
    );
    expect(ended.returnvalue).toMatchObject({ ok: false, code: 'E_CANCELLED' });

    // Pool "later" has no worker: the job waits in Redis until the cancel removes it.
    client.send({ type: 'infer', id: 'cancel-waiting', model: 'later', inputs: tinyInput(1) });
    await client.nextOf('progress', (m) => m.event.jobId === 'cancel-waiting');
    expect(await (await bullJobOf(cluster, 'later', 'cancel-waiting'))?.getState()).toBe(
      'prioritized',
    );
    client.send({ type: 'cancel', id: 'cancel-waiting' });
    expect(errorCodeOf(await client.collectJob('cancel-waiting'))).toBe('E_CANCELLED');
    await pollUntil(
      async () =>
        (await bullJobOf(cluster, 'later', 'cancel-waiting')) === undefined ? true : undefined,
      'the cancelled job to leave the queue',
    );
  });

  it('starts a high-priority job at the next free slot ahead of 100 queued low-priority ones', async () => {
    await cluster.worker(['--pool', 'solo']);
    // A long job holds the pool's only slot.
    client.send({ type: 'infer', id: 'hold', model: 'solo-long', inputs: slowInput(16_384) });
    await client.nextOf('progress', (m) => m.event.jobId === 'hold' && m.event.stage === 'running');
    const lows = Array.from({ length: 100 }, (_, i) => `low-${i}`);
    for (const [i, id] of lows.entries())
      client.send({ type: 'infer', id, model: 'solo-quick', inputs: mlpInput(i), priority: 0 });
    client.send({
      type: 'infer',
      id: 'high',
      model: 'solo-quick',
      inputs: mlpInput(7),
      priority: 10,
    });
    // Every one is in Redis once the gateway reported its queue position.
    for (const id of [...lows, 'high'])
      await client.nextOf('progress', (m) => m.event.jobId === id && m.event.stage === 'queued');
    // Cancelling the long job frees the slot.
    client.send({ type: 'cancel', id: 'hold' });
    expect(errorCodeOf(await client.collectJob('hold'))).toBe('E_CANCELLED');
    const first = await client.next(
      (m) => (m.type === 'result' || m.type === 'error') && m.id !== null && m.id !== 'hold',
    );
    expect(first.type === 'result' ? first.id : first).toBe('high');
    const rest = await Promise.all(lows.map((id) => client.collectJob(id)));
    rest.forEach((log) => resultOf(log));
  });

  it('loses no job when a gateway dies: the client resumes by id through a new gateway', async () => {
    const doomed = await cluster.gateway();
    const before = await connectClient(doomed.url);
    before.send({ type: 'infer', id: 'survivor', model: 'slow', inputs: ONE });
    await before.nextOf('progress', (m) => m.event.jobId === 'survivor');
    expect((await doomed.stop('SIGKILL')).signal).toBe('SIGKILL');
    await before.closed;

    const replacement = await cluster.gateway();
    const after = await connectClient(replacement.url);
    after.send({ type: 'resume', ids: ['survivor'] });
    const log = await after.collectJob('survivor');
    expectSameTensors(
      resultOf(log).outputs,
      await runDirect(join(cluster.modelsDir, 'slow', '1', 'model.onnx'), ONE),
    );
    // Handed over once: resuming again finds nothing.
    await after.acknowledged('survivor');
    await after.roundTrip();
    after.send({ type: 'resume', ids: ['survivor'] });
    expect(errorCodeOf(await after.collectJob('survivor'))).toBe('E_JOB_NOT_FOUND');
    await after.roundTrip();
    expect(after.received.filter((m) => m.type === 'result')).toHaveLength(1);
    await after.close();
  });

  it('answers a job resumed through another gateway at its deadline and takes it off the queue', async () => {
    // Pool "later" has no worker: the job waits past its deadline, and the gateway that armed
    // the deadline dies before it.
    const doomed = await cluster.gateway();
    const before = await connectClient(doomed.url);
    before.send({
      type: 'infer',
      id: 'orphan-deadline',
      model: 'later',
      inputs: tinyInput(5),
      deadlineMs: 1500,
    });
    await before.nextOf(
      'progress',
      (m) => m.event.jobId === 'orphan-deadline' && m.event.stage === 'queued',
    );
    expect((await doomed.stop('SIGKILL')).signal).toBe('SIGKILL');
    await before.closed;
    expect(await (await bullJobOf(cluster, 'later', 'orphan-deadline'))?.getState()).toBe(
      'prioritized',
    );

    const after = await connectClient(gateway.url);
    after.send({ type: 'resume', ids: ['orphan-deadline'] });
    const log = await after.collectJob('orphan-deadline');
    expect(errorCodeOf(log)).toBe('E_DEADLINE_EXCEEDED');
    // Withdrawn (just after the answer, which does not wait for Redis): it takes no place in the
    // pool, and no worker that comes later sees it.
    await pollUntil(
      async () =>
        (await bullJobOf(cluster, 'later', 'orphan-deadline')) === undefined ? true : undefined,
      'the job past its deadline to leave the queue',
    );
    await after.close();
  });

  it('exports queue depth, oldest job age, active jobs and workers per pool, and no per-model gauges; an idle worker exits', async () => {
    const ids = ['depth-0', 'depth-1', 'depth-2'];
    for (const [i, id] of ids.entries())
      client.send({ type: 'infer', id, model: 'later', inputs: tinyInput(i) });
    for (const id of ids)
      await client.nextOf('progress', (m) => m.event.jobId === id && m.event.stage === 'queued');
    const text = await scrape(gateway.url);
    expect(metricValue(text, 'tandem_pool_queue_depth', { pool: 'later' })).toBe(3);
    expect(metricValue(text, 'tandem_pool_oldest_wait_seconds', { pool: 'later' })).toBeGreaterThan(
      0,
    );
    expect(metricValue(text, 'tandem_pool_workers', { pool: 'later' })).toBe(0);
    expect(metricValue(text, 'tandem_pool_workers', { pool: 'default' })).toBe(2);
    expect(metricValue(text, 'tandem_pool_active_jobs', { pool: 'default' })).toBe(0);
    expect(metricValue(text, 'tandem_redis_up')).toBe(1);
    // No per-model gauges of a single server: they would read 0 here whatever the load.
    expect(text).not.toMatch(/^tandem_queue_depth/m);
    expect(text).not.toMatch(/^tandem_model_instances/m);

    // A worker woken for the queue serves it, then exits by itself once idle (scale to zero).
    const worker = await cluster.worker(['--pool', 'later', '--idle-exit-ms', '300']);
    const logs = await Promise.all(ids.map((id) => client.collectJob(id)));
    logs.forEach((log, i) =>
      expect(resultOf(log).outputs.y!.data).toEqual(new Float32Array([2 * i + 1])),
    );
    // It may have exited already (its idle time can pass while the logs above are read).
    const { child } = worker;
    const exited =
      child.exitCode !== null || child.signalCode !== null
        ? { code: child.exitCode, signal: child.signalCode }
        : await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
            child.once('exit', (code, signal) => resolve({ code, signal })),
          );
    expect(exited, worker.stderr()).toEqual({ code: 0, signal: null });
    const after = await scrape(gateway.url);
    expect(metricValue(after, 'tandem_pool_queue_depth', { pool: 'later' })).toBe(0);
    expect(metricValue(after, 'tandem_pool_oldest_wait_seconds', { pool: 'later' })).toBe(0);
  });
});

describe('redis-dispatcher: a full pool queue', () => {
  let cluster: Cluster;
  let gatewayUrl: string;
  let client: TestClient;

  beforeAll(async () => {
    cluster = await Cluster.start(writeModels);
    // Pool "later" has no worker here: whatever is submitted waits.
    gatewayUrl = (await cluster.gateway(['--max-queue', '2'])).url;
    client = await connectClient(gatewayUrl);
  });

  afterAll(async () => {
    await client.close();
    await cluster.close();
  });

  it('answers past maxQueue with a retryable E_BUSY, counted in Redis across gateways', async () => {
    const other = await connectClient((await cluster.gateway(['--max-queue', '2'])).url);
    for (const [i, id] of ['full-0', 'full-1'].entries()) {
      (i === 0 ? client : other).send({ type: 'infer', id, model: 'later', inputs: tinyInput(i) });
      await (i === 0 ? client : other).nextOf(
        'progress',
        (m) => m.event.jobId === id && m.event.stage === 'queued',
      );
    }
    const refused = await client.infer({ id: 'full-2', model: 'later', inputs: tinyInput(2) });
    expect(errorCodeOf(refused)).toBe('E_BUSY');
    expect(refused.error?.retryable).toBe(true);
    // A refused job leaves nothing behind: the queue still holds the two.
    expect(await cluster.queue('later').getPrioritizedCount()).toBe(2);
    await other.close();
  });

  it('drops a stale waiting entry (a gateway died before adding its job) from the oldest-job age, and keeps an old job that waits', async () => {
    const redis = new Redis(cluster.redis.url);
    try {
      const key = 'tandem-waiting:later';
      const queued = await redis.zrange(key, 0, -1);
      expect(queued).toHaveLength(2); // the two jobs of the test above, still waiting
      // What a gateway killed between storing a job and adding it to BullMQ leaves behind.
      await redis.zadd(key, Date.now() - 600_000, 'ghost-of-a-dead-gateway');
      const text = await scrape(gatewayUrl);
      expect(metricValue(text, 'tandem_pool_oldest_wait_seconds', { pool: 'later' })).toBeLessThan(
        600,
      );
      expect(await redis.zscore(key, 'ghost-of-a-dead-gateway')).toBeNull();
      expect(await cluster.queue('later').getPrioritizedCount()).toBe(2);

      // A job that really has waited that long (no worker: scale from zero) still counts.
      await redis.zadd(key, 'XX', Date.now() - 600_000, queued[0]!);
      // Scrapes within 100 ms share one read of Redis: poll until one reads it again.
      const oldest = await pollUntil(async () => {
        const seconds = metricValue(await scrape(gatewayUrl), 'tandem_pool_oldest_wait_seconds', {
          pool: 'later',
        });
        return seconds !== undefined && seconds >= 600 ? seconds : undefined;
      }, 'a scrape that reads the backdated entry');
      expect(oldest).toBeGreaterThanOrEqual(600);
      expect(await redis.zrange(key, 0, -1)).toEqual(expect.arrayContaining(queued));

      // With nothing scraping /metrics, the gateways sweep such entries on their own: they would
      // take places of maxQueue for good.
      await redis.zadd(key, Date.now() - 600_000, 'another-ghost');
      await pollUntil(
        async () => ((await redis.zscore(key, 'another-ghost')) === null ? true : undefined),
        'a gateway to sweep the stale entry without a scrape',
      );
      expect(await redis.zrange(key, 0, -1)).toEqual(expect.arrayContaining(queued));
    } finally {
      redis.disconnect();
    }
  });

  it('drops a stale waiting entry of a job BullMQ failed without running it (its gateway gone)', async () => {
    // What a gateway that died leaves when the job it put back after a dead worker is failed by
    // BullMQ at its next start (too many starts): no processor ran to remove the entry, and
    // BullMQ keeps the failed job until a later one fails.
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const failing = new Worker(
      'solo',
      () => Promise.reject(new Error('job started more than allowable limit')),
      { connection, prefix: 'tandem' },
    );
    try {
      const failed = new Promise((resolve) => failing.once('failed', resolve));
      await cluster.queue('solo').add('infer', {}, { jobId: 'failed-ghost', attempts: 1 });
      await failed;
      await failing.close();
      expect(await cluster.queue('solo').getJobState('failed-ghost')).toBe('failed');
      await connection.zadd('tandem-waiting:solo', Date.now() - 600_000, 'failed-ghost');
      await pollUntil(
        async () =>
          (await connection.zscore('tandem-waiting:solo', 'failed-ghost')) === null
            ? true
            : undefined,
        'a gateway to sweep the entry of the failed job',
      );
      const text = await scrape(gatewayUrl);
      expect(metricValue(text, 'tandem_pool_oldest_wait_seconds', { pool: 'solo' })).toBe(0);
    } finally {
      await failing.close();
      connection.disconnect();
    }
  });
});

describe('redis-dispatcher: Redis restarted while idle', () => {
  let cluster: Cluster;
  let gateway: CliProcess;
  let client: TestClient;

  beforeAll(async () => {
    // Persistent (append-only, fsync always), as docs/deployment.md asks of a queue's Redis.
    cluster = await Cluster.start(writeModels, { persistent: true });
    [gateway] = await Promise.all([cluster.gateway(), cluster.worker()]);
    client = await connectClient(gateway.url);
  });

  afterAll(async () => {
    await client.close();
    await cluster.close();
  });

  it('reconnects gateways and workers without a restart and loses no queued job', async () => {
    resultOf(await client.infer({ id: 'before', model: 'mlp', inputs: mlpInput(0) }));
    const queued = ['kept-0', 'kept-1'];
    for (const [i, id] of queued.entries())
      client.send({ type: 'infer', id, model: 'later', inputs: tinyInput(i) });
    for (const id of queued)
      await client.nextOf('progress', (m) => m.event.jobId === id && m.event.stage === 'queued');

    await cluster.redis.restart();

    // The gateway reads Redis again on its own (bounded poll: reconnects announce nothing).
    await pollUntil(async () => {
      const text = await scrape(gateway.url);
      return metricValue(text, 'tandem_pool_queue_depth', { pool: 'later' }) === 2
        ? true
        : undefined;
    }, 'the gateway to reach Redis again');
    // Gateway and worker both reconnected: a new job goes through.
    const after = await pollUntil(async () => {
      const log: JobLog = await client.infer({
        id: `after-${Date.now()}`,
        model: 'mlp',
        inputs: mlpInput(1),
      });
      // Until the gateway's command connection is back, a job is refused with a retryable code.
      if (log.error?.code === 'E_QUEUE_UNAVAILABLE') return undefined;
      return log;
    }, 'a job to go through after the restart');
    expectSameTensors(
      resultOf(after).outputs,
      await runDirect(join(cluster.modelsDir, 'mlp', '1', 'model.onnx'), mlpInput(1)),
    );
    // The jobs queued before the restart are still there and run once a worker comes.
    await cluster.worker(['--pool', 'later']);
    const logs = await Promise.all(queued.map((id) => client.collectJob(id)));
    logs.forEach((log, i) =>
      expect(resultOf(log).outputs.y!.data).toEqual(new Float32Array([2 * i + 1])),
    );
  });
});

/** Every `tandem_rejections_total` sample of a scrape, as `model code` → value. */
function rejectionsOf(text: string): Record<string, number> {
  const samples: Record<string, number> = {};
  for (const match of text.matchAll(
    /^tandem_rejections_total\{model="([^"]*)",code="([^"]*)"\} (\S+)$/gm,
  ))
    samples[`${match[1]} ${match[2]}`] = Number(match[3]);
  return samples;
}

describe('redis-dispatcher: refusals on the pool side counted in the gateway /metrics', () => {
  let cluster: Cluster;
  /** The repository of the pool "drift" worker: its "drift" model takes other inputs. */
  let driftModels: { dir: string; remove: () => void };
  let gateway: CliProcess;
  let client: TestClient;

  beforeAll(async () => {
    driftModels = tempDir('drift-worker');
    await writeModelFile(driftModels.dir, 'drift', 1, MLP.bytes);
    writeModelConfig(driftModels.dir, 'drift', 1, { pool: 'drift' });
    cluster = await Cluster.start(async (dir) => {
      await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      // Pools "later" and "tight" have no worker: their jobs wait. "tight" takes one.
      await writeModelFile(dir, 'later', 1, buildTinyModel().bytes);
      writeModelConfig(dir, 'later', 1, { pool: 'later' });
      await writeModelFile(dir, 'tight', 1, buildTinyModel().bytes);
      writeModelConfig(dir, 'tight', 1, { pool: 'tight', maxQueue: 1 });
      // Metadata a gateway reads fine; onnxruntime on the worker cannot create a session.
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
      // The gateways' "drift" takes x [n]; the drift worker's takes x [1, 16] (a repository out
      // of step with the gateways'), so that worker refuses what the gateway accepted.
      await writeModelFile(dir, 'drift', 1, buildTinyModel().bytes);
      writeModelConfig(dir, 'drift', 1, { pool: 'drift' });
    });
    [gateway] = await Promise.all([cluster.gateway(), cluster.worker()]);
    client = await connectClient(gateway.url);
  });

  afterAll(async () => {
    await client.close();
    await cluster.close();
    driftModels.remove();
  });

  it('counts each job refused after it left the gateway once, by model and code; runs and cancels not at all', async () => {
    resultOf(await client.infer({ id: 'ran', model: 'mlp', inputs: mlpInput(0) }));
    // Refused by the gateway itself, as before: the same labels as the pool's refusals below.
    const badShape = await client.infer({ id: 'bad-shape', model: 'mlp', inputs: ONE });
    expect(errorCodeOf(badShape)).toBe('E_INPUT_SHAPE');
    // A full pool (counted in Redis, after submit returned).
    client.send({ type: 'infer', id: 'holds-tight', model: 'tight', inputs: tinyInput(0) });
    await client.nextOf(
      'progress',
      (m) => m.event.jobId === 'holds-tight' && m.event.stage === 'queued',
    );
    const full = await client.infer({ id: 'full', model: 'tight', inputs: tinyInput(1) });
    expect(errorCodeOf(full)).toBe('E_BUSY');
    client.send({ type: 'cancel', id: 'holds-tight' });
    expect(errorCodeOf(await client.collectJob('holds-tight'))).toBe('E_CANCELLED');
    // A deadline that passed while the job waited for a worker.
    const late = await client.infer({
      id: 'late',
      model: 'later',
      inputs: tinyInput(2),
      deadlineMs: 100,
    });
    expect(errorCodeOf(late)).toBe('E_DEADLINE_EXCEEDED');
    // On the worker: the first job waits for a load that fails; the second finds the model failed.
    for (const id of ['load-1', 'load-2']) {
      const log = await client.infer({ id, model: 'unknown-op', inputs: tinyInput(3) });
      expect(errorCodeOf(log), id).toBe('E_MODEL_LOAD_FAILED');
    }

    expect(rejectionsOf(await scrape(gateway.url))).toEqual({
      'mlp E_INPUT_SHAPE': 1,
      'tight E_BUSY': 1,
      'later E_DEADLINE_EXCEEDED': 1,
      'unknown-op E_MODEL_LOAD_FAILED': 2,
    });
  });

  it('counts a refusal on the gateway the job came through, not on another that resumed it', async () => {
    const other = await cluster.gateway();
    const resumer = await connectClient(other.url);
    // Pool "drift" has no worker yet: the job waits in Redis while the other gateway takes it up.
    client.send({ type: 'infer', id: 'drifted', model: 'drift', inputs: tinyInput(4) });
    await client.nextOf(
      'progress',
      (m) => m.event.jobId === 'drifted' && m.event.stage === 'queued',
    );
    resumer.send({ type: 'resume', ids: ['drifted'] });
    // Its own repository (the later --models wins), where "drift" takes other inputs. Whether the
    // other gateway follows the job when the worker refuses it or finds it refused already, it
    // must not count it: the count is the same either way.
    await cluster.worker(['--pool', 'drift', '--models', driftModels.dir]);
    for (const follower of [client, resumer])
      expect(errorCodeOf(await follower.collectJob('drifted'))).toBe('E_INPUT_SHAPE');

    expect(rejectionsOf(await scrape(gateway.url))['drift E_INPUT_SHAPE']).toBe(1);
    expect(rejectionsOf(await scrape(other.url))).toEqual({});
    await resumer.close();
  });
});

describe("redis-dispatcher: usage across gateways, and a worker's own /metrics", () => {
  let cluster: Cluster;
  let keysDir: { dir: string; remove: () => void };
  let gateways: CliProcess[];
  let worker: CliProcess;
  const KEYS = {
    alice: 'tk_test_alice',
    bob: 'tk_test_bob',
    carol: 'tk_test_carol',
    dan: 'tk_test_dan',
    eve: 'tk_test_eve',
  } as const;
  /** Carol may have one job in flight across the cluster, and start three a minute. */
  const CAROL_LIMITS = { maxConcurrent: 1, ratePerMinute: 3 };

  beforeAll(async () => {
    keysDir = tempDir('usage-keys');
    const keyFile = join(keysDir.dir, 'keys.json');
    writeFileSync(
      keyFile,
      JSON.stringify({
        keys: Object.entries(KEYS).map(([id, key]) => ({
          id,
          sha256: hashApiKey(key),
          ...(id === 'carol' ? CAROL_LIMITS : {}),
          ...(id === 'dan' ? { maxConcurrent: 1 } : {}),
          ...(id === 'eve' ? { maxConcurrent: 4 } : {}),
        })),
      }),
    );
    cluster = await Cluster.start(async (dir) => {
      await writeModelFile(dir, 'mlp', 1, MLP.bytes);
      await writeModelFile(dir, 'tiny', 1, buildTinyModel().bytes);
      await writeModelFile(dir, 'watched', 1, buildTinyModel().bytes);
      await writeSlowModel(dir, 'crawl');
      writeModelConfig(dir, 'crawl', 1, { intraOpNumThreads: 1 });
    });
    const [first, second, started] = await Promise.all([
      cluster.gateway(['--api-keys', keyFile]),
      cluster.gateway(['--api-keys', keyFile]),
      cluster.worker(['--metrics-port', '0']),
    ]);
    gateways = [first, second];
    worker = started;
  });

  afterAll(async () => {
    await cluster.close();
    keysDir.remove();
  });

  const usageOf = async (url: string, key: string): Promise<unknown[]> => {
    const response = await fetch(`${url}/v1/usage`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { usage: unknown[] }).usage;
  };

  it('reports on every gateway the jobs that ran on the workers, per key and model, each once', async () => {
    const [first, second] = gateways as [CliProcess, CliProcess];
    const alice = await connectClient(first.url, { apiKey: KEYS.alice });
    const bob = await connectClient(second.url, { apiKey: KEYS.bob });
    // Alice: three mlp jobs (the first a cold start) through the first gateway, one tiny job
    // through the second; a refused job (wrong shape) runs nowhere and is not counted.
    const aliceResults = [];
    for (let i = 0; i < 3; i++)
      aliceResults.push(
        resultOf(await alice.infer({ id: `a${i}`, model: 'mlp', inputs: mlpInput(i) })),
      );
    expect(errorCodeOf(await alice.infer({ id: 'bad', model: 'mlp', inputs: ONE }))).toBe(
      'E_INPUT_SHAPE',
    );
    const bobResult = resultOf(await bob.infer({ id: 'b0', model: 'mlp', inputs: mlpInput(9) }));
    const aliceOnSecond = await connectClient(second.url, { apiKey: KEYS.alice });
    const tinyResult = resultOf(
      await aliceOnSecond.infer({ id: 'a-tiny', model: 'tiny', inputs: tinyInput(1) }),
    );
    expect(aliceResults.map((r) => r.coldStart)).toEqual([true, false, false]);

    // Results carry run times rounded to the microsecond: a few microseconds apart at most.
    const seconds = (results: { timings: { runMs: number } }[]): number =>
      results.reduce((sum, r) => sum + r.timings.runMs, 0) / 1000;
    const expected = [
      {
        key: 'alice',
        model: 'mlp',
        version: '1',
        jobs: 3,
        coldStarts: 1,
        computeSeconds: seconds(aliceResults),
      },
      {
        key: 'alice',
        model: 'tiny',
        version: '1',
        jobs: 1,
        coldStarts: 1,
        computeSeconds: seconds([tinyResult]),
      },
    ];
    // Whichever gateway is asked, the same cluster-wide rows: the second gateway ran none of
    // Alice's mlp jobs, the first none of her tiny one.
    for (const gateway of gateways) {
      const rows = (await usageOf(gateway.url, KEYS.alice)) as typeof expected;
      expect(rows.map(({ computeSeconds: _, ...row }) => row)).toEqual(
        expected.map(({ computeSeconds: _, ...row }) => row),
      );
      rows.forEach((row, index) => {
        expect(row.computeSeconds).toBeGreaterThan(0);
        expect(row.computeSeconds).toBeCloseTo(expected[index]?.computeSeconds ?? NaN, 5);
      });
    }
    const bobRows = (await usageOf(first.url, KEYS.bob)) as typeof expected;
    expect(bobRows).toHaveLength(1);
    expect(bobRows[0]).toMatchObject({ key: 'bob', model: 'mlp', jobs: 1, coldStarts: 0 });
    expect(bobRows[0]?.computeSeconds).toBeCloseTo(seconds([bobResult]), 5);
    await Promise.all([alice.close(), bob.close(), aliceOnSecond.close()]);
  });
  it("holds a key's limits across gateways: one job in flight and three a minute for the cluster, not per gateway", async () => {
    const [first, second] = gateways as [CliProcess, CliProcess];
    const onFirst = await connectClient(first.url, { apiKey: KEYS.carol });
    const onSecond = await connectClient(second.url, { apiKey: KEYS.carol });
    // A long job through the first gateway holds Carol's one slot...
    onFirst.send({ type: 'infer', id: 'long', model: 'crawl', inputs: slowInput(CRAWL_ROWS) });
    await onFirst.nextOf('progress', (m) => m.event.jobId === 'long');
    // ...so the second gateway refuses her next job, over WebSocket and over HTTP.
    const refused = await onSecond.infer({ id: 'other', model: 'tiny', inputs: tinyInput(1) });
    expect(errorCodeOf(refused)).toBe('E_RATE_LIMITED');
    const http = await fetch(`${second.url}/v2/models/tiny/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEYS.carol}` },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }),
    });
    expect([http.status, ((await http.json()) as { code: string }).code]).toEqual([
      429,
      'E_RATE_LIMITED',
    ]);
    resultOf(await onFirst.collectJob('long'));
    // The slot is back. Refusals for concurrency spent no token, so two of the minute's three are
    // left: one job through each gateway, then none through either.
    resultOf(await onSecond.infer({ id: 'second', model: 'tiny', inputs: tinyInput(2) }));
    resultOf(await onFirst.infer({ id: 'third', model: 'tiny', inputs: tinyInput(3) }));
    for (const [client, id] of [
      [onSecond, 'fourth'],
      [onFirst, 'fifth'],
    ] as const) {
      const spent = await client.infer({ id, model: 'tiny', inputs: tinyInput(4) });
      expect(errorCodeOf(spent), id).toBe('E_RATE_LIMITED');
      expect(spent.error?.retryAfterMs, id).toBeGreaterThan(1000);
    }
    await Promise.all([onFirst.close(), onSecond.close()]);
  });

  it("cancels a job still waiting for its key's limits in Redis: E_CANCELLED, never queued, slot given back", async () => {
    const client = await connectClient((gateways[0] as CliProcess).url, { apiKey: KEYS.dan });
    const admin = new Redis(cluster.redis.url);
    try {
      // Redis holds every write (the limits script among them) until unpaused: the job waits for
      // its key's limits while the client cancels it. The pong proves the gateway read both.
      await admin.call('CLIENT', 'PAUSE', '10000', 'WRITE');
      client.send({ type: 'infer', id: 'held', model: 'tiny', inputs: tinyInput(5) });
      client.send({ type: 'cancel', id: 'held' });
      await client.roundTrip();
      await admin.call('CLIENT', 'UNPAUSE');
      expect(errorCodeOf(await client.collectJob('held'))).toBe('E_CANCELLED');
      expect(await bullJobOf(cluster, 'default', 'held')).toBeUndefined();
      // Dan's one slot was given back: his next job runs.
      resultOf(await client.infer({ id: 'after', model: 'tiny', inputs: tinyInput(6) }));
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      admin.disconnect();
      await client.close();
    }
  });

  it("counts a job's deadline from its arrival: a wait for the key's limits in Redis spends it", async () => {
    const client = await connectClient((gateways[0] as CliProcess).url, { apiKey: KEYS.dan });
    const admin = new Redis(cluster.redis.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '10000', 'WRITE');
      const sentAt = performance.now();
      client.send({
        type: 'infer',
        id: 'late',
        model: 'tiny',
        inputs: tinyInput(7),
        deadlineMs: 150,
      });
      // The same over HTTP: Triton's `timeout` parameter, in µs.
      const http = fetch(`${(gateways[0] as CliProcess).url}/v2/models/tiny/infer`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEYS.eve}` },
        body: JSON.stringify({
          parameters: { timeout: 150_000 },
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }],
        }),
      });
      await client.roundTrip();
      // What is tested is a deadline: Redis answers only once it has passed.
      await pollUntil(
        () => (performance.now() - sentAt > 300 ? true : undefined),
        'the deadline to pass',
      );
      await admin.call('CLIENT', 'UNPAUSE');
      expect(errorCodeOf(await client.collectJob('late'))).toBe('E_DEADLINE_EXCEEDED');
      const answer = await http;
      expect(((await answer.json()) as { code: string }).code).toBe('E_DEADLINE_EXCEEDED');
      expect(await bullJobOf(cluster, 'default', 'late')).toBeUndefined();
      resultOf(await client.infer({ id: 'in-time', model: 'tiny', inputs: tinyInput(8) }));
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      admin.disconnect();
      await client.close();
    }
  });

  it("serves the worker's model lifecycle and run metrics at its --metrics-port, without front-door series", async () => {
    expect(worker.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${worker.url}/health`);
    expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
    const labels = { model: 'watched', version: '1' };
    const before = await scrape(worker.url);
    expect(metricValue(before, 'tandem_jobs_total', labels)).toBeUndefined();

    const client = await connectClient((gateways[0] as CliProcess).url, { apiKey: KEYS.bob });
    for (const id of ['w0', 'w1']) {
      resultOf(await client.infer({ id, model: 'watched', inputs: tinyInput(2) }));
    }
    // Refused at the gateway: counted there, never on the worker.
    expect(
      errorCodeOf(await client.infer({ id: 'w-bad', model: 'watched', inputs: mlpInput(0) })),
    ).toBe('E_INPUT_SHAPE');
    const text = await scrape(worker.url);
    expect(metricValue(text, 'tandem_jobs_total', labels)).toBe(2);
    expect(metricValue(text, 'tandem_cold_starts_total', labels)).toBe(1);
    expect(metricValue(text, 'tandem_model_load_seconds_count', labels)).toBe(1);
    expect(metricValue(text, 'tandem_model_warmup_seconds_count', labels)).toBe(1);
    expect(metricValue(text, 'tandem_run_seconds_count', labels)).toBe(2);
    expect(metricValue(text, 'tandem_model_instances', { ...labels, state: 'ready' })).toBe(1);
    expect(metricValue(text, 'tandem_queue_depth', labels)).toBe(0);
    expect(metricValue(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(text).not.toContain('tandem_rejections_total');
    expect(text).not.toContain('tandem_websocket_connections');
    const gatewayText = await scrape((gateways[0] as CliProcess).url);
    expect(
      metricValue(gatewayText, 'tandem_rejections_total', {
        model: 'watched',
        code: 'E_INPUT_SHAPE',
      }),
    ).toBe(1);
    await client.close();
  });
});

/** Whether Redis's ACL log holds a denial of `command` to `user`. */
async function deniedTo(redis: Redis, user: string, command: string): Promise<boolean> {
  // Each entry is a flat list of field names and values.
  const entries = (await redis.call('ACL', 'LOG')) as unknown[][];
  return entries.some((entry) => {
    const fields = new Map<unknown, unknown>();
    for (let i = 0; i + 1 < entry.length; i += 2) fields.set(entry[i], entry[i + 1]);
    return fields.get('username') === user && fields.get('object') === command;
  });
}

describe('redis-dispatcher: a Redis command that fails around the add of a job', () => {
  let cluster: Cluster;
  /** Sets up the failures: ACL rules and keys BullMQ cannot use. */
  let admin: Redis;
  let gateway: CliProcess;
  let client: TestClient;

  beforeAll(async () => {
    cluster = await Cluster.start(async (dir) => {
      // Neither pool has a worker until a test starts one: their jobs wait.
      await writeModelFile(dir, 'later', 1, buildTinyModel().bytes);
      writeModelConfig(dir, 'later', 1, { pool: 'later' });
      await writeModelFile(dir, 'jammed', 1, buildTinyModel().bytes);
      writeModelConfig(dir, 'jammed', 1, { pool: 'jammed' });
    });
    admin = new Redis(cluster.redis.url);
    // The gateway's own Redis user, which may not read queue positions (ZRANK) until a test
    // allows it; BullMQ's scripts use no ZRANK, so adds and everything else go through.
    await admin.call('ACL', 'SETUSER', 'gateway', 'on', '>secret', '~*', '&*', '+@all', '-zrank');
    gateway = await cluster.gateway([
      '--redis',
      `redis://gateway:secret@127.0.0.1:${cluster.redis.port}`,
    ]);
    client = await connectClient(gateway.url);
  });

  afterAll(async () => {
    await client.close();
    await admin.quit();
    await cluster.close();
  });

  it('keeps following a queued job whose queue position cannot be read, and reports it later', async () => {
    client.send({ type: 'infer', id: 'unranked', model: 'later', inputs: tinyInput(1) });
    // The job is in the queue, and the gateway's read of its position was refused.
    await pollUntil(
      async () => ((await deniedTo(admin, 'gateway', 'zrank')) ? true : undefined),
      "Redis to refuse the gateway's position read",
    );
    expect(await (await bullJobOf(cluster, 'later', 'unranked'))?.getState()).toBe('prioritized');
    await admin.call('ACL', 'SETUSER', 'gateway', '+zrank');
    // The position comes once it can be read; the job was never failed.
    const positioned = await client.next(
      (m) =>
        (m.type === 'progress' &&
          m.event.jobId === 'unranked' &&
          m.event.queuePosition !== undefined) ||
        (m.type === 'error' && m.id === 'unranked'),
    );
    expect(positioned.type === 'progress' ? positioned.event.queuePosition : positioned).toBe(0);
    await cluster.worker(['--pool', 'later']);
    const log = await client.collectJob('unranked');
    expect(resultOf(log).outputs.y!.data).toEqual(new Float32Array([3]));
  });

  it('answers a resume that Redis fails to look up with a retryable E_QUEUE_UNAVAILABLE; the next resume gets the result', async () => {
    // The job comes in through another gateway, whose client goes before its answer.
    const other = await cluster.gateway();
    const leaving = await connectClient(other.url);
    leaving.send({ type: 'infer', id: 'adopted', model: 'later', inputs: tinyInput(4) });
    await leaving.nextOf('progress', (m) => m.event.jobId === 'adopted');
    await leaving.close();
    // This gateway may not read BullMQ's job hashes (HGETALL) for now.
    await admin.call('ACL', 'SETUSER', 'gateway', '-hgetall');
    try {
      client.send({ type: 'resume', ids: ['adopted'] });
      const refused = await client.nextOf('error', (m) => m.id === 'adopted');
      expect([refused.code, refused.retryable]).toEqual(['E_QUEUE_UNAVAILABLE', true]);
    } finally {
      await admin.call('ACL', 'SETUSER', 'gateway', '+hgetall');
    }
    client.send({ type: 'resume', ids: ['adopted'] });
    const log = await client.collectJob('adopted');
    expect(resultOf(log).outputs.y!.data).toEqual(new Float32Array([9]));
  });

  it('leaves nothing in Redis when adding a job to its queue fails after its input was stored', async () => {
    // A real Redis error in the add itself: BullMQ's add script starts by incrementing the
    // queue's id counter, which fails on a value that is no number. The gateway has stored the
    // job's input, its resume index entry and its waiting-set entry by then.
    await admin.set('tandem:jammed:id', 'not-a-number');
    const before = await admin.keys('tandem-*');
    const log = await client.infer({ id: 'jammed-0', model: 'jammed', inputs: tinyInput(2) });
    expect(errorCodeOf(log)).toBe('E_QUEUE_UNAVAILABLE');
    // No key that was not there before (one of an earlier job may have gone meanwhile: the
    // gateway forgets a finished job's resume entry once its client acknowledged the result).
    const after = await admin.keys('tandem-*');
    expect(after.filter((key) => !before.includes(key))).toEqual([]);
    expect(await admin.zcard('tandem-waiting:jammed')).toBe(0);
    // No stale waiting entry keeps the oldest-job age up.
    const text = await scrape(gateway.url);
    expect(metricValue(text, 'tandem_pool_oldest_wait_seconds', { pool: 'jammed' })).toBe(0);
    expect(metricValue(text, 'tandem_pool_queue_depth', { pool: 'jammed' })).toBe(0);
  });
});

describe("redis-dispatcher: queued jobs' positions and ETAs, as on a single server", () => {
  let cluster: Cluster;
  let gateway: CliProcess;
  let client: TestClient;

  beforeAll(async () => {
    cluster = await Cluster.start(async (dir) => {
      // Pool "eta": a quick model, and a slow one (a run grows with the rows) that holds the
      // pool's worker while quick jobs queue behind it. Pool "requeue" the same, for a job whose
      // worker dies.
      for (const [name, pool, slow] of [
        ['quick', 'eta', false],
        ['hold', 'eta', true],
        ['behind', 'requeue', false],
        ['victim', 'requeue', true],
      ] as const) {
        if (slow) await writeSlowModel(dir, name);
        else await writeModelFile(dir, name, 1, MLP.bytes);
        writeModelConfig(dir, name, 1, { pool, intraOpNumThreads: 1 });
      }
    });
    [gateway] = await Promise.all([cluster.gateway(), cluster.worker(['--pool', 'eta'])]);
    client = await connectClient(gateway.url);
  });

  afterAll(async () => {
    await client.close();
    await cluster.close();
  });

  /** The next `queued` progress of job `id` that arrives after `mark` messages were received. */
  const queuedAfter = (id: string, mark: number): Promise<ProgressEvent> =>
    client
      .nextOf(
        'progress',
        (m) =>
          m.event.jobId === id &&
          m.event.stage === 'queued' &&
          m.event.queuePosition !== undefined &&
          client.received.indexOf(m) >= mark,
      )
      .then((m) => m.event);

  it("gives a queued job an ETA from the workers' measured run time and its position", async () => {
    // Measured on the worker first: the gateway shows no ETA it cannot derive from measurements.
    resultOf(await client.infer({ id: 'measure', model: 'quick', inputs: mlpInput(0) }));
    const runMs = await pollUntil(async () => {
      const { models } = (await (await fetch(`${gateway.url}/v1/models`)).json()) as {
        models: ModelStatus[];
      };
      const quick = models.find((m) => m.name === 'quick');
      return quick?.state === 'ready' ? quick.estimates?.runMs : undefined;
    }, "the worker's measured run time to reach the gateway");
    // The pool's only worker is busy: quick jobs wait in Redis, one instance ready for them.
    client.send({ type: 'infer', id: 'hold', model: 'hold', inputs: slowInput(4096) });
    await client.nextOf('progress', (m) => m.event.jobId === 'hold' && m.event.stage === 'running');
    const ids = ['q0', 'q1', 'q2'];
    for (const [i, id] of ids.entries())
      client.send({ type: 'infer', id, model: 'quick', inputs: mlpInput(i + 1) });
    for (const [position, id] of ids.entries()) {
      const event = await queuedAfter(id, 0);
      expect(event.queuePosition).toBe(position);
      // The single server's formula: the runs ahead over the ready instances, then its own
      // (less the microseconds between the update and its event, which count down the ETA).
      const expected = (position + 1) * runMs;
      expect(event.etaMs).toBeLessThanOrEqual(expected);
      expect(event.etaMs).toBeGreaterThan(expected - 0.5);
    }
    for (const id of ['hold', ...ids]) {
      const log = await client.collectJob(id);
      resultOf(log);
      expectMonotoneFractions(log.progress);
    }
  });

  it('reports the position again of a job put back in the queue after its worker died', async () => {
    // Pool "requeue": a BullMQ worker in this process holds a job it never ends, without using
    // a core, and looks for stalled jobs as any worker does; a real worker then runs the victim.
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    let release = (): void => undefined;
    let holding = (): void => undefined;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const holder = new Worker(
      'requeue',
      () => {
        holding();
        return new Promise<void>((resolve) => (release = resolve));
      },
      { connection, prefix: 'tandem', stalledInterval: 400 },
    );
    try {
      await cluster.queue('requeue').add('hold', {}, { jobId: 'gate' });
      await held;
      const doomed = await cluster.worker(['--pool', 'requeue', ...FAST_FAILOVER]);
      const victimInput = slowInput(8192, 5);
      client.send({ type: 'infer', id: 'victim', model: 'victim', inputs: victimInput });
      await client.nextOf(
        'progress',
        (m) => m.event.jobId === 'victim' && m.event.stage === 'running',
      );
      client.send({ type: 'infer', id: 'behind', model: 'behind', inputs: mlpInput(9) });
      expect((await queuedAfter('behind', 0)).queuePosition).toBe(0);
      const mark = client.received.length;
      expect((await doomed.stop('SIGKILL')).signal).toBe('SIGKILL');
      // The holder's stall check puts the victim back, on BullMQ's plain wait list, whose jobs go
      // first: the victim is next, and the job that waited behind it one further back.
      expect((await queuedAfter('victim', mark)).queuePosition).toBe(0);
      expect((await queuedAfter('behind', mark)).queuePosition).toBe(1);
      expect(await (await bullJobOf(cluster, 'requeue', 'victim'))?.getState()).toBe('waiting');
      // The holder stops taking jobs before it lets go of its own; a new worker runs the rest.
      const closed = holder.close();
      release();
      await closed;
      await cluster.worker(['--pool', 'requeue', ...FAST_FAILOVER]);
      expect(resultOf(await client.collectJob('victim')).outputs.y!.data).toEqual(
        victimInput.x!.data,
      );
      resultOf(await client.collectJob('behind'));
    } finally {
      release();
      await holder.close();
      connection.disconnect();
    }
    // Every progress event of the victim, the ones taken above included: it ran, went back to
    // the queue, ran again (a cold start on the new worker), and its bar never went backwards.
    const progress = client.received.flatMap((m) =>
      m.type === 'progress' && m.event.jobId === 'victim' ? [m.event] : [],
    );
    const stages = stagesOf(progress);
    const requeued = stages.indexOf('queued', stages.indexOf('running'));
    expect(requeued, stages.join(' → ')).toBeGreaterThan(0);
    expect(stages.at(-1)).toBe('running');
    expectMonotoneFractions(progress);
  });
});

describe('redis-dispatcher: Redis not there at start', () => {
  it('serves after redisConnectTimeoutMs, answers jobs E_QUEUE_UNAVAILABLE, and closes', async () => {
    // A port nothing listens on: every connection attempt is refused and retried.
    const port = await freePort();
    const server = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'tiny', 1, buildTinyModel().bytes);
      },
      {
        redis: `redis://127.0.0.1:${port}`,
        redisConnectTimeoutMs: 200,
      },
    );
    try {
      const client = await connectClient(server.url);
      const answer = await client.infer({ id: 'j', model: 'tiny', inputs: tinyInput(1) });
      expect(errorCodeOf(answer)).toBe('E_QUEUE_UNAVAILABLE');
      await client.close();
    } finally {
      // It never ended while Redis was away: the pool's link waited for a connection for good.
      await server.close();
    }
  });
});
