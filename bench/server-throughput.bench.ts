// Server throughput against baselines measured in this run: 32 concurrent tiny-model requests vs a
// plain ws echo server carrying the same frames and vs a hand-written fastify JSON endpoint; and
// dynamic batching vs none at 16 concurrent clients on an MLP.

import { decodeMessage, encodeMessage } from '@tandem/shared';
import type { Bench, BenchFigure } from './bench-types.js';
import { startEchoServer, startJsonEndpoint } from './baselines.js';
import { makeFigure } from './figure.js';
import {
  MLP,
  createBenchRepository,
  noise,
  runConcurrently,
  startBenchServer,
} from './server-fixtures.js';
import { connectBenchClient } from './ws-bench-client.js';

const NAME = 'server-throughput';
const CONCURRENCY = 32;
const REQUESTS = 4000;
const BATCH_CLIENTS = 16;
const BATCH_REQUESTS = 800;

/** Median ops/s of `trials` runs of `requests` operations. */
async function opsPerSecond(
  trials: number,
  requests: number,
  concurrency: number,
  op: () => Promise<unknown>,
): Promise<number> {
  const rates: number[] = [];
  await runConcurrently(Math.min(200, requests), concurrency, op); // warm-up
  for (let i = 0; i < trials; i++)
    rates.push((requests / (await runConcurrently(requests, concurrency, op))) * 1000);
  return rates.sort((a, b) => a - b)[Math.floor(rates.length / 2)] as number;
}

const bench: Bench = {
  name: NAME,
  async run(): Promise<BenchFigure[]> {
    const repository = createBenchRepository();
    try {
      const tinyInput = { x: noise([1024]) };
      // The echo client does the client-side work Tandem's does (encode each request, decode each
      // reply), so the ratio compares the servers.
      const echo = await startEchoServer();
      let echoId = 0;
      const echoRate = await opsPerSecond(3, REQUESTS, CONCURRENCY, async () => {
        const frame = encodeMessage(
          {
            type: 'infer',
            id: `e${echoId++}`,
            model: 'tiny',
            inputs: tinyInput,
            progress: false,
          },
          { pooled: true },
        );
        decodeMessage(await echo.roundTrip(frame));
      });
      await echo.close();

      const json = await startJsonEndpoint(repository.tinyPath);
      const jsonRate = await opsPerSecond(3, REQUESTS / 4, CONCURRENCY, () =>
        json.infer(tinyInput),
      );
      await json.close();

      const { server, url } = await startBenchServer(repository);
      const client = await connectBenchClient(url);
      const tandemRate = await opsPerSecond(3, REQUESTS, CONCURRENCY, () =>
        client.infer('tiny', tinyInput, { progress: false }),
      );
      await client.close();

      // Dynamic batching: 16 clients, one single-row job each in flight.
      const rowInput = { x: noise([1, MLP.features]) };
      const clients = await Promise.all(
        Array.from({ length: BATCH_CLIENTS }, () => connectBenchClient(url)),
      );
      const rate = async (model: string): Promise<number> => {
        const lanes = clients.map((c) => () => c.infer(model, rowInput, { progress: false }));
        let next = 0;
        return opsPerSecond(3, BATCH_REQUESTS, BATCH_CLIENTS, () =>
          (lanes[next++ % lanes.length] as () => Promise<unknown>)(),
        );
      };
      const unbatched = await rate('mlp');
      const batched = await rate('mlp-batched');
      await Promise.all(clients.map((c) => c.close()));
      await server.close();

      return [
        makeFigure({
          bench: NAME,
          figure: `requests/s at ${CONCURRENCY} concurrent, tiny model (1024 floats)`,
          value: tandemRate,
          unit: 'req/s',
          baseline: 'plain ws echo, same frames',
          baselineValue: echoRate,
          better: 'higher',
          target: 0.5,
        }),
        makeFigure({
          bench: NAME,
          figure: `requests/s at ${CONCURRENCY} concurrent, tiny model (1024 floats)`,
          value: tandemRate,
          unit: 'req/s',
          baseline: 'fastify JSON endpoint',
          baselineValue: jsonRate,
          better: 'higher',
          target: 1.0,
        }),
        makeFigure({
          bench: NAME,
          figure: `requests/s at ${BATCH_CLIENTS} clients, MLP ${MLP.features}→${MLP.hidden}→${MLP.classes}, maxBatch 16`,
          value: batched,
          unit: 'req/s',
          baseline: 'same, no batching',
          baselineValue: unbatched,
          better: 'higher',
          target: 1.5,
        }),
      ];
    } finally {
      repository.dispose();
    }
  },
};

export default bench;
