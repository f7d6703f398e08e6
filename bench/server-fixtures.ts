// Shared set-up for the server benches: a temporary model repository with synthetic models and the
// real PaddleOCR detector, a Tandem server on a free loopback port, and inputs.

import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type ServerOptions, type TandemServer } from '@tandem/server';
import {
  buildMlpClassifier,
  buildTinyModel,
  createPrng,
  fillUniform,
  realModelPath,
} from '@tandem/test-support';
import type { Tensor } from '@tandem/shared';

/** The MLP used for the batching bench: big enough that a run is real work. */
export const MLP = { features: 512, hidden: 2048, classes: 16 } as const;

/** A model repository in a temp dir; remove it with `dispose`. */
export interface BenchRepository {
  readonly dir: string;
  readonly tinyPath: string;
  readonly mlpPath: string;
  readonly detPath: string;
  dispose(): void;
}

function put(dir: string, name: string, bytes: Uint8Array, config?: object): string {
  const versionDir = join(dir, name, '1');
  mkdirSync(versionDir, { recursive: true });
  const path = join(versionDir, 'model.onnx');
  writeFileSync(path, bytes);
  if (config !== undefined) writeFileSync(join(versionDir, 'model.json'), JSON.stringify(config));
  return path;
}

/** Writes the bench models: tiny, mlp (maxBatch 1), mlp-batched (maxBatch 16), det (PaddleOCR). */
export function createBenchRepository(): BenchRepository {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-'));
  const tinyPath = put(dir, 'tiny', buildTinyModel().bytes);
  const mlp = buildMlpClassifier({ ...MLP, seed: 7 }).bytes;
  const mlpPath = put(dir, 'mlp', mlp);
  put(dir, 'mlp-batched', mlp, { maxBatch: 16, maxDelayMs: 2 });
  const detDir = join(dir, 'det', '1');
  mkdirSync(detDir, { recursive: true });
  const detPath = join(detDir, 'model.onnx');
  copyFileSync(realModelPath('paddleocr-det'), detPath);
  writeFileSync(
    join(detDir, 'model.json'),
    JSON.stringify({ warmupDims: { x: [1, 3, 320, 320] } }),
  );
  return {
    dir,
    tinyPath,
    mlpPath,
    detPath,
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Starts a quiet server on a free port over the repository. */
export async function startBenchServer(
  repository: BenchRepository,
  options: ServerOptions = {},
): Promise<{ server: TandemServer; url: string }> {
  const server = await createServer({
    port: 0,
    catalog: false,
    modelsDir: repository.dir,
    ...options,
  });
  const url = await server.listen();
  return { server, url };
}

/** A float32 tensor of uniform noise. */
export function noise(dims: number[], seed = 1): Tensor {
  const count = dims.reduce((a, b) => a * b, 1);
  return {
    dtype: 'float32',
    dims,
    data: fillUniform(new Float32Array(count), createPrng(seed), -1, 1),
  };
}

/** Runs `count` async operations with at most `concurrency` in flight; returns elapsed ms. */
export function runConcurrently(
  count: number,
  concurrency: number,
  op: () => Promise<unknown>,
): Promise<number> {
  return runLanes(
    count,
    Array.from({ length: concurrency }, () => op),
  );
}

/**
 * Runs `count` async operations, one at a time in each lane (lane i always calls `lanes[i]`, so
 * a lane can stand for one client with one request in flight); returns elapsed ms.
 */
export async function runLanes(
  count: number,
  lanes: readonly (() => Promise<unknown>)[],
): Promise<number> {
  let started = 0;
  const t0 = performance.now();
  await Promise.all(
    lanes.map(async (op) => {
      while (started < count) {
        started++;
        await op();
      }
    }),
  );
  return performance.now() - t0;
}
