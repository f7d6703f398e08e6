// Server latency against the same work done without Tandem, all measured in this run:
// a tiny model's WebSocket round trip vs raw session.run; PaddleOCR detection at 1×3×320×320 vs raw
// session.run and vs a hand-written fastify JSON endpoint; the first request after `warm` vs the
// steady p50; and what streaming progress costs.

import type { Bench, BenchFigure } from './bench-types.js';
import { rawSession, startJsonEndpoint } from './baselines.js';
import { makeFigure } from './figure.js';
import { createBenchRepository, noise, startBenchServer } from './server-fixtures.js';
import { median, measureLatency } from './timing.js';
import { connectBenchClient } from './ws-bench-client.js';

const NAME = 'server-latency';
const DET_DIMS = [1, 3, 320, 320];

const bench: Bench = {
  name: NAME,
  async run(): Promise<BenchFigure[]> {
    const repository = createBenchRepository();
    const figures: BenchFigure[] = [];
    try {
      const tinyInput = { x: noise([16]) };
      const detInput = { x: noise(DET_DIMS) };

      // Baselines first: onnxruntime-node directly.
      const rawTiny = await rawSession(repository.tinyPath);
      const rawTinyTiming = await measureLatency(() => rawTiny.run(tinyInput), { minTimeMs: 2000 });
      await rawTiny.release();
      const rawDet = await rawSession(repository.detPath);
      const rawDetTiming = await measureLatency(() => rawDet.run(detInput), {
        minTimeMs: 4000,
        warmupMs: 1000,
      });
      await rawDet.release();
      const json = await startJsonEndpoint(repository.detPath);
      const jsonTiming = await measureLatency(() => json.infer(detInput), {
        minTimeMs: 4000,
        warmupMs: 1000,
      });
      await json.close();

      const { server, url } = await startBenchServer(repository);
      const client = await connectBenchClient(url);
      const tandemTiny = await measureLatency(
        () => client.infer('tiny', tinyInput, { progress: false }),
        { minTimeMs: 2000 },
      );
      const tandemDet = await measureLatency(() => client.infer('det', detInput), {
        minTimeMs: 4000,
        warmupMs: 1000,
      });

      // Progress on vs off, interleaved so drift in machine load hits both alike.
      const withProgress: number[] = [];
      const withoutProgress: number[] = [];
      for (let i = 0; i < 16; i++) {
        for (const [samples, progress] of [
          [withProgress, true],
          [withoutProgress, false],
        ] as const) {
          const t0 = performance.now();
          await client.infer('det', detInput, { progress });
          samples.push(performance.now() - t0);
        }
      }
      await client.close();
      await server.close();

      // First request after warm, on fresh servers (a cold model each time).
      const firstAfterWarm: number[] = [];
      for (let trial = 0; trial < 3; trial++) {
        const fresh = await startBenchServer(repository);
        const response = await fetch(`${fresh.url}/v1/models/det/warm?wait=true`, {
          method: 'POST',
        });
        if (!response.ok) throw new Error(`warm failed: ${response.status}`);
        const freshClient = await connectBenchClient(fresh.url);
        const t0 = performance.now();
        const result = await freshClient.infer('det', detInput);
        firstAfterWarm.push(performance.now() - t0);
        if (result.coldStart) throw new Error('the first request after warm was a cold start');
        await freshClient.close();
        await fresh.server.close();
      }

      figures.push(
        makeFigure({
          bench: NAME,
          figure: 'p50 round trip, tiny model (16 floats), WebSocket',
          value: tandemTiny.medianMs,
          unit: 'ms',
          baseline: 'raw session.run p50',
          baselineValue: rawTinyTiming.medianMs,
          better: 'lower',
          target: 1.0,
          targetKind: 'delta',
        }),
        makeFigure({
          bench: NAME,
          figure: 'p50, PaddleOCR det 1×3×320×320, WebSocket',
          value: tandemDet.medianMs,
          unit: 'ms',
          baseline: 'raw session.run p50',
          baselineValue: rawDetTiming.medianMs,
          better: 'lower',
          target: 1.1,
        }),
        makeFigure({
          bench: NAME,
          figure: 'p50, PaddleOCR det 1×3×320×320, WebSocket',
          value: tandemDet.medianMs,
          unit: 'ms',
          baseline: 'fastify JSON endpoint p50',
          baselineValue: jsonTiming.medianMs,
          better: 'lower',
          target: 1.0,
        }),
        makeFigure({
          bench: NAME,
          figure: 'first request after warm, PaddleOCR det (median of 3 fresh servers)',
          value: median(firstAfterWarm),
          unit: 'ms',
          baseline: 'steady p50',
          baselineValue: tandemDet.medianMs,
          better: 'lower',
          target: 1.5,
        }),
        makeFigure({
          bench: NAME,
          figure: 'p50 with progress streamed, PaddleOCR det',
          value: median(withProgress),
          unit: 'ms',
          baseline: 'same, progress: false',
          baselineValue: median(withoutProgress),
          better: 'lower',
          target: 1.02,
        }),
      );
    } finally {
      repository.dispose();
    }
    return figures;
  },
};

export default bench;
