// The client's OIP v2 HTTP transport against a real server's HTTP side (what it would send to
// Triton or KServe): binary tensors both ways, a subset of outputs, coded errors, and createTandem
// with `remote: 'oip'`.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProgressEvent, TensorMap } from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { OipRemote, createTandem } from '@tandem/client';
import {
  buildMlpClassifier,
  createPrng,
  fillUniform,
  rejectionCode,
  writeModelFile,
} from '@tandem/test-support';

function mlpInput(rows: number, seed: number): TensorMap {
  return {
    x: {
      dtype: 'float32',
      dims: [rows, 8],
      data: fillUniform(new Float32Array(rows * 8), createPrng(seed), -1, 1),
    },
  };
}

function options(jobId: string, events: ProgressEvent[] = []) {
  return {
    jobId,
    priority: 5,
    signal: new AbortController().signal,
    onProgress: (e: ProgressEvent) => events.push(e),
  };
}

describe('OipRemote against a real server', () => {
  let dir: string;
  let server: TandemServer;
  let url: string;
  let mlpPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-client-oip-'));
    mlpPath = await writeModelFile(
      dir,
      'mlp',
      1,
      buildMlpClassifier({ features: 8, hidden: 16, classes: 3, seed: 5 }).bytes,
    );
    server = await createServer({ port: 0, catalog: false, modelsDir: dir });
    url = await server.listen();
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs with binary tensors both ways, equal to onnxruntime-node', async () => {
    const remote = new OipRemote({ url });
    const inputs = mlpInput(3, 1);
    const events: ProgressEvent[] = [];
    const result = await remote.run({ name: 'mlp' }, inputs, options('o-1', events));
    const session = await ort.InferenceSession.create(mlpPath);
    const direct = await session.run({
      x: new ort.Tensor('float32', inputs.x!.data as Float32Array, [3, 8]),
    });
    await session.release();
    expect(Array.from(result.outputs.probs!.data as Float32Array)).toEqual(
      Array.from(direct.probs!.data as Float32Array),
    );
    expect(Array.from(result.outputs.label!.data as BigInt64Array)).toEqual(
      Array.from(direct.label!.data as BigInt64Array),
    );
    expect(events.map((e) => e.stage)).toEqual(['queued', 'running']);
    expect((await remote.estimate({ name: 'mlp' })).ms).toBeGreaterThan(0);
  });

  it('returns only the requested outputs and keeps error codes', async () => {
    const remote = new OipRemote({ url });
    const result = await remote.run({ name: 'mlp' }, mlpInput(1, 2), {
      ...options('o-2'),
      outputs: ['label'],
    });
    expect(Object.keys(result.outputs)).toEqual(['label']);
    const bad: TensorMap = { x: { dtype: 'float32', dims: [1, 7], data: new Float32Array(7) } };
    expect(await rejectionCode(remote.run({ name: 'mlp' }, bad, options('o-3')))).toBe(
      'E_INPUT_SHAPE',
    );
    expect(await rejectionCode(remote.run({ name: 'nope' }, bad, options('o-4')))).toBe(
      'E_MODEL_NOT_FOUND',
    );
    expect((await remote.estimate({ name: 'nope' })).available).toBe(false);
  });

  it('serves createTandem with remote: oip', async () => {
    const tandem = createTandem({ server: url, remote: 'oip', models: { mlp: { name: 'mlp' } } });
    const result = await tandem.run('mlp', mlpInput(2, 3));
    expect(result.placement).toBe('remote');
    expect(result.outputs.probs?.dims).toEqual([2, 3]);
    await tandem.close();
  });
});
