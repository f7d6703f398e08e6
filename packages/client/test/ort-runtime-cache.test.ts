// The runtime cache with a fake fetch and a fake Cache Storage (which requests reach the network,
// what is stored and served), and its digest table against the onnxruntime-web installed here.
// Real Chromium serving the runtime from Cache Storage is tested in test/client-browser.test.ts.

import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/model-files.js';
import {
  ORT_RUNTIME_BYTES,
  ORT_RUNTIME_SHA256,
  ORT_RUNTIME_VERSION,
  createRuntimeFetch,
} from '../src/ort-runtime-cache.js';

const RUNTIME_URL = 'https://app.example/assets/ort-wasm-simd-threaded.jsep-abc123.wasm';
const runtime = Uint8Array.from({ length: 50_000 }, (_, i) => (i * 7) % 256);

/** A fetch that answers every URL with `body` and records what it was asked. */
function fakeFetch(body: Uint8Array<ArrayBuffer>, calls: string[]): typeof fetch {
  return async (input) => {
    calls.push(input instanceof Request ? input.url : String(input));
    return new Response(body.slice(), {
      status: 200,
      headers: { 'content-type': 'application/wasm' },
    });
  };
}

/** A Cache Storage stand-in: a Map per bucket; `full` makes put() fail as a quota error does. */
function fakeCaches(options: { full?: boolean } = {}): {
  caches: CacheStorage;
  bucket: (name: string) => Map<string, Response>;
} {
  const buckets = new Map<string, Map<string, Response>>();
  const bucket = (name: string): Map<string, Response> => {
    const found = buckets.get(name) ?? new Map<string, Response>();
    buckets.set(name, found);
    return found;
  };
  const urlOf = (key: Request | string): string => (key instanceof Request ? key.url : key);
  const caches = {
    async open(name: string) {
      const entries = bucket(name);
      return {
        async match(key: Request | string) {
          return entries.get(urlOf(key))?.clone();
        },
        async put(key: Request | string, response: Response) {
          if (options.full === true) throw new DOMException('quota', 'QuotaExceededError');
          entries.set(urlOf(key), response);
        },
        async keys() {
          return [...entries.keys()].map((key) => new Request(key));
        },
        async delete(key: Request | string) {
          return entries.delete(urlOf(key));
        },
      } as unknown as Cache;
    },
  } as unknown as CacheStorage;
  return { caches, bucket };
}

async function setup(options: { full?: boolean; known?: boolean } = {}) {
  const storage = fakeCaches(options);
  const calls: string[] = [];
  const digest = await sha256Hex(runtime);
  /** A fresh worker's fetch over the same storage and network. */
  const worker = () =>
    createRuntimeFetch({
      fetch: fakeFetch(runtime, calls),
      caches: storage.caches,
      cacheName: 'bucket',
      ortVersion: '9.9.9',
      sha256: options.known === false ? [] : [digest],
    });
  return { ...storage, calls, worker };
}

describe('createRuntimeFetch', () => {
  it('stores the runtime on a first visit and serves it with no request on the next (stored() says which)', async () => {
    const { calls, worker, bucket } = await setup();
    const first = worker();
    expect(await first.stored()).toBe(false);
    const fetched = await first.fetch(RUNTIME_URL, { credentials: 'same-origin' });
    expect(new Uint8Array(await fetched.arrayBuffer())).toEqual(runtime);
    await first.settled();
    expect(calls).toEqual([RUNTIME_URL]);
    expect([...bucket('bucket').keys()]).toEqual([`${RUNTIME_URL}?tandem-ort=9.9.9`]);

    const second = worker();
    expect(await second.stored()).toBe(true);
    const served = await second.fetch(RUNTIME_URL, { credentials: 'same-origin' });
    expect(calls).toHaveLength(1);
    expect(served.headers.get('content-type')).toBe('application/wasm');
    expect(new Uint8Array(await served.arrayBuffer())).toEqual(runtime);
  });

  it('reports the bytes of a runtime coming from the network, up to its Content-Length', async () => {
    const storage = fakeCaches();
    const wrapped = createRuntimeFetch({
      fetch: async () =>
        new Response(runtime.slice(), {
          headers: { 'content-type': 'application/wasm', 'content-length': String(runtime.length) },
        }),
      caches: storage.caches,
      cacheName: 'bucket',
      ortVersion: '9.9.9',
      sha256: [await sha256Hex(runtime)],
    });
    const reports: [number, number | undefined][] = [];
    wrapped.addDownloadListener((loaded, total) => reports.push([loaded, total]));
    const response = await wrapped.fetch(RUNTIME_URL);
    expect(response.headers.get('content-type')).toBe('application/wasm');
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(runtime);
    await wrapped.settled();
    expect(reports.length).toBeGreaterThan(0);
    expect(reports.at(-1)).toEqual([runtime.length, runtime.length]);
    const loaded = reports.map(([bytes]) => bytes);
    expect(loaded).toEqual([...loaded].sort((x, y) => x - y));

    // From the cache next time: nothing downloads, nothing is reported.
    reports.length = 0;
    const again = createRuntimeFetch({
      fetch: fakeFetch(runtime, []),
      caches: storage.caches,
      cacheName: 'bucket',
      ortVersion: '9.9.9',
    });
    again.addDownloadListener((bytes, total) => reports.push([bytes, total]));
    await (await again.fetch(RUNTIME_URL)).arrayBuffer();
    expect(reports).toEqual([]);
  });

  it('reports a download to every listener, each until its own removal', async () => {
    const wrapped = createRuntimeFetch({
      fetch: async () =>
        new Response(runtime.slice(), { headers: { 'content-length': String(runtime.length) } }),
      caches: fakeCaches().caches,
      cacheName: 'bucket',
      ortVersion: '9.9.9',
    });
    const first: number[] = [];
    const second: number[] = [];
    const removeFirst = wrapped.addDownloadListener((loaded) => first.push(loaded));
    const removeSecond = wrapped.addDownloadListener((loaded) => second.push(loaded));
    await (await wrapped.fetch(RUNTIME_URL)).arrayBuffer();
    expect(first.at(-1)).toBe(runtime.length);
    expect(second).toEqual(first);

    // A second request for the URL goes to the network again (see createRuntimeFetch).
    removeFirst();
    const heardByFirst = first.length;
    await (await wrapped.fetch(RUNTIME_URL)).arrayBuffer();
    expect(first).toHaveLength(heardByFirst);
    expect(second.length).toBeGreaterThan(heardByFirst);
    expect(second.at(-1)).toBe(runtime.length);
    removeSecond();
  });

  it('reports no total for a compressed body (its Content-Length counts compressed bytes)', async () => {
    const wrapped = createRuntimeFetch({
      fetch: async () =>
        new Response(runtime.slice(), {
          headers: { 'content-encoding': 'gzip', 'content-length': '100' },
        }),
      caches: fakeCaches().caches,
      cacheName: 'bucket',
      ortVersion: '9.9.9',
    });
    const totals: (number | undefined)[] = [];
    wrapped.addDownloadListener((_loaded, total) => totals.push(total));
    await (await wrapped.fetch(RUNTIME_URL)).arrayBuffer();
    expect(totals.length).toBeGreaterThan(0);
    expect(totals.every((total) => total === undefined)).toBe(true);
  });

  it('takes the expected size as the total when the body is compressed or has no length', async () => {
    /** The totals reported for one download answered with `headers`. */
    const totals = async (
      headers: Record<string, string>,
      expectedBytes: number | undefined,
    ): Promise<(number | undefined)[]> => {
      const wrapped = createRuntimeFetch({
        fetch: async () => new Response(runtime.slice(), { headers }),
        caches: fakeCaches().caches,
        cacheName: 'bucket',
        ortVersion: '9.9.9',
        ...(expectedBytes === undefined ? {} : { expectedBytes }),
      });
      const reported: (number | undefined)[] = [];
      wrapped.addDownloadListener((_loaded, total) => reported.push(total));
      await (await wrapped.fetch(RUNTIME_URL)).arrayBuffer();
      expect(reported.length).toBeGreaterThan(0);
      return [...new Set(reported)];
    };
    // As Cloudflare, Netlify or nginx with gzip serve it: compressed, its length the compressed one.
    expect(
      await totals({ 'content-encoding': 'br', 'content-length': '100' }, runtime.length),
    ).toEqual([runtime.length]);
    // Chunked: no length at all.
    expect(await totals({}, runtime.length)).toEqual([runtime.length]);
    // A usable Content-Length wins.
    expect(await totals({ 'content-length': String(runtime.length) }, 7)).toEqual([runtime.length]);
    // Longer than expected (not the binary expected): no total from then on, never a wrong one.
    expect(await totals({}, runtime.length - 1)).toEqual([undefined]);
  });

  it('stores nothing whose sha256 is not a known runtime', async () => {
    const { worker, bucket } = await setup({ known: false });
    const first = worker();
    await (await first.fetch(RUNTIME_URL)).arrayBuffer();
    await first.settled();
    expect(bucket('bucket').size).toBe(0);
    expect(await worker().stored()).toBe(false);
  });

  it('passes other requests through untouched', async () => {
    const { calls, worker, bucket } = await setup();
    const wrapped = worker();
    await wrapped.fetch('https://app.example/model.onnx');
    await wrapped.fetch(RUNTIME_URL, { method: 'POST' });
    await wrapped.fetch('data:application/wasm;base64,AGFzbQ==');
    await wrapped.settled();
    expect(calls).toHaveLength(3);
    expect(bucket('bucket').size).toBe(0);
  });

  it('goes to the network when asked again in the same worker (the stored copy failed)', async () => {
    const { calls, worker, bucket } = await setup();
    const first = worker();
    await first.fetch(RUNTIME_URL);
    await first.settled();
    const second = worker();
    await second.fetch(RUNTIME_URL);
    expect(calls).toHaveLength(1);
    await second.fetch(RUNTIME_URL);
    expect(calls).toHaveLength(2);
    await second.settled();
    expect(bucket('bucket').size).toBe(1);
  });

  it('still answers when storage is full, and stores nothing', async () => {
    const { calls, worker, bucket } = await setup({ full: true });
    const wrapped = worker();
    const response = await wrapped.fetch(RUNTIME_URL);
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(runtime);
    await wrapped.settled();
    expect(calls).toHaveLength(1);
    expect(bucket('bucket').size).toBe(0);
  });

  it('keeps one runtime: storing a new one drops older ones, and leaves model files alone', async () => {
    const { worker, bucket } = await setup();
    const old = 'https://app.example/assets/ort-wasm-simd-threaded.jsep-old.wasm?tandem-ort=9.9.8';
    const model = 'https://app.example/model.onnx?tandem-sha256=00';
    bucket('bucket').set(old, new Response('old'));
    bucket('bucket').set(model, new Response('model'));
    const wrapped = worker();
    await wrapped.fetch(RUNTIME_URL);
    await wrapped.settled();
    expect([...bucket('bucket').keys()].sort()).toEqual(
      [model, `${RUNTIME_URL}?tandem-ort=9.9.9`].sort(),
    );
  });
});

describe('ORT_RUNTIME_SHA256 and ORT_RUNTIME_BYTES', () => {
  it('list every runtime binary of the installed onnxruntime-web', async () => {
    const require = createRequire(import.meta.url);
    // The package's exports hide package.json: climb from its entry (dist/…) instead.
    const root = dirname(dirname(require.resolve('onnxruntime-web')));
    const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
      version: string;
    };
    const dist = join(root, 'dist');
    const installed: Record<string, string> = {};
    const sizes: Record<string, number> = {};
    for (const file of (await readdir(dist)).filter((name) => name.endsWith('.wasm')).sort()) {
      const bytes = new Uint8Array(await readFile(join(dist, file)));
      installed[file] = await sha256Hex(bytes);
      sizes[file] = bytes.length;
    }
    // After an onnxruntime-web upgrade: copy the version, these digests and sizes into
    // ort-runtime-cache.ts.
    expect({ version, sha256: installed, bytes: sizes }).toEqual({
      version: ORT_RUNTIME_VERSION,
      sha256: ORT_RUNTIME_SHA256,
      bytes: ORT_RUNTIME_BYTES,
    });
  });
});
