// createTandem's cacheDirectory in Node against a real server: a second client on the same folder
// (a restarted process) runs the model locally without requesting its file, with the same
// outputs; the cache API sees the folder; a delete empties it.

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TensorMap } from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { createTandem } from '@tandem/client';
import { createPrng, fillUniform } from '@tandem/test-support';

function clsInput(seed: number): TensorMap {
  const data = fillUniform(new Float32Array(3 * 48 * 192), createPrng(seed), 0, 1);
  return { x: { dtype: 'float32', dims: [1, 3, 48, 192], data } };
}

describe('createTandem with a cacheDirectory (Node)', () => {
  let server: TandemServer;
  let url: string;
  let directory: string;
  let fileRequests = 0;

  beforeAll(async () => {
    server = await createServer({ port: 0 });
    server.fastify.addHook('onRequest', async (request) => {
      if (request.url.endsWith('/model.onnx')) fileRequests++;
    });
    url = await server.listen();
    directory = await mkdtemp(join(tmpdir(), 'tandem-cache-dir-'));
  });

  afterAll(async () => {
    await server.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('a restarted client runs from the folder with no file request; delete empties it', async () => {
    const first = createTandem({ server: url, placement: 'local-only', cacheDirectory: directory });
    const downloaded = await first.run('paddleocr-cls', clsInput(1));
    await first.close();
    expect(downloaded.placement).toBe('local');
    expect(downloaded.timings.downloadMs).toBeGreaterThan(0);
    expect(fileRequests).toBe(1);

    const second = createTandem({
      server: url,
      placement: 'local-only',
      cacheDirectory: directory,
    });
    try {
      const fromDisk = await second.run('paddleocr-cls', clsInput(1));
      expect(fileRequests).toBe(1);
      expect(fromDisk.timings.downloadMs).toBe(0);
      expect(fromDisk.outputs).toEqual(downloaded.outputs);

      const listed = await second.cache.list();
      expect(listed.map((model) => [model.name, model.storage])).toEqual([
        ['paddleocr-cls', 'cache'],
      ]);
      expect((await second.cache.estimate()).modelBytes).toBe(listed[0]!.bytes);

      expect(await second.cache.delete('paddleocr-cls')).toBe(1);
      expect(await second.cache.list()).toEqual([]);
      const [bucket] = await readdir(directory);
      expect(await readdir(join(directory, bucket!))).toEqual([]);
    } finally {
      await second.close();
    }
  });
});
