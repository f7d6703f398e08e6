// Model files for local runs: a streamed download with byte progress (the total is the manifest's
// `bytes`, known before the first byte), a sha256 check (E_INTEGRITY), and Cache Storage so a second
// visit reads no network. Where Cache Storage is missing (Node) or full (a quota error), files are
// kept in memory for this page instead. Calls for a file already being fetched (a warm-up and a
// run, a prefetch and a local run) share that fetch: one download, each call with its own progress,
// its own cancellation, and its own wait (a late one waited only for the rest of the download).

import { TandemError, type ModelManifest } from '@tandem/shared';

/** Where a stored model file lives. */
export type ModelStorage = 'cache' | 'memory';

/** A stored model file, as `tandem.cache.list()` reports it. */
export interface CachedModel {
  /** The model's name (its manifest's). */
  readonly name: string;
  /** The file's absolute URL, as downloaded. */
  readonly url: string;
  /** The file's size in bytes. */
  readonly bytes: number;
  /** The file's sha256, hex, as checked when it was stored. */
  readonly sha256: string;
  /** Cache Storage (survives reloads), or this page's memory (quota errors, or no Cache Storage). */
  readonly storage: ModelStorage;
}

/** Progress of fetching one file. */
export interface FileProgress {
  /** 'download' while bytes arrive from the network, 'cache' while they are read from storage. */
  readonly stage: 'download' | 'cache';
  /** Bytes so far. */
  readonly loaded: number;
  /** Bytes in all, from the manifest: known before the first byte. */
  readonly total: number;
}

/** A fetched model file. */
export interface ModelFile {
  /** The file's bytes, checked against the manifest's sha256. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** True when it came from storage, with no network. */
  readonly cached: boolean;
  /**
   * How long the download took, in ms, from its first request to its bytes verified, whichever
   * call started it (what a bandwidth estimate divides by); 0 when read from storage.
   */
  readonly downloadMs: number;
  /**
   * How much of the download this call waited through, in ms: `downloadMs` for the call that
   * started it, only the rest (from joining to the end) for one that joined it under way; 0 when
   * read from storage. What a run reports as `timings.downloadMs`: the whole download's time
   * would charge a late call for time before it began waiting.
   */
  readonly downloadWaitMs: number;
}

/** What one fetch of a file yields, before each waiting call is told its own share of it. */
interface FetchedFile {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** When the download began and ended (bytes verified), by performance.now(); none if stored. */
  readonly download?: { readonly startedAt: number; readonly endedAt: number };
}

/** Options of {@link ModelFileStore}. */
export interface ModelFileStoreOptions {
  /** Cache Storage bucket name. @default 'tandem-models-v1' */
  readonly cacheName?: string;
  /** Resolves relative manifest URLs. @default location.href in a page */
  readonly baseUrl?: string;
  /** How files are fetched. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** Where files are stored. @default globalThis.caches (undefined in Node: memory only) */
  readonly caches?: CacheStorage;
}

const INDEX_HEADER = 'x-tandem-model';

/**
 * One fetch of a file (read from storage, else downloaded, checked and stored), shared by every
 * `get` of that file while it is under way.
 */
class SharedFetch {
  /** The last progress reported: a caller that joins late starts from there. */
  last: FileProgress | undefined;
  /** The callers waiting for the file, each told every progress event. */
  readonly callers = new Set<(progress: FileProgress) => void>();
  /** Aborted when no caller waits any more: the download stops. */
  readonly controller = new AbortController();
  /**
   * Set when its model is deleted while it is under way: the callers already waiting still get
   * the file, but it is not stored (the user asked for it to be gone).
   */
  discarded = false;
  readonly result: Promise<FetchedFile>;

  constructor(
    /** The model's name, as `delete` takes it. */
    readonly name: string,
    start: (
      signal: AbortSignal,
      report: (progress: FileProgress) => void,
      isDiscarded: () => boolean,
    ) => Promise<FetchedFile>,
  ) {
    this.result = start(
      this.controller.signal,
      (progress) => {
        this.last = progress;
        for (const caller of [...this.callers]) caller(progress);
      },
      () => this.discarded,
    );
  }
}

/** Downloads, verifies and stores model files. */
export class ModelFileStore {
  /** The Cache Storage bucket (onnxruntime-web's runtime binary is kept there too). */
  readonly cacheName: string;
  readonly #baseUrl: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #caches: CacheStorage | undefined;
  readonly #memory = new Map<string, { model: CachedModel; bytes: Uint8Array<ArrayBuffer> }>();
  /** Fetches under way, by storage key (URL and sha256). */
  readonly #fetching = new Map<string, SharedFetch>();

  constructor(options: ModelFileStoreOptions = {}) {
    this.cacheName = options.cacheName ?? 'tandem-models-v1';
    this.#baseUrl =
      options.baseUrl ?? (globalThis as { location?: { href: string } }).location?.href;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#caches = options.caches ?? (globalThis as { caches?: CacheStorage }).caches;
  }

  /**
   * The model's file: from storage when present (no network), else downloaded with progress,
   * verified against the manifest's sha256, and stored. A call for a file already being fetched
   * waits for that fetch instead of starting another, hears its progress from the bytes so far,
   * and reports as its `downloadWaitMs` only the part of the download it waited through. Aborting
   * the signal ends this call with `E_CANCELLED`; the download stops once every call waiting for
   * it has been cancelled. A failed fetch fails every call waiting for it; the next call starts
   * afresh.
   */
  get(
    manifest: ModelManifest,
    options: { signal?: AbortSignal; onProgress?: (progress: FileProgress) => void } = {},
  ): Promise<ModelFile> {
    let key: string;
    let shared: SharedFetch | undefined;
    try {
      const file = requireFile(manifest);
      // Listed as fetched: a manifest's relative URL means nothing outside the page that had it.
      const url = this.#resolve(file.url);
      key = this.#key(url, file.sha256);
      const cancelled = aborted(options.signal);
      if (cancelled !== undefined) throw cancelled;
      // Looked up and registered with no await in between: two calls in the same tick share.
      shared = this.#fetching.get(key);
      if (shared === undefined) {
        shared = new SharedFetch(manifest.name, (signal, report, isDiscarded) =>
          this.#fetchFile(key, manifest.name, url, file, { signal, report, isDiscarded }),
        );
        const started = shared;
        const forget = (): void => {
          if (this.#fetching.get(key) === started) this.#fetching.delete(key);
        };
        started.result.then(forget, forget);
        this.#fetching.set(key, started);
      }
    } catch (error) {
      return Promise.reject(TandemError.from(error));
    }
    return this.#wait(key, shared, options.signal, options.onProgress);
  }

  /** Waits for a shared fetch as one caller: its own progress, its own cancellation. */
  #wait(
    key: string,
    shared: SharedFetch,
    signal: AbortSignal | undefined,
    onProgress: ((progress: FileProgress) => void) | undefined,
  ): Promise<ModelFile> {
    // When this call started waiting: a call that joins a download under way waited from here.
    const joinedAt = performance.now();
    return new Promise<ModelFile>((resolve, reject) => {
      const leave = (): boolean => {
        if (!shared.callers.delete(caller)) return false;
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      /** Ends this caller's wait alone; the fetch stops if nobody else waits for it. */
      const quit = (error: TandemError): void => {
        if (!leave()) return;
        reject(error);
        if (shared.callers.size > 0) return;
        if (this.#fetching.get(key) === shared) this.#fetching.delete(key);
        shared.controller.abort(
          new TandemError('E_CANCELLED', 'every call waiting for the download was cancelled'),
        );
      };
      const caller = (progress: FileProgress): void => {
        try {
          onProgress?.(progress);
        } catch (error) {
          // One caller's progress handler failing is that caller's failure, not the others'.
          quit(TandemError.from(error));
        }
      };
      const onAbort = (): void =>
        quit(aborted(signal) ?? new TandemError('E_CANCELLED', 'the download was cancelled'));
      shared.callers.add(caller);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (shared.last !== undefined) caller(shared.last);
      shared.result.then(
        (fetched) => {
          if (leave()) resolve(fileFor(fetched, joinedAt));
        },
        (error: unknown) => {
          if (leave()) reject(TandemError.from(error));
        },
      );
    });
  }

  /** Reads the file from storage, else downloads, verifies and stores it. */
  async #fetchFile(
    key: string,
    name: string,
    url: string,
    file: { bytes: number; sha256: string },
    how: {
      signal: AbortSignal;
      report: (progress: FileProgress) => void;
      isDiscarded: () => boolean;
    },
  ): Promise<FetchedFile> {
    const { signal, report, isDiscarded } = how;
    const { bytes: total, sha256 } = file;
    const stored = await this.#read(key, total);
    if (stored !== undefined) {
      report({ stage: 'cache', loaded: total, total });
      return { bytes: stored };
    }
    const startedAt = performance.now();
    const bytes = await this.#download(url, total, signal, report);
    const digest = await sha256Hex(bytes);
    if (digest !== sha256) {
      throw new TandemError(
        'E_INTEGRITY',
        `${url}: sha256 is ${digest}, the manifest says ${sha256}`,
      );
    }
    const endedAt = performance.now();
    report({ stage: 'cache', loaded: 0, total });
    if (!isDiscarded())
      await this.#write(key, { name, url, bytes: total, sha256, storage: 'cache' }, bytes);
    report({ stage: 'cache', loaded: total, total });
    return { bytes, download: { startedAt, endedAt } };
  }

  /** Whether the file is stored (a run would need no download). */
  async has(manifest: ModelManifest): Promise<boolean> {
    if (manifest.url === undefined || manifest.sha256 === undefined) return false;
    const key = this.#key(this.#resolve(manifest.url), manifest.sha256);
    if (this.#memory.has(key)) return true;
    const cache = await this.#open();
    return (await cache?.match(key)) !== undefined;
  }

  /** Every stored file. */
  async list(): Promise<CachedModel[]> {
    const found: CachedModel[] = [...this.#memory.values()].map((entry) => entry.model);
    const cache = await this.#open();
    if (cache !== undefined) {
      for (const request of await cache.keys()) {
        const response = await cache.match(request);
        const entry = indexEntry(response?.headers.get(INDEX_HEADER));
        if (entry !== undefined) found.push({ ...entry, storage: 'cache' });
      }
    }
    return found;
  }

  /**
   * Removes every stored version of a model (by name); returns how many files went. A download of
   * it under way is not stored when it ends (its callers still get the file), and a later call
   * starts a fresh one.
   */
  async delete(name: string): Promise<number> {
    for (const [key, shared] of this.#fetching) {
      if (shared.name !== name) continue;
      shared.discarded = true;
      this.#fetching.delete(key);
    }
    let removed = 0;
    for (const [key, entry] of this.#memory) {
      if (entry.model.name === name && this.#memory.delete(key)) removed++;
    }
    const cache = await this.#open();
    if (cache !== undefined) {
      for (const request of await cache.keys()) {
        const entry = indexEntry((await cache.match(request))?.headers.get(INDEX_HEADER));
        if (entry?.name === name && (await cache.delete(request))) removed++;
      }
    }
    return removed;
  }

  /** Bytes stored, and the origin's storage usage and quota where the browser tells. */
  async estimate(): Promise<{ modelBytes: number; usageBytes?: number; quotaBytes?: number }> {
    const modelBytes = (await this.list()).reduce((sum, model) => sum + model.bytes, 0);
    const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
    if (storage?.estimate === undefined) return { modelBytes };
    const { usage, quota } = await storage.estimate();
    return {
      modelBytes,
      ...(usage === undefined ? {} : { usageBytes: usage }),
      ...(quota === undefined ? {} : { quotaBytes: quota }),
    };
  }

  #resolve(url: string): string {
    try {
      return new URL(url, this.#baseUrl).toString();
    } catch {
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `cannot resolve the model URL "${url}" (give a baseUrl)`,
      );
    }
  }

  /** The storage key: the URL plus the hash, so a new file version never matches an old entry. */
  #key(url: string, sha256: string): string {
    const key = new URL(this.#resolve(url));
    key.searchParams.set('tandem-sha256', sha256);
    return key.toString();
  }

  async #open(): Promise<Cache | undefined> {
    if (this.#caches === undefined) return undefined;
    try {
      return await this.#caches.open(this.cacheName);
    } catch {
      return undefined; // e.g. Cache Storage disabled in this browsing mode
    }
  }

  async #read(key: string, total: number): Promise<Uint8Array<ArrayBuffer> | undefined> {
    const memory = this.#memory.get(key);
    if (memory !== undefined) return memory.bytes;
    const cache = await this.#open();
    const response = await cache?.match(key);
    if (response === undefined) return undefined;
    const bytes = new Uint8Array(await response.arrayBuffer());
    // A truncated entry (storage trouble) is dropped and fetched again.
    if (bytes.byteLength !== total) {
      await cache?.delete(key);
      return undefined;
    }
    return bytes;
  }

  async #write(key: string, model: CachedModel, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    const cache = await this.#open();
    if (cache !== undefined) {
      try {
        const headers = {
          'content-type': 'application/octet-stream',
          'content-length': String(bytes.byteLength),
          [INDEX_HEADER]: JSON.stringify({
            name: model.name,
            url: model.url,
            bytes: model.bytes,
            sha256: model.sha256,
          }),
        };
        await cache.put(key, new Response(bytes, { headers }));
        return;
      } catch {
        // Quota exceeded (or storage unavailable): keep it in memory for this page instead.
      }
    }
    this.#memory.set(key, { model: { ...model, storage: 'memory' }, bytes });
  }

  async #download(
    url: string,
    total: number,
    signal: AbortSignal,
    onProgress: (progress: FileProgress) => void,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const resolved = this.#resolve(url);
    let response: Response;
    try {
      response = await this.#fetch(resolved, { signal });
    } catch (error) {
      throw (
        aborted(signal) ??
        new TandemError('E_DOWNLOAD', `could not fetch ${resolved}`, { cause: error })
      );
    }
    if (!response.ok || response.body === null) {
      throw new TandemError('E_DOWNLOAD', `fetching ${resolved} answered ${response.status}`, {
        retryable: response.status >= 500 || response.status === 429,
      });
    }
    const out = new Uint8Array(total);
    let loaded = 0;
    onProgress({ stage: 'download', loaded, total });
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.byteLength > total) {
          throw new TandemError(
            'E_INTEGRITY',
            `${resolved} is larger than the manifest's ${total} bytes`,
          );
        }
        out.set(value, loaded);
        loaded += value.byteLength;
        onProgress({ stage: 'download', loaded, total });
      }
    } catch (error) {
      await reader.cancel().catch(() => undefined);
      if (error instanceof TandemError) throw error;
      throw (
        aborted(signal) ??
        new TandemError('E_DOWNLOAD', `the download of ${resolved} broke off`, { cause: error })
      );
    }
    if (loaded !== total) {
      throw new TandemError(
        'E_INTEGRITY',
        `${resolved} has ${loaded} bytes; the manifest says ${total}`,
      );
    }
    return out;
  }
}

/**
 * The file as the call that began waiting for it at `joinedAt` sees it: the whole download's time,
 * and the part of the download that came after the call joined (all of it for the call that
 * started it, which joined before its first request).
 */
function fileFor(fetched: FetchedFile, joinedAt: number): ModelFile {
  const { bytes, download } = fetched;
  if (download === undefined) return { bytes, cached: true, downloadMs: 0, downloadWaitMs: 0 };
  const { startedAt, endedAt } = download;
  return {
    bytes,
    cached: false,
    downloadMs: endedAt - startedAt,
    downloadWaitMs: Math.max(0, endedAt - Math.max(startedAt, joinedAt)),
  };
}

/**
 * A stored file's index header, or undefined for an entry this code did not write (no header, not
 * JSON, fields missing): such an entry is not listed or deleted.
 */
function indexEntry(header: string | null | undefined): Omit<CachedModel, 'storage'> | undefined {
  if (header === null || header === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(header);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { name, url, bytes, sha256 } = parsed as Record<string, unknown>;
  if (
    typeof name !== 'string' ||
    typeof url !== 'string' ||
    typeof bytes !== 'number' ||
    typeof sha256 !== 'string'
  )
    return undefined;
  return { name, url, bytes, sha256 };
}

function requireFile(manifest: ModelManifest): { url: string; bytes: number; sha256: string } {
  if (manifest.url === undefined || manifest.bytes === undefined || manifest.sha256 === undefined) {
    throw new TandemError(
      'E_NO_BACKEND',
      `model "${manifest.name}" has no file to run locally (url, bytes, sha256)`,
    );
  }
  return { url: manifest.url, bytes: manifest.bytes, sha256: manifest.sha256 };
}

function aborted(signal: AbortSignal | undefined): TandemError | undefined {
  if (signal?.aborted !== true) return undefined;
  return signal.reason instanceof TandemError
    ? signal.reason
    : new TandemError('E_CANCELLED', 'the download was cancelled');
}

/** Lower-case hex sha256 of `bytes` (Web Crypto, in pages, workers and Node). */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
