// Scale-out on BullMQ/Redis, measured against baselines in this run: the throughput of two workers
// against one on a compute-bound model (one intra-op thread per worker, so each worker is one
// core's worth), and the round trip of a tiny model through gateway → Redis → worker against the
// same server in-process. A real redis-server and real `tandem worker` processes (the built CLI).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, startWorkerCli, slowInput, writeSlowModel } from '@tandem/test-support';
import type { Bench, BenchFigure } from './bench-types.js';
import { makeFigure } from './figure.js';
import {
  createBenchRepository,
  noise,
  runConcurrently,
  startBenchServer,
} from './server-fixtures.js';
import { median } from './timing.js';
import { connectBenchClient, type BenchClient } from './ws-bench-client.js';

const NAME = 'scale-out';
/**
 * Rows and MatMul layers of the compute-bound job: about a hundred ms on one thread for 16 KB in
 * and out, so the bench measures the workers' compute, not moving tensors through one gateway.
 */
const ROWS = 16;
const LAYERS = 1024;
const JOBS = 24;
const CONCURRENCY = 8;

/** Jobs per second of `JOBS` jobs on `model`, `CONCURRENCY` in flight. */
async function rate(client: BenchClient, model: string): Promise<number> {
  const input = slowInput(ROWS);
  const ms = await runConcurrently(JOBS, CONCURRENCY, () =>
    client.infer(model, input, { progress: false }),
  );
  return (JOBS / ms) * 1000;
}

const bench: Bench = {
  name: NAME,
  async run(): Promise<BenchFigure[]> {
    const repository = createBenchRepository();
    const redis = await startRedis();
    const workers: Awaited<ReturnType<typeof startWorkerCli>>[] = [];
    try {
      // The same compute-bound model in two pools: one served by one worker, one by two, so the
      // two set-ups are measured in alternating blocks under the same machine drift.
      for (const pool of ['one', 'two']) {
        await writeSlowModel(repository.dir, `chain-${pool}`, LAYERS);
        writeFileSync(
          join(repository.dir, `chain-${pool}`, '1', 'model.json'),
          JSON.stringify({ pool, intraOpNumThreads: 1, minReady: 1 }),
        );
      }
      const worker = (pool: string): Promise<Awaited<ReturnType<typeof startWorkerCli>>> =>
        startWorkerCli([
          '--redis',
          redis.url,
          '--models',
          repository.dir,
          '--no-catalog',
          '--quiet',
          '--pool',
          pool,
        ]);
      workers.push(
        ...(await Promise.all([worker('one'), worker('two'), worker('two'), worker('default')])),
      );
      const gateway = await startBenchServer(repository, { redis: redis.url });
      const local = await startBenchServer(repository);
      const viaRedis = await connectBenchClient(gateway.url);
      const inProcess = await connectBenchClient(local.url);

      // Throughput: warm both pools (every worker loads on its own), then alternate.
      await rate(viaRedis, 'chain-one');
      await rate(viaRedis, 'chain-two');
      const one: number[] = [];
      const two: number[] = [];
      for (let round = 0; round < 5; round++) {
        one.push(await rate(viaRedis, 'chain-one'));
        two.push(await rate(viaRedis, 'chain-two'));
      }

      // Latency of a tiny model: in-process against gateway → Redis → worker → gateway.
      const tinyInput = { x: noise([16]) };
      const samples = { local: [] as number[], redis: [] as number[] };
      const block = async (target: number[], client: BenchClient, runs: number): Promise<void> => {
        for (let i = 0; i <= runs; i++) {
          const t0 = performance.now();
          await client.infer('tiny', tinyInput, { progress: false });
          if (i > 0) target.push(performance.now() - t0);
        }
      };
      for (let round = 0; round < 6; round++) {
        await block(samples.local, inProcess, 100);
        await block(samples.redis, viaRedis, 100);
      }
      await viaRedis.close();
      await inProcess.close();
      await gateway.server.close();
      await local.server.close();

      return [
        makeFigure({
          bench: NAME,
          figure: `throughput, 2 workers vs 1, compute-bound MatMul chain (${ROWS}×${LAYERS}, 1 thread each)`,
          value: median(two),
          unit: 'jobs/s',
          baseline: '1 worker',
          baselineValue: median(one),
          better: 'higher',
          target: 1.5,
        }),
        makeFigure({
          bench: NAME,
          figure: 'tiny model round trip p50, gateway → Redis → worker',
          value: median(samples.redis),
          unit: 'ms',
          baseline: 'in-process server',
          baselineValue: median(samples.local),
          better: 'lower',
        }),
      ];
    } finally {
      await Promise.allSettled(workers.map((worker) => worker.stop('SIGTERM')));
      await redis.stop();
      repository.dispose();
    }
  },
};

export default bench;
