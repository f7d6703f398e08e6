// Fixtures of the server's WebSocket and lifecycle integration tests: a real server on 127.0.0.1
// (port 0) over a temporary model repository, a compute-bound model whose run time grows with the
// batch (one long job holds the instance while short ones queue), onnxruntime-node run directly
// for comparisons, and a Prometheus text reader.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { expect } from 'vitest';
import type { ResultMessage, Tensor, TensorMap } from '@tandem/shared';
import { createServer, type ServerOptions, type TandemServer } from '@tandem/server';
import type { JobLog } from '@tandem/test-support';

// The slow model moved to test-support (client tests use it too); re-exported for these tests.
export { SLOW_WIDTH, buildMatMulChainModel, slowInput, writeSlowModel } from '@tandem/test-support';

/** A listening server and its temporary model directory. */
export interface TestServer {
  readonly server: TandemServer;
  /** The base URL, http://127.0.0.1:<port>. */
  readonly url: string;
  readonly modelsDir: string;
  /** Closes the server and removes the model directory. */
  close(): Promise<void>;
}

/**
 * Writes models into a fresh temporary directory (`setup`), then starts a server on it: loopback,
 * a free port, no built-in catalog, no logs. The repository is scanned at start, so models are
 * written before the server exists.
 */
export async function startServer(
  setup: (modelsDir: string) => Promise<void>,
  options: ServerOptions = {},
): Promise<TestServer> {
  const modelsDir = await mkdtemp(join(tmpdir(), 'tandem-server-test-'));
  try {
    await setup(modelsDir);
    const server = await createServer({
      host: '127.0.0.1',
      port: 0,
      catalog: false,
      logger: false,
      modelsDir,
      ...options,
    });
    const url = await server.listen();
    return {
      server,
      url,
      modelsDir,
      async close() {
        try {
          await server.close();
        } finally {
          await rm(modelsDir, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    await rm(modelsDir, { recursive: true, force: true });
    throw error;
  }
}

/** Runs a model file with onnxruntime-node directly (no server), for comparisons. */
export async function runDirect(
  path: string,
  inputs: TensorMap,
  outputs?: readonly string[],
): Promise<TensorMap> {
  const session = await ort.InferenceSession.create(path);
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(inputs)) {
      feeds[name] = new ort.Tensor(tensor.dtype, tensor.data, tensor.dims);
    }
    const results =
      outputs === undefined ? await session.run(feeds) : await session.run(feeds, [...outputs]);
    const map: TensorMap = {};
    for (const [name, value] of Object.entries(results)) {
      map[name] = { dtype: value.type, dims: [...value.dims], data: value.data } as Tensor;
    }
    return map;
  } finally {
    await session.release();
  }
}

/** The raw bytes of a numeric tensor. */
export function bytesOf(tensor: Tensor): Buffer {
  if (tensor.dtype === 'string') throw new Error('string tensors have no raw bytes');
  const { buffer, byteOffset, byteLength } = tensor.data;
  return Buffer.from(buffer, byteOffset, byteLength);
}

/** Expects two tensor maps to hold the same names, dtypes, dims and bytes. */
export function expectSameTensors(actual: TensorMap, expected: TensorMap): void {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, want] of Object.entries(expected)) {
    const got = actual[name]!;
    expect(got.dtype, name).toBe(want.dtype);
    expect(got.dims, name).toEqual(want.dims);
    expect(bytesOf(got).equals(bytesOf(want)), `bytes of ${name}`).toBe(true);
  }
}

/** The result of a job log, failing the test with the error's code when it failed. */
export function resultOf(log: JobLog): ResultMessage {
  if (log.error !== undefined) {
    throw new Error(`job ${log.error.id ?? '?'} failed: ${log.error.code} ${log.error.message}`);
  }
  return log.result;
}

/** The error code of a job log, failing the test when the job succeeded. */
export function errorCodeOf(log: JobLog): string {
  if (log.error === undefined) throw new Error(`job ${log.result.id} succeeded; expected an error`);
  return log.error.code;
}

/**
 * The value of one Prometheus sample (`name{labels} value`) whose labels include `labels`, or
 * undefined when no sample matches.
 */
export function metricValue(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const found = new Map<string, string>();
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      found.set(pair[1]!, pair[2]!);
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value))
      return Number(match[3]);
  }
  return undefined;
}

/** GETs /metrics as text. */
export async function scrapeMetrics(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** Distinct stages of a progress log, in order (repeats of the same stage collapsed). */
export function stagesOf(progress: readonly { stage: string }[]): string[] {
  const stages: string[] = [];
  for (const { stage } of progress) if (stages.at(-1) !== stage) stages.push(stage);
  return stages;
}

/** Expects fractions to stay in [0, 1) and never go backwards. */
export function expectMonotoneFractions(progress: readonly { fraction: number }[]): void {
  let previous = 0;
  for (const { fraction } of progress) {
    expect(fraction).toBeGreaterThanOrEqual(previous);
    expect(fraction).toBeLessThan(1);
    previous = fraction;
  }
}
