// ModelFileStore with a fake fetch and a fake Cache Storage (pure logic: where bytes come from and
// go, and calls for one file at once sharing one download, each timed by its own wait). The real network path is tested
// against a real server in test/client-model-files.test.ts.

import { describe, expect, it, vi } from 'vitest';
import type { ModelManifest } from '@tandem/shared';
import { rejectionCode } from '@tandem/test-support';
import {
  ModelFileStore,
  PARALLEL_DOWNLOADS,
  sha256Hex,
  type FileProgress,
} from '../src/model-files.js';
import { fakeCaches } from './fake-caches.js';
import { gatedFetch } from './fake-fetch.js';
import { deferred } from './fake-ort.js';

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

  it('lists and deletes files stored before names were recorded apart under the name in their entries', async () => {
    const caches = fakeCaches();
    const store = new ModelFileStore({ fetch: fakeFetch(bytes, { calls: 0 }), caches });
    await store.get(await manifest());
    // What an earlier version stored: the file's entry alone, no name entry beside it.
    const bucket = await caches.open(store.cacheName);
    for (const request of await bucket.keys()) {
      if (new URL(request.url).searchParams.has('tandem-name')) await bucket.delete(request);
    }
    expect((await bucket.keys()).length).toBe(1);
    expect((await store.list()).map((m) => m.name)).toEqual(['m']);
    expect(await store.delete('other')).toBe(0);
    expect(await store.delete('m')).toBe(1);
    expect(await store.list()).toEqual([]);
  });

  it('falls back to memory when Cache Storage is full', async () => {
    const counter = { calls: 0 };
    const store = new ModelFileStore({
      fetch: fakeFetch(bytes, counter),
      caches: fakeCaches({ full: true }),
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

// A model whose weights live in external data files beside its .onnx: two of them, one in a
// subfolder, as an exporter may split them.
const MODEL_URL = 'https://models.example/m/1/model.onnx';
const weights = Uint8Array.from({ length: 60_000 }, (_, i) => (i * 7) % 253);
const WEIGHTS_URL = 'https://models.example/m/1/files/weights.bin';
const part2 = Uint8Array.from({ length: 20_000 }, (_, i) => (i * 13) % 241);
const PART2_URL = 'https://models.example/m/1/files/data/part-2.bin';
const TOTAL = bytes.byteLength + weights.byteLength + part2.byteLength;

async function externalManifest(): Promise<ModelManifest> {
  return {
    ...(await manifest()),
    url: MODEL_URL,
    externalData: [
      {
        path: 'weights.bin',
        url: WEIGHTS_URL,
        bytes: weights.byteLength,
        sha256: await sha256Hex(weights),
      },
      {
        path: 'data/part-2.bin',
        url: PART2_URL,
        bytes: part2.byteLength,
        sha256: await sha256Hex(part2),
      },
    ],
  };
}

/** A fetch serving `files` by URL in chunks; `requests` lists the URLs asked for, in order. */
function servedFiles(files: Map<string, Uint8Array>): { fetch: typeof fetch; requests: string[] } {
  const requests: string[] = [];
  const serve = (async (url: string) => {
    requests.push(url);
    const body = files.get(url);
    if (body === undefined) return new Response('not found', { status: 404 });
    return fakeFetch(body, { calls: 0 })(url);
  }) as typeof fetch;
  return { fetch: serve, requests };
}

const modelFiles = (): Map<string, Uint8Array> =>
  new Map([
    [MODEL_URL, bytes],
    [WEIGHTS_URL, weights],
    [PART2_URL, part2],
  ]);

describe('ModelFileStore and a model with external data', () => {
  it('downloads the .onnx and every external data file with one byte progress, its total known before the first byte', async () => {
    const served = servedFiles(modelFiles());
    const store = new ModelFileStore({ fetch: served.fetch, caches: fakeCaches() });
    const events: FileProgress[] = [];
    const file = await store.get(await externalManifest(), {
      onProgress: (p) => events.push(p),
    });
    expect(served.requests).toEqual([MODEL_URL, WEIGHTS_URL, PART2_URL]);
    expect(file.bytes).toEqual(bytes);
    expect(file.externalData).toEqual([
      { path: 'weights.bin', data: weights },
      { path: 'data/part-2.bin', data: part2 },
    ]);
    expect(file).toMatchObject({ cached: false, downloadedBytes: TOTAL });
    expect(events[0]).toEqual({ stage: 'download', loaded: 0, total: TOTAL });
    expect(events.every((e) => e.total === TOTAL)).toBe(true);
    const loaded = events.filter((e) => e.stage === 'download').map((e) => e.loaded);
    for (let i = 1; i < loaded.length; i++)
      expect(loaded[i]).toBeGreaterThanOrEqual(loaded[i - 1]!);
    expect(loaded.at(-1)).toBe(TOTAL);
    expect(events.at(-1)).toEqual({ stage: 'cache', loaded: TOTAL, total: TOTAL });
  });

  it('a second get reads every file from Cache Storage, requesting none', async () => {
    const served = servedFiles(modelFiles());
    const store = new ModelFileStore({ fetch: served.fetch, caches: fakeCaches() });
    const model = await externalManifest();
    await store.get(model);
    expect(await store.bytesToDownload(model)).toBe(0);
    expect(await store.has(model)).toBe(true);
    const events: FileProgress[] = [];
    const again = await store.get(model, { onProgress: (p) => events.push(p) });
    expect(served.requests).toHaveLength(3);
    expect(again).toMatchObject({ cached: true, downloadMs: 0, downloadedBytes: 0 });
    expect(again.bytes).toEqual(bytes);
    expect(again.externalData.map((f) => f.data)).toEqual([weights, part2]);
    expect(events).toEqual([{ stage: 'cache', loaded: TOTAL, total: TOTAL }]);
  });

  it("lists and estimates the model with all its files' bytes; delete removes every file", async () => {
    const served = servedFiles(modelFiles());
    const store = new ModelFileStore({ fetch: served.fetch, caches: fakeCaches() });
    const model = await externalManifest();
    await store.get(model);
    expect(await store.list()).toEqual([
      {
        name: 'm',
        url: MODEL_URL,
        bytes: TOTAL,
        sha256: model.sha256,
        storage: 'cache',
        // By path.
        externalData: [model.externalData![1]!, model.externalData![0]!].map((file) => ({
          ...file,
          storage: 'cache',
        })),
      },
    ]);
    expect(await store.estimate()).toMatchObject({ modelBytes: TOTAL });
    expect(await store.delete('m')).toBe(3);
    expect(await store.list()).toEqual([]);
    expect(await store.estimate()).toMatchObject({ modelBytes: 0 });
    expect(await store.bytesToDownload(model)).toBe(TOTAL);
    expect((await store.get(model)).cached).toBe(false);
    expect(served.requests).toHaveLength(6);
  });

  it('fails an external data file that does not match its sha256 with E_INTEGRITY naming it; the next get downloads only what was not stored', async () => {
    const files = modelFiles();
    files.set(
      WEIGHTS_URL,
      weights.map((byte, i) => (i === 1000 ? byte ^ 1 : byte)),
    );
    const served = servedFiles(files);
    const store = new ModelFileStore({ fetch: served.fetch, caches: fakeCaches() });
    const model = await externalManifest();
    const failure = await store.get(model).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'E_INTEGRITY' });
    expect((failure as Error).message).toContain('weights.bin');
    // The bad file is not stored. The others download at the same time: each that passed its
    // check before the failure stopped it is (the .onnx, served first, always does).
    const [listed] = await store.list();
    expect(listed?.externalData?.map((f) => f.path) ?? []).not.toContain('weights.bin');
    const storedBytes = listed?.bytes ?? 0;
    expect(storedBytes).toBeGreaterThanOrEqual(bytes.byteLength);
    expect(await store.bytesToDownload(model)).toBe(TOTAL - storedBytes);
    const partStored = listed?.externalData?.some((f) => f.path === 'data/part-2.bin') === true;
    files.set(WEIGHTS_URL, weights);
    served.requests.length = 0;
    const events: FileProgress[] = [];
    const file = await store.get(model, { onProgress: (p) => events.push(p) });
    expect(served.requests).toEqual(partStored ? [WEIGHTS_URL] : [WEIGHTS_URL, PART2_URL]);
    // One progress over the whole model, starting from the bytes already stored.
    expect(events[0]).toEqual({ stage: 'download', loaded: storedBytes, total: TOTAL });
    expect(file).toMatchObject({ cached: false, downloadedBytes: TOTAL - storedBytes });
    expect(file.externalData.map((f) => f.data)).toEqual([weights, part2]);
  });

  it('falls back to memory when Cache Storage is full, keeping its own copy: bytes a caller moves to a worker leave the store whole', async () => {
    const served = servedFiles(modelFiles());
    const store = new ModelFileStore({ fetch: served.fetch, caches: fakeCaches({ full: true }) });
    const model = await externalManifest();
    const first = await store.get(model);
    const moved = [first.bytes, ...first.externalData.map((f) => f.data)];
    structuredClone(moved, { transfer: moved.map((array) => array.buffer) });
    expect(first.bytes.byteLength).toBe(0); // detached, as a transfer to a worker leaves it
    const second = await store.get(model);
    expect(second.cached).toBe(true);
    expect(second.bytes).toEqual(bytes);
    expect(second.externalData.map((f) => f.data)).toEqual([weights, part2]);
    expect(served.requests).toHaveLength(3);
    const [listed] = await store.list();
    expect(listed?.storage).toBe('memory');
    expect(listed?.externalData?.map((f) => f.storage)).toEqual(['memory', 'memory']);
  });
});

describe('ModelFileStore and a model with many external data files', () => {
  it(`downloads ${PARALLEL_DOWNLOADS} files at once, starting the next as one ends, under one byte total`, async () => {
    // A model exported with one file per weight.
    const parts = Array.from({ length: PARALLEL_DOWNLOADS + 3 }, (_, n) =>
      Uint8Array.from({ length: 1000 + n }, (_, i) => (i * (n + 3)) % 251),
    );
    const model: ModelManifest = {
      ...(await manifest()),
      url: MODEL_URL,
      externalData: await Promise.all(
        parts.map(async (part, n) => ({
          path: `w/${n}.bin`,
          url: `https://models.example/m/1/files/w/${n}.bin`,
          bytes: part.byteLength,
          sha256: await sha256Hex(part),
        })),
      ),
    };
    const total = parts.reduce((sum, part) => sum + part.byteLength, bytes.byteLength);
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch, caches: fakeCaches() });
    const log = progressLog();
    const got = store.get(model, { onProgress: log.onProgress });
    const first = await Promise.all(
      Array.from({ length: PARALLEL_DOWNLOADS }, (_, n) => gate.requested(n + 1)),
    );
    // No file has ended: no more are asked for.
    expect(gate.bodies).toHaveLength(PARALLEL_DOWNLOADS);
    const bodyOf = (url: string): Uint8Array =>
      url === MODEL_URL ? bytes : parts[Number(/w\/(\d+)\.bin$/.exec(url)?.[1])]!;
    // Ending one starts the next.
    first[1]!.push(bodyOf(first[1]!.url));
    first[1]!.end();
    const next = await gate.requested(PARALLEL_DOWNLOADS + 1);
    expect(gate.bodies).toHaveLength(PARALLEL_DOWNLOADS + 1);
    for (const body of [first[0]!, ...first.slice(2), next]) {
      body.push(bodyOf(body.url));
      body.end();
    }
    for (let n = PARALLEL_DOWNLOADS + 2; n <= parts.length + 1; n++) {
      const body = await gate.requested(n);
      body.push(bodyOf(body.url));
      body.end();
    }
    const file = await got;
    expect(file.externalData.map((f) => f.data)).toEqual(parts);
    expect(new Set(gate.bodies.map((b) => b.url)).size).toBe(parts.length + 1);
    const loaded = log.events.filter((e) => e.stage === 'download').map((e) => e.loaded);
    expect(log.events.every((e) => e.total === total)).toBe(true);
    for (let i = 1; i < loaded.length; i++)
      expect(loaded[i]).toBeGreaterThanOrEqual(loaded[i - 1]!);
    expect(loaded.at(-1)).toBe(total);
  });
});

describe('ModelFileStore calls for a model with external data at once', () => {
  it('share one download of each file; cancelling every call stops it, and the next call downloads only the files not yet stored', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch });
    const model = await externalManifest();
    const first = new AbortController();
    const second = new AbortController();
    // Read up to a byte count: the download's progress says when the store has read that far.
    const readTo = (
      loaded: number,
    ): { onProgress: (p: FileProgress) => void; reached: Promise<void> } => {
      const reached = deferred();
      return {
        onProgress: (p) => {
          if (p.stage === 'download' && p.loaded >= loaded) reached.resolve();
        },
        reached: reached.promise,
      };
    };
    const onnxRead = readTo(bytes.byteLength + 1000);
    const a = store.get(model, { signal: first.signal, onProgress: onnxRead.onProgress });
    const b = store.get(model, { signal: second.signal });
    // All three files at once.
    const [onnx, weightsBody, partBody] = await Promise.all(
      [1, 2, 3].map((n) => gate.requested(n)),
    );
    expect([onnx!.url, weightsBody!.url, partBody!.url]).toEqual([
      MODEL_URL,
      WEIGHTS_URL,
      PART2_URL,
    ]);
    onnx!.push(bytes);
    onnx!.end();
    weightsBody!.push(weights.slice(0, 1000));
    await onnxRead.reached;
    first.abort();
    expect(weightsBody!.signal?.aborted).toBe(false);
    second.abort();
    expect(weightsBody!.signal?.aborted).toBe(true);
    expect(partBody!.signal?.aborted).toBe(true);
    expect(await rejectionCode(a)).toBe('E_CANCELLED');
    expect(await rejectionCode(b)).toBe('E_CANCELLED');
    expect(gate.bodies).toHaveLength(3);
    const log = progressLog();
    const c = store.get(model, { onProgress: log.onProgress });
    const again = await gate.requested(4);
    expect(again.url).toBe(WEIGHTS_URL);
    again.push(weights);
    again.end();
    const last = await gate.requested(5);
    expect(last.url).toBe(PART2_URL);
    last.push(part2);
    last.end();
    const file = await c;
    expect(file.bytes).toEqual(bytes);
    expect(file.externalData.map((f) => f.data)).toEqual([weights, part2]);
    expect(log.events[0]).toEqual({ stage: 'download', loaded: bytes.byteLength, total: TOTAL });
  });

  it('a delete while the weights download leaves none of the model behind, though its .onnx was being stored', async () => {
    const gate = gatedFetch();
    const release = deferred();
    const putStarted = deferred();
    const store = new ModelFileStore({
      fetch: gate.fetch,
      caches: fakeCaches({ heldPuts: release.promise, onPut: () => putStarted.resolve() }),
    });
    const model = await externalManifest();
    const a = store.get(model);
    const onnx = await gate.requested(1);
    onnx.push(bytes);
    onnx.end();
    // The .onnx is verified and on its way into Cache Storage while the weights download.
    await putStarted.promise;
    const weightsBody = await gate.requested(2);
    const deleting = store.delete('m');
    // The put stays held until the weights are checked and the last file requested: a delete
    // that did not wait for it would have looked for the model's entries long before.
    weightsBody.push(weights);
    weightsBody.end();
    const last = await gate.requested(3);
    release.resolve();
    expect(await deleting).toBe(1);
    last.push(part2);
    last.end();
    expect((await a).externalData.map((f) => f.data)).toEqual([weights, part2]);
    expect(await store.list()).toEqual([]);
  });

  for (const full of [false, true]) {
    it(`two model names on the same files (${full ? 'memory' : 'Cache Storage'}): one download, both listed; deleting one keeps the files the other still lists, deleting the last removes them`, async () => {
      const served = servedFiles(modelFiles());
      const store = new ModelFileStore({ fetch: served.fetch, caches: fakeCaches({ full }) });
      const first = { ...(await externalManifest()), name: 'first' };
      const second = { ...first, name: 'second' };
      const third = { ...first, name: 'third' };
      // At once, they share one download; a third name later reads what the download stored.
      await Promise.all([store.get(first), store.get(second)]);
      expect((await store.get(third)).cached).toBe(true);
      expect(served.requests).toHaveLength(3);
      const listed = await store.list();
      expect(listed.map((model) => model.name)).toEqual(['first', 'second', 'third']);
      expect(listed.every((model) => model.bytes === TOTAL)).toBe(true);
      // Each file counted once, however many names share it.
      expect(await store.estimate()).toMatchObject({ modelBytes: TOTAL });

      // Another listed name still needs the files: none goes, and this name is no longer listed.
      expect(await store.delete('second')).toBe(0);
      expect((await store.list()).map((model) => model.name)).toEqual(['first', 'third']);
      expect(await store.bytesToDownload(first)).toBe(0);
      expect(await store.delete('first')).toBe(0);
      expect((await store.list()).map((model) => model.name)).toEqual(['third']);
      // The last name holding them: every file goes.
      expect(await store.delete('third')).toBe(3);
      expect(await store.list()).toEqual([]);
      expect(await store.estimate()).toMatchObject({ modelBytes: 0 });
      expect(await store.bytesToDownload(second)).toBe(TOTAL);
    });
  }

  it('a delete of one name while two names share a download: the download is stored for the other', async () => {
    const gate = gatedFetch();
    const store = new ModelFileStore({ fetch: gate.fetch, caches: fakeCaches() });
    const first = { ...(await externalManifest()), name: 'first' };
    const second = { ...first, name: 'second' };
    const a = store.get(first);
    const b = store.get(second);
    const onnx = await gate.requested(1);
    expect(await store.delete('second')).toBe(0);
    onnx.push(bytes);
    onnx.end();
    const weightsBody = await gate.requested(2);
    weightsBody.push(weights);
    weightsBody.end();
    const last = await gate.requested(3);
    last.push(part2);
    last.end();
    await Promise.all([a, b]);
    expect((await store.list()).map((model) => model.name)).toEqual(['first']);
    expect(await store.bytesToDownload(first)).toBe(0);
  });

  it('a name deleted while its download stores files, then asked for again, is listed again when the download ends', async () => {
    const gate = gatedFetch();
    const weightsStored = deferred();
    const store = new ModelFileStore({
      fetch: gate.fetch,
      caches: fakeCaches({
        onPut: (key) => {
          if (key.startsWith(WEIGHTS_URL)) weightsStored.resolve();
        },
      }),
    });
    const first = { ...(await externalManifest()), name: 'first' };
    const second = { ...first, name: 'second' };
    const a = store.get(first);
    const b = store.get(second);
    const [onnx, weightsBody, last] = await Promise.all([1, 2, 3].map((n) => gate.requested(n)));
    onnx!.push(bytes);
    onnx!.end();
    weightsBody!.push(weights);
    weightsBody!.end();
    await weightsStored.promise;
    // Both names were recorded with the first files stored.
    expect(await store.delete('second')).toBe(0);
    expect((await store.list()).map((model) => model.name)).toEqual(['first']);
    const c = store.get(second);
    last!.push(part2);
    last!.end();
    await Promise.all([a, b, c]);
    expect((await store.list()).map((model) => model.name)).toEqual(['first', 'second']);
  });
});
