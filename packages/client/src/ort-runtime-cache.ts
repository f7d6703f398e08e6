// onnxruntime-web's runtime binary (ort-wasm-simd-threaded*.wasm, 14–28 MB) kept in Cache Storage,
// so a second visit compiles it from disk rather than downloading it again: browsers' HTTP caches
// do not reliably keep a file this size (an off-the-record profile never does).
//
// Why a fetch wrapper rather than `env.wasm.wasmBinary`: bundlers rename the file (Vite emits
// assets/ort-wasm-simd-threaded.jsep-<hash>.wasm, webpack <hash>.wasm), so the worker cannot know
// its URL before onnxruntime-web asks for it, and only onnxruntime-web's own request lets a first
// visit store the bytes without downloading them twice. Answering that request from the cache also
// keeps streaming compilation, which `wasmBinary` turns off.
//
// Only a binary whose sha256 is one that the onnxruntime-web version in use ships is kept, keyed
// by its URL and that version; anything unexpected leaves onnxruntime-web loading as it would.

import { sha256Hex } from './model-files.js';

/** The onnxruntime-web version whose runtime binaries {@link ORT_RUNTIME_SHA256} lists. */
export const ORT_RUNTIME_VERSION = '1.30.0';

/**
 * sha256 of each runtime binary in onnxruntime-web's dist/ for {@link ORT_RUNTIME_VERSION}
 * (test/ort-runtime-cache.test.ts checks them against node_modules, so an upgrade that forgets
 * them fails a test rather than silently losing the cache).
 */
export const ORT_RUNTIME_SHA256: Readonly<Record<string, string>> = {
  'ort-wasm-simd-threaded.wasm': '3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2',
  'ort-wasm-simd-threaded.jsep.wasm':
    '3ad23231b5bd6d9dda55a7f84606315e0bf35b6750c28ee993c987c54cacab0f',
  'ort-wasm-simd-threaded.jspi.wasm':
    'a54c76f86b0f0d9572380cf1c6292a7b3903716ffcbcd6b0e5c7050bf430eb93',
  'ort-wasm-simd-threaded.asyncify.wasm':
    '39f9f0894d478800487ed9f7dbe92618498db320cf55c8e3d89adff8dce658da',
};

/**
 * Size in bytes of each runtime binary in {@link ORT_RUNTIME_SHA256}: a download's total when the
 * response gives none (a compressed or chunked body), as most hosts and CDNs serve a .wasm.
 * Checked against node_modules by the same test.
 */
export const ORT_RUNTIME_BYTES: Readonly<Record<string, number>> = {
  'ort-wasm-simd-threaded.wasm': 14_239_897,
  'ort-wasm-simd-threaded.jsep.wasm': 28_312_028,
  'ort-wasm-simd-threaded.jspi.wasm': 16_758_545,
  'ort-wasm-simd-threaded.asyncify.wasm': 26_781_914,
};

/** The query parameter that marks a stored runtime and names its onnxruntime-web version. */
const VERSION_PARAM = 'tandem-ort';
const RUNTIME_HEADER = 'x-tandem-ort-runtime';

/** Options of {@link createRuntimeFetch}. */
export interface RuntimeFetchOptions {
  /** The fetch that reaches the network. */
  readonly fetch: typeof fetch;
  readonly caches: CacheStorage;
  /** Cache Storage bucket (the model files' one). */
  readonly cacheName: string;
  /** onnxruntime-web's version (`ort.env.versions.web`); part of the storage key. */
  readonly ortVersion: string;
  /** sha256 of the binaries worth storing. @default the values of {@link ORT_RUNTIME_SHA256} */
  readonly sha256?: Iterable<string>;
  /**
   * The size of the binary onnxruntime-web will ask for (one of {@link ORT_RUNTIME_BYTES}): the
   * download's total when the response has no usable Content-Length. @default none (no total then)
   */
  readonly expectedBytes?: number;
}

/**
 * Bytes of a runtime download so far, and its size when known: the response's Content-Length, else
 * the expected size of the binary (until more bytes than that arrive).
 */
export type RuntimeDownloadListener = (loaded: number, total: number | undefined) => void;

/** A fetch that answers .wasm requests from Cache Storage, and what it is still writing. */
export interface RuntimeFetch {
  readonly fetch: typeof fetch;
  /** Resolves once every store started so far has finished (or failed) and been verified. */
  settled(): Promise<void>;
  /** Whether a runtime of this onnxruntime-web version is stored (a visit would not download). */
  stored(): Promise<boolean>;
  /**
   * Adds a listener for the bytes of a runtime that comes from the network (not from the cache)
   * as onnxruntime-web reads them: on a first visit that download is most of the wait. Every
   * listener hears every download: several first loads can be waiting on the one runtime.
   * Returns the function that removes this listener (and only this one).
   */
  addDownloadListener(listener: RuntimeDownloadListener): () => void;
}

/**
 * Wraps `options.fetch`: a GET of an http(s) URL ending in .wasm is answered from Cache Storage
 * when stored; otherwise the network answers and a copy is stored in the background, kept only
 * when the body's sha256 is a known runtime. A second request for the same URL means the stored copy did
 * not compile (onnxruntime-web asks again only then): it goes to the network and the entry goes.
 * Every other request passes through untouched, and storage failures (quota) only cost the cache.
 */
export function createRuntimeFetch(options: RuntimeFetchOptions): RuntimeFetch {
  const known = new Set(options.sha256 ?? Object.values(ORT_RUNTIME_SHA256));
  const served = new Set<string>();
  const pending = new Set<Promise<void>>();
  const listeners = new Set<RuntimeDownloadListener>();
  const open = (): Promise<Cache> => options.caches.open(options.cacheName);

  /**
   * Streams a copy into the cache while the download runs and hashes another, then takes the entry
   * out again unless the hash is a known runtime. Writing only after the last byte would make a
   * first load wait: by then the worker is busy compiling and creating the session, so the write
   * could not even start until that is over.
   */
  const store = async (key: string, response: Response): Promise<void> => {
    const hashing = response
      .clone()
      .arrayBuffer()
      .then((buffer) => sha256Hex(new Uint8Array(buffer)));
    const cache = await open();
    // One runtime is enough: an older version's (or another URL's) megabytes go.
    for (const request of await cache.keys()) {
      if (request.url !== key && new URL(request.url).searchParams.has(VERSION_PARAM))
        await cache.delete(request);
    }
    const headers = {
      // instantiateStreaming insists on this type.
      'content-type': 'application/wasm',
      [RUNTIME_HEADER]: options.ortVersion,
    };
    const [digest] = await Promise.all([
      hashing,
      cache.put(key, new Response(response.body, { headers })),
    ]);
    if (!known.has(digest)) await cache.delete(key);
  };

  const wrapped = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const key = runtimeKey(input, init, options.ortVersion);
    if (key === undefined) return options.fetch(input, init);
    if (served.has(key)) {
      await open()
        .then((cache) => cache.delete(key))
        .catch(() => undefined);
    } else {
      served.add(key);
      const stored = await open()
        .then((cache) => cache.match(key))
        .catch(() => undefined);
      if (stored !== undefined) return stored;
    }
    const response = await options.fetch(input, init);
    if (!response.ok || response.body === null) return response;
    const writing = store(key, response.clone()).catch(() => undefined);
    pending.add(writing);
    void writing.then(() => pending.delete(writing));
    return counted(response, options.expectedBytes, (loaded, total) => {
      for (const listener of listeners) listener(loaded, total);
    });
  };

  const runtime: RuntimeFetch = {
    fetch: wrapped,
    async settled() {
      while (pending.size > 0) await Promise.all(pending);
    },
    async stored() {
      try {
        const keys = await (await open()).keys();
        return keys.some(
          (request) => new URL(request.url).searchParams.get(VERSION_PARAM) === options.ortVersion,
        );
      } catch {
        return false;
      }
    },
    addDownloadListener(listener) {
      // Wrapped, so the same function added twice is two listeners that each removal counts.
      const entry: RuntimeDownloadListener = (loaded, total) => listener(loaded, total);
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
      };
    },
  };
  return runtime;
}

/**
 * The same response, its body counted as it is read. The total is the Content-Length, unless the
 * body is content-encoded (the length then counts compressed bytes, the reader sees more) or has
 * none: then `expectedBytes`, dropped if the body turns out longer (not the binary expected).
 */
function counted(
  response: Response,
  expectedBytes: number | undefined,
  listener: RuntimeDownloadListener,
): Response {
  const length = Number(response.headers.get('content-length'));
  let total =
    response.headers.get('content-encoding') === null && Number.isFinite(length) && length > 0
      ? length
      : expectedBytes;
  let loaded = 0;
  const body = (response.body as ReadableStream<Uint8Array>).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        if (total !== undefined && loaded > total) total = undefined;
        listener(loaded, total);
        controller.enqueue(chunk);
      },
    }),
  );
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** The storage key of a runtime request (its URL plus the version), or undefined for others. */
function runtimeKey(
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  ortVersion: string,
): string | undefined {
  const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
  if (method.toUpperCase() !== 'GET') return undefined;
  let url: URL;
  try {
    url = new URL(
      input instanceof Request ? input.url : input instanceof URL ? input.href : input,
      (globalThis as { location?: { href: string } }).location?.href,
    );
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.pathname.endsWith('.wasm'))
    return undefined;
  url.searchParams.set(VERSION_PARAM, ortVersion);
  return url.toString();
}
