// The client's model files against a real server: the manifest and file routes, byte progress,
// integrity, cancellation, a second get without network, and gets at once sharing one download.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseModelManifest, type ModelManifest } from '@tandem/shared';
import { createServer, type TandemServer } from '@tandem/server';
import { ModelFileStore, type FileProgress } from '@tandem/client';
import { realModelPath, rejectionCode } from '@tandem/test-support';

describe('ModelFileStore against a real server', () => {
  let server: TandemServer;
  let url: string;
  let manifest: ModelManifest;
  let requests = 0;

  beforeAll(async () => {
    server = await createServer({ port: 0 });
    server.fastify.addHook('onRequest', async (request) => {
      if (request.url.endsWith('model.onnx')) requests++;
    });
    url = await server.listen();
    manifest = parseModelManifest(
      await (await fetch(`${url}/v1/models/paddleocr-cls/manifest`)).json(),
    );
  });

  afterAll(async () => {
    await server.close();
  });

  it('downloads the file the manifest describes, with byte progress known up front', async () => {
    const store = new ModelFileStore({ baseUrl: url });
    const events: FileProgress[] = [];
    const file = await store.get(manifest, { onProgress: (e) => events.push(e) });
    expect(Buffer.from(file.bytes).equals(readFileSync(realModelPath('paddleocr-cls')))).toBe(true);
    expect(file.cached).toBe(false);
    const downloads = events.filter((e) => e.stage === 'download');
    expect(downloads[0]).toEqual({ stage: 'download', loaded: 0, total: manifest.bytes });
    expect(downloads.at(-1)?.loaded).toBe(manifest.bytes);
    const before = requests;
    const again = await store.get(manifest);
    expect(again.cached).toBe(true);
    expect(requests).toBe(before);
  });

  it('fails a wrong hash with E_INTEGRITY', async () => {
    const store = new ModelFileStore({ baseUrl: url });
    expect(await rejectionCode(store.get({ ...manifest, sha256: 'f'.repeat(64) }))).toBe(
      'E_INTEGRITY',
    );
    expect(await store.list()).toEqual([]);
  });

  it('cancels a download with E_CANCELLED and can download again after', async () => {
    const store = new ModelFileStore({ baseUrl: url });
    const abort = new AbortController();
    const code = await rejectionCode(
      store.get(manifest, { signal: abort.signal, onProgress: () => abort.abort() }),
    );
    expect(code).toBe('E_CANCELLED');
    expect((await store.get(manifest)).bytes.byteLength).toBe(manifest.bytes);
  });

  it('two gets at once download the file once, each with its own progress to the end', async () => {
    const store = new ModelFileStore({ baseUrl: url });
    const before = requests;
    const logs: FileProgress[][] = [[], []];
    const onProgress = (events: FileProgress[]) => (e: FileProgress) => void events.push(e);
    const [a, b] = await Promise.all([
      store.get(manifest, { onProgress: onProgress(logs[0]!) }),
      store.get(manifest, { onProgress: onProgress(logs[1]!) }),
    ]);
    expect(requests).toBe(before + 1);
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    expect(a.bytes.byteLength).toBe(manifest.bytes);
    for (const events of logs) {
      const downloads = events.filter((e) => e.stage === 'download');
      expect(downloads.every((e) => e.total === manifest.bytes)).toBe(true);
      expect(downloads.at(-1)?.loaded).toBe(manifest.bytes);
      expect(events.at(-1)).toEqual({
        stage: 'cache',
        loaded: manifest.bytes,
        total: manifest.bytes,
      });
    }
  });
});
