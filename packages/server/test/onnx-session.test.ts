// createSession with real onnxruntime-node: configured execution providers that cannot start on
// this machine are skipped for the next one (and reported), so the session says which provider
// really runs it; a model that is bad fails on every provider with E_MODEL_LOAD_FAILED.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel, writeModelFile } from '@tandem/test-support';
import {
  createSession,
  releaseSession,
  runSession,
  type ExecutionProvider,
} from '../src/onnx-session.js';
import { TandemError } from '@tandem/shared';

describe('createSession', () => {
  let dir: string;
  let path: string;
  const { scale, offset, bytes } = buildTinyModel();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-onnx-session-'));
    path = await writeModelFile(dir, 'tiny', 1, bytes);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const built = new Set(ort.listSupportedBackends().map((backend) => backend.name));
  /** A provider the settings accept that this build of onnxruntime-node does not have. */
  const missing = (['dml', 'coreml', 'tensorrt', 'cuda'] as const).find((p) => !built.has(p));

  /** Whether CUDA starts here: on a GPU machine with the CUDA build, `['cuda', 'cpu']` runs on it. */
  async function cudaStarts(): Promise<boolean> {
    if (!built.has('cuda')) return false;
    try {
      await releaseSession(await createSession(path, { executionProviders: ['cuda'] }));
      return true;
    } catch {
      return false;
    }
  }

  /** The code of a TandemError, else what was thrown. */
  const codeOf = (error: unknown): unknown => (error instanceof TandemError ? error.code : error);

  async function expectRuns(providers: readonly ExecutionProvider[]): Promise<{
    backend: string;
    skipped: readonly { provider: string; reason: string }[];
  }> {
    const loaded = await createSession(path, { executionProviders: providers });
    try {
      const outputs = await runSession(
        loaded,
        { x: { dtype: 'float32', dims: [4], data: new Float32Array([1, 2, 3, 4]) } },
        undefined,
      );
      expect(Array.from(outputs.y!.data as Float32Array)).toEqual(
        [1, 2, 3, 4].map((v) => Math.fround(Math.fround(v * scale) + offset)),
      );
      return { backend: loaded.backend, skipped: loaded.skipped };
    } finally {
      await releaseSession(loaded);
    }
  }

  it('defaults to cpu and skips nothing', async () => {
    expect(
      await createSession(path).then(async (loaded) => {
        await releaseSession(loaded);
        return { backend: loaded.backend, skipped: loaded.skipped };
      }),
    ).toEqual({ backend: 'cpu', skipped: [] });
  });

  it('skips a provider this build lacks, says why, and names the one that runs', async () => {
    expect(missing, 'every provider is built in: nothing to skip').toBeDefined();
    const ran = await expectRuns([missing!, 'cpu']);
    expect(ran.backend).toBe('cpu');
    expect(ran.skipped).toEqual([
      { provider: missing, reason: 'not in this build of onnxruntime-node' },
    ]);
  });

  it('skips CUDA where it cannot start (no CUDA libraries or GPU), and runs on it where it can', async () => {
    const ran = await expectRuns(['cuda', 'cpu']);
    if (await cudaStarts()) {
      expect(ran).toEqual({ backend: 'cuda', skipped: [] });
    } else {
      expect(ran.backend).toBe('cpu');
      expect(ran.skipped.map((s) => s.provider)).toEqual(['cuda']);
      expect(ran.skipped[0]!.reason.length).toBeGreaterThan(0);
    }
  });

  it('fails with E_MODEL_LOAD_FAILED when no configured provider can start', async () => {
    expect(missing).toBeDefined();
    const error = await createSession(path, { executionProviders: [missing!] }).catch(
      (e: unknown) => e,
    );
    expect(codeOf(error)).toBe('E_MODEL_LOAD_FAILED');
    expect((error as Error).message).toContain(missing!);
  });

  it('fails a corrupt model with E_MODEL_LOAD_FAILED on every provider, not just the first', async () => {
    const corrupt = join(dir, 'corrupt.onnx');
    await writeFile(corrupt, bytes.subarray(0, Math.floor(bytes.byteLength / 2)));
    const error = await createSession(corrupt, { executionProviders: ['cuda', 'cpu'] }).catch(
      (e: unknown) => e,
    );
    expect(codeOf(error)).toBe('E_MODEL_LOAD_FAILED');
    expect((error as Error).message).toMatch(/onnxruntime could not load the model/);
  });
});
