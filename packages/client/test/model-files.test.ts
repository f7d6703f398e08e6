// ModelFileStore with a fake fetch and a fake Cache Storage (pure logic: where bytes come from and
// go). The real network path is tested against a real server in test/client-model-files.test.ts.

import { describe, expect, it } from 'vitest';
import { rejectionCode } from '@tandem/test-support';
import { ModelFileStore, sha256Hex, type FileProgress } from '../src/model-files.js';

const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31) % 251);

function fakeFetch(body: Uint8Array, counter: { calls: number }, chunk = 8192): typeof fetch {
  return async () => {
    counter.calls++;
    let offset = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= body.byteLength) {
          controller.close();
          return;
        }
        controller.enqueue(body.slice(offset, offset + chunk));
        offset += chunk;
      },
    });
    return new Response(stream, { status: 200 });
  };
}

/** A Cache Storage stand-in: a Map per bucket; `full` makes put() fail as a quota error does. */
function fakeCaches(full = false): CacheStorage {
  const buckets = new Map<string, Map<string, Response>>();
  const open = async (name: string): Promise<Cache> => {
    const bucket = buckets.get(name) ?? new Map<string, Response>();
    buckets.set(name, bucket);
    return {
      async match(key: Request | string) {
        return bucket.get(key instanceof Request ? key.url : key)?.clone();
      },
      async put(key: string, response: Response) {
        if (full) throw new DOMException('quota', 'QuotaExceededError');
        bucket.set(key, response);
      },
      async keys() {
        return [...bucket.keys()].map((key) => new Request(key));
      },
      async delete(key: Request | string) {
        return bucket.delete(key instanceof Request ? key.url : key);
      },
    } as unknown as Cache;
  };
  return { open } as unknown as CacheStorage;
}

async function manifest() {
  return {
    name: 'm',
    url: 'https://models.example/m.onnx',
    bytes: bytes.byteLength,
    sha256: await sha256Hex(bytes),
  };
}

describe('ModelFileStore', () => {
  it('downloads with byte progress known up front, then serves the second get from Cache Storage', async () => {
    const counter = { calls: 0 };
    const store = new ModelFileStore({ fetch: fakeFetch(bytes, counter), caches: fakeCaches() });
    const events: FileProgress[] = [];
    const first = await store.get(await manifest(), { onProgress: (p) => events.push(p) });
    expect(first.cached).toBe(false);
    expect(first.bytes).toEqual(bytes);
    const downloads = events.filter((e) => e.stage === 'download');
    expect(downloads.every((e) => e.total === bytes.byteLength)).toBe(true);
    expect(downloads.at(-1)?.loaded).toBe(bytes.byteLength);
    for (let i = 1; i < downloads.length; i++)
      expect(downloads[i]!.loaded).toBeGreaterThanOrEqual(downloads[i - 1]!.loaded);
    const second = await store.get(await manifest());
    expect(second.cached).toBe(true);
    expect(counter.calls).toBe(1);
    expect((await store.list()).map((m) => m.storage)).toEqual(['cache']);
    expect(await store.delete('m')).toBe(1);
    expect(await store.list()).toEqual([]);
  });

  it('lists a relative manifest URL resolved, and passes over entries it did not write', async () => {
    const caches = fakeCaches();
    const store = new ModelFileStore({
      fetch: fakeFetch(bytes, { calls: 0 }),
      caches,
      baseUrl: 'https://app.example/page/',
    });
    await store.get({ ...(await manifest()), url: '../models/m.onnx' });
    // Entries of the same bucket written by someone else: no index header, or one not ours.
    const bucket = await caches.open(store.cacheName);
    await bucket.put('https://app.example/other', new Response('x'));
    await bucket.put(
      'https://app.example/broken',
      new Response('x', { headers: { 'x-tandem-model': '{ not json' } }),
    );
    await bucket.put(
      'https://app.example/shapeless',
      new Response('x', { headers: { 'x-tandem-model': '{"name":"m"}' } }),
    );
    const listed = await store.list();
    expect(listed.map((m) => m.url)).toEqual(['https://app.example/models/m.onnx']);
    expect(await store.delete('m')).toBe(1);
    expect(await store.list()).toEqual([]);
  });

  it('falls back to memory when Cache Storage is full', async () => {
    const counter = { calls: 0 };
    const store = new ModelFileStore({
      fetch: fakeFetch(bytes, counter),
      caches: fakeCaches(true),
    });
    await store.get(await manifest());
    expect((await store.get(await manifest())).cached).toBe(true);
    expect(counter.calls).toBe(1);
    expect((await store.list())[0]?.storage).toBe('memory');
  });

  it('rejects a file whose hash or size does not match with E_INTEGRITY, and stores nothing', async () => {
    const store = new ModelFileStore({
      fetch: fakeFetch(bytes, { calls: 0 }),
      caches: fakeCaches(),
    });
    const wrongHash = { ...(await manifest()), sha256: '0'.repeat(64) };
    expect(await rejectionCode(store.get(wrongHash))).toBe('E_INTEGRITY');
    expect(await rejectionCode(store.get({ ...(await manifest()), bytes: 10 }))).toBe(
      'E_INTEGRITY',
    );
    expect(
      await rejectionCode(store.get({ ...(await manifest()), bytes: bytes.byteLength + 1 })),
    ).toBe('E_INTEGRITY');
    expect(await store.list()).toEqual([]);
  });

  it('reports a failed fetch as E_DOWNLOAD and an abort as E_CANCELLED', async () => {
    const failing = new ModelFileStore({
      fetch: async () => new Response('no', { status: 503 }),
    });
    expect(await rejectionCode(failing.get(await manifest()))).toBe('E_DOWNLOAD');
    const abort = new AbortController();
    abort.abort();
    const store = new ModelFileStore({
      fetch: ((_url: string, init?: RequestInit) =>
        Promise.reject(
          new DOMException(String(init?.signal?.reason), 'AbortError'),
        )) as typeof fetch,
    });
    expect(await rejectionCode(store.get(await manifest(), { signal: abort.signal }))).toBe(
      'E_CANCELLED',
    );
  });

  it('refuses a manifest without a file with E_NO_BACKEND', async () => {
    expect(await rejectionCode(new ModelFileStore().get({ name: 'remote-only' }))).toBe(
      'E_NO_BACKEND',
    );
  });
});
