// ModelFileStore with a fake fetch and a fake Cache Storage (pure logic: where bytes come from and
// go, and calls for one file at once sharing one download, each timed by its own wait). The real network path is tested
// against a real server in test/client-model-files.test.ts.

import { describe, expect, it, vi } from 'vitest';
import { rejectionCode } from '@tandem/test-support';
import { ModelFileStore, sha256Hex, type FileProgress } from '../src/model-files.js';
import { gatedFetch } from './fake-fetch.js';

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

/** Records a caller's progress; `until` resolves once an event matching `test` has come. */
function progressLog(): {
  events: FileProgress[];
  onProgress: (progress: FileProgress) => void;
  until(test: (progress: FileProgress) => boolean): Promise<void>;
} {
  const events: FileProgress[] = [];
  const waiting: { test: (progress: FileProgress) => boolean; resolve: () => void }[] = [];
  return {
    events,
    onProgress(progress) {
      events.push(progress);
      for (const waiter of waiting.filter((w) => w.test(progress))) waiter.resolve();
    },
    until: (test) =>
      events.some(test)
        ? Promise.resolve()
        : new Promise((resolve) => waiting.push({ test, resolve })),
  };
}

const downloaded = (loaded: number) => (p: FileProgress) =>
  p.stage === 'download' && p.loaded === loaded;

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

describe('ModelFileStore calls for one file at once', () => {
  it('share one download; each hears its own progress, a late one from the bytes so far', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch });
    const first = progressLog();
    const second = progressLog();
    const a = store.get(await manifest(), { onProgress: first.onProgress });
    const body = await gate.requested(1);
    body.push(bytes.slice(0, 30_000));
    await first.until(downloaded(30_000));
    const b = store.get(await manifest(), { onProgress: second.onProgress });
    // The late caller starts where the download stands, with the total from the manifest.
    expect(second.events).toEqual([{ stage: 'download', loaded: 30_000, total: bytes.byteLength }]);
    body.push(bytes.slice(30_000));
    body.end();
    const [fileA, fileB] = await Promise.all([a, b]);
    expect(gate.bodies).toHaveLength(1);
    expect(fileA.bytes).toEqual(bytes);
    expect(fileB.bytes).toEqual(bytes);
    expect(fileB.cached).toBe(false);
    for (const log of [first, second]) {
      const loaded = log.events.filter((e) => e.stage === 'download').map((e) => e.loaded);
      expect(loaded.at(-1)).toBe(bytes.byteLength);
      for (let i = 1; i < loaded.length; i++)
        expect(loaded[i]).toBeGreaterThanOrEqual(loaded[i - 1]!);
      expect(log.events.at(-1)).toEqual({
        stage: 'cache',
        loaded: bytes.byteLength,
        total: bytes.byteLength,
      });
    }
    expect(first.events[0]).toEqual({ stage: 'download', loaded: 0, total: bytes.byteLength });
    // Stored once: the next call reads it with no network.
    expect((await store.get(await manifest())).cached).toBe(true);
    expect(gate.bodies).toHaveLength(1);
  });

  it('a call that joins a download under way reports as its wait only the rest of it; downloadMs is the whole download', async () => {
    // A clock that moves only when told: the download takes 1,000 ms, the late call joins at 600.
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const gate = gatedFetch();
      const store = new ModelFileStore({ fetch: gate.fetch });
      const model = await manifest();
      const first = progressLog();
      const a = store.get(model, { onProgress: first.onProgress });
      const body = await gate.requested(1);
      body.push(bytes.slice(0, 30_000));
      await first.until(downloaded(30_000));
      vi.advanceTimersByTime(600);
      const b = store.get(model);
      vi.advanceTimersByTime(400);
      body.push(bytes.slice(30_000));
      body.end();
      const [fileA, fileB] = await Promise.all([a, b]);
      expect(fileA).toMatchObject({ cached: false, downloadMs: 1000, downloadWaitMs: 1000 });
      expect(fileB).toMatchObject({ cached: false, downloadMs: 1000, downloadWaitMs: 400 });
      // Read from storage: no download, and no wait for one.
      expect(await store.get(model)).toMatchObject({
        cached: true,
        downloadMs: 0,
        downloadWaitMs: 0,
      });
    } finally {
      vi.useRealTimers();
    }
  });

  it('one caller cancelling ends its call alone; the download goes on for the others', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch });
    const cancelling = new AbortController();
    const a = store.get(await manifest(), { signal: cancelling.signal });
    const b = store.get(await manifest(), { signal: new AbortController().signal });
    const body = await gate.requested(1);
    body.push(bytes.slice(0, 50_000));
    cancelling.abort();
    expect(await rejectionCode(a)).toBe('E_CANCELLED');
    expect(body.signal?.aborted).toBe(false);
    body.push(bytes.slice(50_000));
    body.end();
    expect((await b).bytes).toEqual(bytes);
    expect(gate.bodies).toHaveLength(1);
  });

  it('stops the download once every caller cancelled; the next call downloads afresh', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch });
    const first = new AbortController();
    const second = new AbortController();
    const a = store.get(await manifest(), { signal: first.signal });
    const b = store.get(await manifest(), { signal: second.signal });
    const body = await gate.requested(1);
    body.push(bytes.slice(0, 50_000));
    first.abort();
    expect(body.signal?.aborted).toBe(false);
    second.abort();
    expect(body.signal?.aborted).toBe(true);
    expect(await rejectionCode(a)).toBe('E_CANCELLED');
    expect(await rejectionCode(b)).toBe('E_CANCELLED');
    const c = store.get(await manifest());
    const again = await gate.requested(2);
    again.push(bytes);
    again.end();
    expect((await c).bytes).toEqual(bytes);
    expect(await store.list()).toHaveLength(1);
  });

  it('a delete during a download: the waiting call gets the file, nothing is stored, the next call downloads afresh', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch });
    const model = await manifest();
    const a = store.get(model);
    const body = await gate.requested(1);
    body.push(bytes.slice(0, 50_000));
    expect(await store.delete(model.name)).toBe(0);
    // A call after the delete does not join the download the user asked to forget.
    const b = store.get(model);
    const fresh = await gate.requested(2);
    body.push(bytes.slice(50_000));
    body.end();
    expect((await a).bytes).toEqual(bytes);
    expect(await store.list()).toEqual([]);
    fresh.push(bytes);
    fresh.end();
    expect((await b).cached).toBe(false);
    expect(await store.list()).toHaveLength(1);
  });

  it('a failed download fails every caller waiting for it; the next call downloads afresh', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch });
    const a = store.get(await manifest());
    const b = store.get(await manifest());
    const broken = await gate.requested(1);
    broken.push(bytes.slice(0, 10_000));
    broken.fail(new TypeError('network error'));
    expect(await rejectionCode(a)).toBe('E_DOWNLOAD');
    expect(await rejectionCode(b)).toBe('E_DOWNLOAD');
    // The wrong bytes in full: both callers hear E_INTEGRITY, and nothing is stored.
    const c = store.get(await manifest());
    const d = store.get(await manifest());
    const wrong = await gate.requested(2);
    wrong.push(bytes.map((byte) => byte ^ 1));
    wrong.end();
    expect(await rejectionCode(c)).toBe('E_INTEGRITY');
    expect(await rejectionCode(d)).toBe('E_INTEGRITY');
    expect(await store.list()).toEqual([]);
    const e = store.get(await manifest());
    const good = await gate.requested(3);
    good.push(bytes);
    good.end();
    expect((await e).bytes).toEqual(bytes);
    expect(gate.bodies).toHaveLength(3);
  });
});
