// Server throughput against baselines measured in this run: 32 concurrent tiny-model requests vs a
// plain ws echo server carrying the same frames (on one connection, and as 32 clients with one
// request each) and vs a hand-written fastify JSON endpoint; and dynamic batching vs none at 16
// concurrent clients on an MLP.

import { decodeMessage, encodeMessage } from '@tandem/shared';
import type { Bench, BenchFigure } from './bench-types.js';
import { startEchoServer, startJsonEndpoint } from './baselines.js';
import { makeFigure } from './figure.js';
import {
  MLP,
  createBenchRepository,
  noise,
  runConcurrently,
  runLanes,
  startBenchServer,
} from './server-fixtures.js';
import { mainThreadCpuMs, medianBy } from './timing.js';
import { connectBenchClient } from './ws-bench-client.js';

const NAME = 'server-throughput';
const CONCURRENCY = 32;
const REQUESTS = 4000;
/** Rounds of Tandem against the echo server, back to back, the first of each pair alternating. */
const PAIRED_ROUNDS = 10;
/** Paired rounds of the 32-client figure (informational, so fewer). */
const CLIENT_ROUNDS = 6;
/** Untimed requests before each timed run of the paired rounds. */
const LEAD_IN_REQUESTS = 1000;
const BATCH_CLIENTS = 16;
const BATCH_REQUESTS = 800;

/** Operations run side by side, one at a time each (see runLanes). */
type Lanes = readonly (() => Promise<unknown>)[];

/** `CONCURRENCY` lanes calling the same `op`: concurrent requests on one connection. */
function oneConnection(op: () => Promise<unknown>): Lanes {
  return Array.from({ length: CONCURRENCY }, () => op);
}

/** One timed run: operations per second and the main thread's CPU µs per operation. */
interface Rate {
  readonly opsPerSecond: number;
  /** Undefined where the thread's CPU time cannot be read (see mainThreadCpuMs). */
  readonly cpuUsPerOp: number | undefined;
}

/**
 * One run of `requests` operations after an untimed lead-in: switching between servers costs the
 * first few hundred requests (threads asleep, caches cold), which the side measured second would
 * otherwise pay in every round.
 */
async function rate(requests: number, lanes: Lanes): Promise<Rate> {
  await runLanes(LEAD_IN_REQUESTS, lanes);
  const cpuBefore = mainThreadCpuMs();
  const ms = await runLanes(requests, lanes);
  const cpuAfter = mainThreadCpuMs();
  return {
    opsPerSecond: (requests / ms) * 1000,
    cpuUsPerOp:
      cpuBefore === undefined || cpuAfter === undefined
        ? undefined
        : ((cpuAfter - cpuBefore) / requests) * 1000,
  };
}

/**
 * Paired rounds of `a` and `b` (the first of each pair alternating): this machine's speed drifts
 * by tens of percent within seconds, so each round's ratio compares like with like. Returns the
 * round whose b/a ratio is the median.
 */
async function pairedRates(
  rounds: number,
  a: Lanes,
  b: Lanes,
): Promise<{ a: number; b: number; cpu: { a: number; b: number } | undefined }> {
  await runLanes(2000, a); // warm-up: both sides' code optimised
  await runLanes(2000, b);
  const pairs: { a: Rate; b: Rate }[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      const first = await rate(REQUESTS, a);
      pairs.push({ a: first, b: await rate(REQUESTS, b) });
    } else {
      const second = await rate(REQUESTS, b);
      pairs.push({ a: await rate(REQUESTS, a), b: second });
    }
  }
  const median = medianBy(pairs, (pair) => pair.b.opsPerSecond / pair.a.opsPerSecond);
  const cpuA = pairs.map((pair) => pair.a.cpuUsPerOp);
  const cpuB = pairs.map((pair) => pair.b.cpuUsPerOp);
  const known = (values: (number | undefined)[]): values is number[] =>
    values.every((value) => value !== undefined);
  return {
    a: median.a.opsPerSecond,
    b: median.b.opsPerSecond,
    // CPU per request hardly drifts with the machine's speed: medians of each side suffice.
    cpu: known(cpuA) && known(cpuB) ? { a: medianOf(cpuA), b: medianOf(cpuB) } : undefined,
  };
}

function medianOf(values: readonly number[]): number {
  return medianBy(values, (value) => value);
}

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
      const echo = await startEchoServer(CONCURRENCY);
      let echoId = 0;
      const echoOp = (lane: number) => async (): Promise<void> => {
        const frame = encodeMessage(
          { type: 'infer', id: `e${echoId++}`, model: 'tiny', inputs: tinyInput, progress: false },
          { pooled: true },
        );
        decodeMessage(await echo.roundTrip(frame, lane));
      };
      const { server, url } = await startBenchServer(repository);
      const client = await connectBenchClient(url);
      const paired = await pairedRates(
        PAIRED_ROUNDS,
        oneConnection(echoOp(0)),
        oneConnection(() => client.infer('tiny', tinyInput, { progress: false })),
      );
      const tandemRate = paired.b;
      await client.close();

      // The same, as 32 clients with one request each in flight (a page each, say).
      const clients32 = await Promise.all(
        Array.from({ length: CONCURRENCY }, () => connectBenchClient(url)),
      );
      const perClient = await pairedRates(
        CLIENT_ROUNDS,
        clients32.map((_, lane) => echoOp(lane)),
        clients32.map((c) => () => c.infer('tiny', tinyInput, { progress: false })),
      );
      await Promise.all(clients32.map((c) => c.close()));
      await echo.close();

      // After the paired rounds: its megabytes of JSON garbage would weigh on their heap.
      const json = await startJsonEndpoint(repository.tinyPath);
      const jsonRate = await opsPerSecond(3, REQUESTS / 4, CONCURRENCY, () =>
        json.infer(tinyInput),
      );
      await json.close();

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
          figure: `requests/s at ${CONCURRENCY} concurrent, tiny model (1024 floats) (round with the median of ${PAIRED_ROUNDS} paired ratios)`,
          value: tandemRate,
          unit: 'req/s',
          baseline: 'plain ws echo, same frames',
          baselineValue: paired.a,
          better: 'higher',
          target: 0.5,
        }),
        // What the ratio above would be if this thread were never kept waiting: the hypervisor
        // of a shared machine steals a varying share of wall time, not of CPU time.
        ...(paired.cpu === undefined
          ? []
          : [
              makeFigure({
                bench: NAME,
                figure: `main-thread CPU per request at ${CONCURRENCY} concurrent, tiny model (bench client and server share the thread; medians of ${PAIRED_ROUNDS} rounds)`,
                value: paired.cpu.b,
                unit: 'µs',
                baseline: 'plain ws echo, same frames',
                baselineValue: paired.cpu.a,
                better: 'lower',
              }),
            ]),
        makeFigure({
          bench: NAME,
          figure: `requests/s, ${CONCURRENCY} clients with one tiny request each in flight (round with the median of ${CLIENT_ROUNDS} paired ratios)`,
          value: perClient.b,
          unit: 'req/s',
          baseline: `plain ws echo, ${CONCURRENCY} clients, same frames`,
          baselineValue: perClient.a,
          better: 'higher',
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
