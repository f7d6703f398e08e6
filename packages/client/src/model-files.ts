// Model files for local runs: a model's .onnx and its external data files (weights kept beside the
// .onnx, as exporters write models past protobuf's 2 GiB limit), fetched as one. A streamed download
// with one byte progress over all of them (the total is the manifest's, known before the first
// byte), a sha256 check per file (E_INTEGRITY naming it), and Cache Storage per file so a second
// visit reads no network (and a download broken off keeps the files already checked). Where Cache
// Storage is missing (Node) or full (a quota error), files are kept in memory for this page instead.
// Calls for a model already being fetched (a warm-up and a run, a prefetch and a local run) share
// that fetch: one download, each call with its own progress, its own cancellation, and its own wait
// (a late one waited only for the rest of the download).
// Files are stored by URL and sha256, so model names served from the same files share them; each
// name that fetched them is recorded beside them (a small entry of its own), so that every such
// name is listed, and a delete of one removes the files only when no other recorded name needs them.

import { TandemError, type ModelManifest } from '@tandem/shared';
import { sha256 } from './sha256.js';
import type { ModelCache, ModelCacheStorage } from './file-cache-storage.js';

/** Where a stored model file lives. */
export type ModelStorage = 'cache' | 'memory';

/** A stored external data file of a model, as `tandem.cache.list()` reports it. */
export interface CachedExternalData {
  /** The location the model names the file by (its manifest's `externalData[].path`). */
  readonly path: string;
  /** The file's absolute URL, as downloaded. */
  readonly url: string;
  /** The file's size in bytes. */
  readonly bytes: number;
  /** The file's sha256, hex, as checked when it was stored. */
  readonly sha256: string;
  /** Cache Storage (survives reloads), or this page's memory (quota errors, or no Cache Storage). */
  readonly storage: ModelStorage;
}

/** A stored model (its .onnx and its external data files), as `tandem.cache.list()` reports it. */
export interface CachedModel {
  /** The model's name (its manifest's). */
  readonly name: string;
  /** The .onnx file's absolute URL, as downloaded. */
  readonly url: string;
  /**
   * Bytes stored for the model: its .onnx and its external data files. Once a download has
   * finished, every file of the model; less when one broke off after some files were stored.
   */
  readonly bytes: number;
  /** The .onnx file's sha256, hex, as checked when it was stored. */
  readonly sha256: string;
  /**
   * Cache Storage (survives reloads) when every file stored is there; this page's memory when any
   * is kept there instead (quota errors, or no Cache Storage).
   */
  readonly storage: ModelStorage;
  /** The model's external data files stored; absent for a model without any stored. */
  readonly externalData?: readonly CachedExternalData[];
}

/** Progress of fetching a model's files. */
export interface FileProgress {
  /** 'download' while bytes arrive from the network, 'cache' while they are read from storage. */
  readonly stage: 'download' | 'cache';
  /** Bytes so far, of all the model's files (those already stored count as loaded). */
  readonly loaded: number;
  /**
   * Bytes in all: the .onnx and every external data file, from the manifest, so known before
   * the first byte.
   */
  readonly total: number;
}

/** The bytes of one external data file, with the path the model names it by. */
export interface ExternalDataBytes {
  /** The location the model names the file by: onnxruntime's `externalData[].path`. */
  readonly path: string;
  /** The file's bytes, checked against the manifest's sha256. */
  readonly data: Uint8Array<ArrayBuffer>;
}

/** A fetched model: its .onnx file and its external data files. */
export interface ModelFile {
  /** The .onnx file's bytes, checked against the manifest's sha256. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The model's external data files in the manifest's order; empty for a model without. */
  readonly externalData: readonly ExternalDataBytes[];
  /** True when every file came from storage, with no network. */
  readonly cached: boolean;
  /**
   * How long the download took, in ms, from its first request to its last file verified,
   * whichever call started it (what a bandwidth estimate divides `downloadedBytes` by); 0 when
   * read from storage.
   */
  readonly downloadMs: number;
  /**
   * How much of the download this call waited through, in ms: `downloadMs` for the call that
   * started it, only the rest (from joining to the end) for one that joined it under way; 0 when
   * read from storage. What a run reports as `timings.downloadMs`: the whole download's time
   * would charge a late call for time before it began waiting.
   */
  readonly downloadWaitMs: number;
  /** Bytes that came from the network: those of the files storage lacked; 0 when cached. */
  readonly downloadedBytes: number;
}

/** What one fetch of a model yields, before each waiting call is told its own share of it. */
interface FetchedModel {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly externalData: readonly ExternalDataBytes[];
  /**
   * When the download began and ended (last file verified), by performance.now(), and the bytes
   * it fetched; none if every file was stored.
   */
  readonly download?: {
    readonly startedAt: number;
    readonly endedAt: number;
    readonly bytes: number;
  };
}

/** What a stored file's index header says about it. */
interface IndexEntry {
  /**
   * The name of the model whose fetch stored it. Listed only for entries stored before names
   * were recorded apart (see NameEntry): a file serves every name recorded for its model.
   */
  readonly name: string;
  readonly url: string;
  readonly bytes: number;
  readonly sha256: string;
  /** For an external data file: its path, and the .onnx (URL and sha256) it belongs to. */
  readonly external?: {
    readonly path: string;
    readonly modelUrl: string;
    readonly modelSha256: string;
  };
}

/** A model name recorded for the files of one .onnx (its URL and sha256): the name is listed. */
interface NameEntry {
  readonly name: string;
  readonly modelUrl: string;
  readonly modelSha256: string;
}

/** One file of a model to fetch: where from, what it must be, and where it is stored. */
interface ModelFileSpec {
  /** The storage key (see ModelFileStore.#key). */
  readonly key: string;
  /** The resolved URL. */
  readonly url: string;
  readonly bytes: number;
  readonly sha256: string;
  /** What it is stored as. */
  readonly entry: IndexEntry;
}

/** An external data file to fetch. */
interface ExternalFileSpec extends ModelFileSpec {
  /** The location the model names it by. */
  readonly path: string;
}

/** A model's files to fetch: its .onnx, and its external data files in the manifest's order. */
interface ModelFiles {
  readonly model: ModelFileSpec;
  readonly external: readonly ExternalFileSpec[];
}

/** Options of {@link ModelFileStore}. */
export interface ModelFileStoreOptions {
  /** Cache Storage bucket name. @default 'tandem-models-v1' */
  readonly cacheName?: string;
  /** Resolves relative manifest URLs. @default location.href in a page */
  readonly baseUrl?: string;
  /** How files are fetched. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /**
   * Where files are stored: the browser's Cache Storage, or a folder in Node
   * ({@link createFileCacheStorage}). @default globalThis.caches (undefined in Node: memory only)
   */
  readonly caches?: ModelCacheStorage;
  /**
   * The `Authorization` header to send with a file's URL, if any. `createTandem` sends its
   * `apiKey` to its server's own URLs only, never to another host a manifest points at.
   */
  readonly authorization?: (url: string) => string | undefined;
}

const INDEX_HEADER = 'x-tandem-model';
/** The header of a name entry (an empty body): its NameEntry as JSON. */
const NAME_HEADER = 'x-tandem-model-name';

/**
 * One fetch of a model's files (read from storage, else downloaded, checked and stored), shared by
 * every `get` of that model while it is under way.
 */
class SharedFetch {
  /** The last progress reported: a caller that joins late starts from there. */
  last: FileProgress | undefined;
  /**
   * The model names its callers asked for (a name deleted meanwhile leaves): each is recorded
   * with the files it stores, and is listed with them.
   */
  readonly names = new Set<string>();
  /** Names already recorded for its model (written, or found stored). */
  readonly recorded = new Set<string>();
  /** The callers waiting for the model, each told every progress event. */
  readonly callers = new Set<(progress: FileProgress) => void>();
  /** Aborted when no caller waits any more: the download stops. */
  readonly controller = new AbortController();
  /**
   * Set when its model is deleted while it is under way: the callers already waiting still get
   * the files, but no more of them are stored (the user asked for them to be gone).
   */
  discarded = false;
  /**
   * Its files on their way into storage: each is stored once checked, while the next downloads.
   * A delete waits for these, so that none lands after it.
   */
  readonly writes = new Set<Promise<void>>();
  readonly result: Promise<FetchedModel>;

  constructor(
    /** The .onnx: what names are recorded for. */
    readonly model: ModelFileSpec,
    /** The storage keys of its files, joined: what calls for the same files share. */
    readonly key: string,
    start: (fetch: SharedFetch) => Promise<FetchedModel>,
  ) {
    this.result = start(this);
  }

  /** Tells every waiting caller. */
  report(progress: FileProgress): void {
    this.last = progress;
    for (const caller of [...this.callers]) caller(progress);
  }
}

/** Downloads, verifies and stores model files. */
export class ModelFileStore {
  /** The Cache Storage bucket (onnxruntime-web's runtime binary is kept there too). */
  readonly cacheName: string;
  readonly #baseUrl: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #caches: ModelCacheStorage | undefined;
  readonly #authorization: ((url: string) => string | undefined) | undefined;
  /** Files kept in memory (no Cache Storage, or it was full), by storage key. */
  readonly #memory = new Map<string, { entry: IndexEntry; bytes: Uint8Array<ArrayBuffer> }>();
  /** Name entries kept in memory (no Cache Storage, or it was full), by storage key. */
  readonly #memoryNames = new Map<string, NameEntry>();
  /** Fetches a new call may join, by the storage keys of the model's files. */
  readonly #fetching = new Map<string, SharedFetch>();
  /**
   * Every fetch not settled yet, joinable or not (one every caller left may still be storing a
   * file it had checked): what a delete must stop storing.
   */
  readonly #live = new Set<SharedFetch>();

  constructor(options: ModelFileStoreOptions = {}) {
    this.cacheName = options.cacheName ?? 'tandem-models-v1';
    this.#baseUrl =
      options.baseUrl ?? (globalThis as { location?: { href: string } }).location?.href;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#caches = options.caches ?? (globalThis as { caches?: ModelCacheStorage }).caches;
    this.#authorization = options.authorization;
  }

  /**
   * The model's files (its .onnx and every external data file): from storage when present (no
   * network), else downloaded with one byte progress over all of them, each verified against the
   * manifest's sha256 and stored. A call for a model already being fetched waits for that fetch
   * instead of starting another, hears its progress from the bytes so far, and reports as its
   * `downloadWaitMs` only the part of the download it waited through. Aborting the signal ends
   * this call with `E_CANCELLED`; the download stops once every call waiting for it has been
   * cancelled. A failed fetch fails every call waiting for it (`E_INTEGRITY` names the file that
   * failed its check); the files checked before it stay stored, and the next call fetches the
   * rest afresh.
   *
   * The bytes returned are the caller's to transfer (to a worker): the store keeps no reference
   * to them. Calls that waited for the same fetch get the same arrays.
   */
  get(
    manifest: ModelManifest,
    options: { signal?: AbortSignal; onProgress?: (progress: FileProgress) => void } = {},
  ): Promise<ModelFile> {
    let key: string;
    let shared: SharedFetch | undefined;
    try {
      // Listed as fetched: a manifest's relative URL means nothing outside the page that had it.
      const files = this.#files(manifest);
      key = [files.model, ...files.external].map((file) => file.key).join(' ');
      const cancelled = aborted(options.signal);
      if (cancelled !== undefined) throw cancelled;
      // Looked up and registered with no await in between: two calls in the same tick share.
      shared = this.#fetching.get(key);
      if (shared === undefined) {
        // A fetch of the same files that every caller left may still be storing the files it had
        // checked: reading storage before those land would download them again.
        const settling = [...this.#live].filter(
          (fetch) => fetch.key === key && fetch.controller.signal.aborted && !fetch.discarded,
        );
        shared = new SharedFetch(files.model, key, async (fetch) => {
          await Promise.allSettled(settling.map((previous) => previous.result));
          return this.#fetchFiles(files, fetch);
        });
        const started = shared;
        const forget = (): void => {
          this.#live.delete(started);
          if (this.#fetching.get(key) === started) this.#fetching.delete(key);
        };
        started.result.then(forget, forget);
        this.#fetching.set(key, started);
        this.#live.add(started);
      }
      shared.names.add(manifest.name);
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

  /**
   * Reads the model's files from storage, then downloads, checks and stores those missing, up to
   * {@link PARALLEL_DOWNLOADS} at once, with one byte progress over all of them (stored ones count
   * as loaded). The first failure stops the others; every file that passed its check is stored.
   */
  async #fetchFiles(files: ModelFiles, fetch: SharedFetch): Promise<FetchedModel> {
    const { signal } = fetch.controller;
    const all = [files.model, ...files.external];
    const total = sumBytes(all);
    const got = new Map<ModelFileSpec, Uint8Array<ArrayBuffer>>();
    for (const file of all) {
      const cancelled = aborted(signal);
      if (cancelled !== undefined) throw cancelled;
      const stored = await this.#read(file.key, file.bytes);
      if (stored !== undefined) got.set(file, stored);
    }
    const missing = all.filter((file) => !got.has(file));
    let download: FetchedModel['download'];
    if (missing.length === 0) {
      // A name reading files another name stored is listed with them from now on.
      this.#recordNames(fetch);
      await Promise.all(fetch.writes);
      fetch.report({ stage: 'cache', loaded: total, total });
    } else {
      const stored = total - sumBytes(missing);
      /** Bytes so far of each file under way or done. */
      const progress = new Map<ModelFileSpec, number>();
      const report = (): void => {
        let loaded = stored;
        for (const bytes of progress.values()) loaded += bytes;
        fetch.report({ stage: 'download', loaded, total });
      };
      // One failure stops the other downloads; the caller's cancel stops them all.
      const stop = new AbortController();
      const onAbort = (): void => stop.abort(signal.reason);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      let failure: unknown;
      let next = 0;
      const downloader = async (): Promise<void> => {
        for (let file = missing[next++]; file !== undefined; file = missing[next++]) {
          const current = file;
          const bytes = await this.#download(current, stop.signal, (fileLoaded) => {
            progress.set(current, fileLoaded);
            report();
          });
          const digest = await sha256Hex(bytes);
          if (digest !== current.sha256) {
            throw new TandemError(
              'E_INTEGRITY',
              `${describeFile(current)}: sha256 is ${digest}, the manifest says ${current.sha256}`,
            );
          }
          got.set(current, bytes);
          // Stored now, while others download: checked, it is good whatever happens to them.
          this.#store(current, bytes, fetch);
        }
      };
      const startedAt = performance.now();
      const downloaders = Array.from({ length: Math.min(PARALLEL_DOWNLOADS, missing.length) }, () =>
        downloader().catch((error: unknown) => {
          failure ??= error;
          stop.abort(error);
        }),
      );
      await Promise.all(downloaders);
      signal.removeEventListener('abort', onAbort);
      if (failure !== undefined) {
        // Settled only once its files have landed: a delete waits only for fetches not settled.
        await Promise.all(fetch.writes);
        throw aborted(signal) ?? TandemError.from(failure, 'E_DOWNLOAD');
      }
      download = { startedAt, endedAt: performance.now(), bytes: sumBytes(missing) };
      fetch.report({ stage: 'cache', loaded: 0, total });
      // Callers that joined after the first file was stored.
      this.#recordNames(fetch);
      await Promise.all(fetch.writes);
      fetch.report({ stage: 'cache', loaded: total, total });
    }
    const bytesOf = (file: ModelFileSpec): Uint8Array<ArrayBuffer> => {
      const bytes = got.get(file);
      if (bytes === undefined)
        throw new TandemError('E_INTERNAL', `${describeFile(file)} was neither read nor fetched`);
      return bytes;
    };
    return {
      bytes: bytesOf(files.model),
      externalData: files.external.map((file) => ({ path: file.path, data: bytesOf(file) })),
      ...(download === undefined ? {} : { download }),
    };
  }

  /** Starts storing a checked file, unless its model was deleted meanwhile. */
  #store(file: ModelFileSpec, bytes: Uint8Array<ArrayBuffer>, fetch: SharedFetch): void {
    if (fetch.discarded) return;
    // With the first file: a download broken off later still lists the names it was for.
    this.#recordNames(fetch);
    // A file that could not be stored anywhere is downloaded again next time: no failure here.
    this.#track(fetch, this.#write(file.key, file.entry, bytes));
  }

  /**
   * Starts recording the fetch's names not recorded yet (a name entry each, unless one is stored
   * already), unless its model was deleted meanwhile.
   */
  #recordNames(fetch: SharedFetch): void {
    if (fetch.discarded) return;
    const { url, sha256 } = fetch.model.entry;
    for (const name of fetch.names) {
      if (fetch.recorded.has(name)) continue;
      fetch.recorded.add(name);
      const entry: NameEntry = { name, modelUrl: url, modelSha256: sha256 };
      this.#track(fetch, this.#writeName(nameKey(fetch.model.key, name), entry));
    }
  }

  /** Adds a write to those a delete waits for; a write that failed is no failure of the fetch. */
  #track(fetch: SharedFetch, write: Promise<void>): void {
    const writing = write.catch(() => undefined);
    fetch.writes.add(writing);
    void writing.then(() => fetch.writes.delete(writing));
  }

  /** Whether every file of the model is stored (a run would need no download). */
  async has(manifest: ModelManifest): Promise<boolean> {
    if (manifest.url === undefined || manifest.bytes === undefined || manifest.sha256 === undefined)
      return false;
    return (await this.bytesToDownload(manifest)) === 0;
  }

  /**
   * Bytes a `get` of the model would download now: those of its files (the .onnx, each external
   * data file) that are not stored; 0 when every one is. Rejects with `E_NO_BACKEND` for a
   * manifest without a file, as `get` does.
   */
  async bytesToDownload(manifest: ModelManifest): Promise<number> {
    const files = this.#files(manifest);
    const cache = await this.#open();
    let missing = 0;
    for (const file of [files.model, ...files.external]) {
      if (this.#memory.has(file.key) || (await cache?.match(file.key)) !== undefined) continue;
      missing += file.bytes;
    }
    return missing;
  }

  /**
   * Every stored model, its external data files with it, and the bytes of all its files. Model
   * names served from the same files (the same URLs and sha256s) share those files, and each name
   * a `get` fetched them for is listed, with the same files and bytes.
   */
  async list(): Promise<CachedModel[]> {
    const { files, names } = await this.#scan();
    const listed: CachedModel[] = [];
    for (const [id, model] of groupByModel(files)) {
      for (const name of namesOf(id, model.storedBy, names)) listed.push({ ...model.listed, name });
    }
    return listed;
  }

  /**
   * Removes a model name and every file stored for it (each stored version, external data files
   * included) that no other listed name needs; returns how many files went. Names served from
   * the same files share them: deleting one of them leaves the files to the others (0 files go,
   * and the name is no longer listed); deleting the last removes them. A download under way
   * for the name alone is not stored when it ends (its callers still get the files; files it was
   * storing are removed too), and a later call starts a fresh one; one that another name waits
   * for goes on, stored for that name.
   */
  async delete(name: string): Promise<number> {
    const writing: Promise<void>[] = [];
    for (const fetch of this.#live) {
      if (!fetch.names.has(name)) continue;
      fetch.names.delete(name);
      // Its name entry goes below: asked for again, the name is recorded again.
      fetch.recorded.delete(name);
      writing.push(...fetch.writes);
      // Nobody else asked for these files: stop storing them.
      if (fetch.names.size === 0) fetch.discarded = true;
    }
    for (const [key, shared] of this.#fetching) {
      if (shared.discarded) this.#fetching.delete(key);
    }
    // Files and names already on their way into storage land first, so that none outlives the
    // delete.
    await Promise.all(writing);
    const { files, names } = await this.#scan();
    for (const stored of names) if (stored.entry.name === name) await stored.remove();
    let removed = 0;
    for (const [id, model] of groupByModel(files)) {
      const before = namesOf(id, model.storedBy, names);
      if (!before.includes(name)) continue;
      const others = before.filter((other) => other !== name);
      // A download under way for another name keeps what it needs, and stores the rest.
      const wanted = [...this.#live].some(
        (fetch) => !fetch.discarded && modelId(fetch.model.entry) === id,
      );
      if (others.length > 0 || wanted) {
        // Files stored before names were recorded apart: the other names they served stay listed.
        if (!names.some((stored) => stored.id === id)) {
          const key = this.#key(model.listed.url, model.listed.sha256);
          for (const other of others)
            await this.#writeName(nameKey(key, other), {
              name: other,
              modelUrl: model.listed.url,
              modelSha256: model.listed.sha256,
            });
        }
        continue;
      }
      for (const file of model.files) if (await file.remove()) removed++;
    }
    return removed;
  }

  /**
   * Bytes stored (each file once, however many names share it), and the origin's storage usage
   * and quota where the browser tells.
   */
  async estimate(): Promise<{ modelBytes: number; usageBytes?: number; quotaBytes?: number }> {
    const { files } = await this.#scan();
    const modelBytes = files.reduce((sum, file) => sum + file.entry.bytes, 0);
    const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
    if (storage?.estimate === undefined) return { modelBytes };
    const { usage, quota } = await storage.estimate();
    return {
      modelBytes,
      ...(usage === undefined ? {} : { usageBytes: usage }),
      ...(quota === undefined ? {} : { quotaBytes: quota }),
    };
  }

  /** Every stored file and name entry, in memory and in Cache Storage, each with its removal. */
  async #scan(): Promise<{ files: StoredFile[]; names: StoredName[] }> {
    const files: StoredFile[] = [];
    const names: StoredName[] = [];
    for (const [key, { entry }] of this.#memory) {
      files.push({ entry, storage: 'memory', remove: async () => this.#memory.delete(key) });
    }
    for (const [key, entry] of this.#memoryNames) {
      names.push({ entry, id: modelId(entry), remove: async () => this.#memoryNames.delete(key) });
    }
    const cache = await this.#open();
    if (cache !== undefined) {
      for (const request of await cache.keys()) {
        const headers = (await cache.match(request))?.headers;
        const remove = (): Promise<boolean> => cache.delete(request);
        const entry = indexEntry(headers?.get(INDEX_HEADER));
        if (entry !== undefined) files.push({ entry, storage: 'cache', remove });
        const named = nameEntry(headers?.get(NAME_HEADER));
        if (named !== undefined) names.push({ entry: named, id: modelId(named), remove });
      }
    }
    return { files, names };
  }

  /**
   * The model's files: its .onnx, then its external data files in the manifest's order, each URL
   * resolved as the .onnx's is.
   */
  #files(manifest: ModelManifest): ModelFiles {
    const onnx = requireFile(manifest);
    const modelUrl = this.#resolve(onnx.url);
    const model: ModelFileSpec = {
      key: this.#key(modelUrl, onnx.sha256),
      url: modelUrl,
      bytes: onnx.bytes,
      sha256: onnx.sha256,
      entry: { name: manifest.name, url: modelUrl, bytes: onnx.bytes, sha256: onnx.sha256 },
    };
    const external = (manifest.externalData ?? []).map((file): ExternalFileSpec => {
      const url = this.#resolve(file.url);
      return {
        path: file.path,
        key: this.#key(url, file.sha256),
        url,
        bytes: file.bytes,
        sha256: file.sha256,
        entry: {
          name: manifest.name,
          url,
          bytes: file.bytes,
          sha256: file.sha256,
          external: { path: file.path, modelUrl, modelSha256: onnx.sha256 },
        },
      };
    });
    return { model, external };
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

  async #open(): Promise<ModelCache | undefined> {
    if (this.#caches === undefined) return undefined;
    try {
      return await this.#caches.open(this.cacheName);
    } catch {
      return undefined; // e.g. Cache Storage disabled in this browsing mode
    }
  }

  async #read(key: string, total: number): Promise<Uint8Array<ArrayBuffer> | undefined> {
    const memory = this.#memory.get(key);
    // A copy: the caller may move its bytes to a worker, which would empty the stored ones.
    if (memory !== undefined) return memory.bytes.slice();
    const cache = await this.#open();
    const response = await cache?.match(key);
    if (response === undefined) return undefined;
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch {
      // The entry went between the match and the read (deleted or evicted): fetched again.
      return undefined;
    }
    // A truncated entry (storage trouble) is dropped and fetched again.
    if (bytes.byteLength !== total) {
      await cache?.delete(key);
      return undefined;
    }
    return bytes;
  }

  async #write(key: string, entry: IndexEntry, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    const cache = await this.#open();
    if (cache !== undefined) {
      try {
        const headers = {
          'content-type': 'application/octet-stream',
          'content-length': String(bytes.byteLength),
          [INDEX_HEADER]: JSON.stringify(indexHeader(entry)),
        };
        // The Response copies the bytes: the caller may move its own to a worker meanwhile.
        await cache.put(key, new Response(bytes, { headers }));
        return;
      } catch {
        // Quota exceeded (or storage unavailable): keep it in memory for this page instead.
      }
    }
    // A copy, for the same reason: the bytes handed to callers may be moved to a worker.
    this.#memory.set(key, { entry, bytes: bytes.slice() });
  }

  /** Stores a name entry (an empty body), unless it is stored already. */
  async #writeName(key: string, entry: NameEntry): Promise<void> {
    if (this.#memoryNames.has(key)) return;
    const cache = await this.#open();
    if (cache !== undefined) {
      try {
        if ((await cache.match(key)) !== undefined) return;
        const header = {
          name: entry.name,
          model: { url: entry.modelUrl, sha256: entry.modelSha256 },
        };
        await cache.put(
          key,
          new Response(null, { headers: { [NAME_HEADER]: JSON.stringify(header) } }),
        );
        return;
      } catch {
        // Quota exceeded (or storage unavailable): kept in memory, as a file would be.
      }
    }
    this.#memoryNames.set(key, entry);
  }

  async #download(
    file: ModelFileSpec,
    signal: AbortSignal,
    onProgress: (loaded: number) => void,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const { url, bytes: total } = file;
    const what = describeFile(file);
    let response: Response;
    try {
      const authorization = this.#authorization?.(url);
      response = await this.#fetch(
        url,
        authorization === undefined ? { signal } : { signal, headers: { authorization } },
      );
    } catch (error) {
      throw (
        aborted(signal) ??
        new TandemError('E_DOWNLOAD', `could not fetch ${what}`, { cause: error })
      );
    }
    if (!response.ok || response.body === null) {
      throw new TandemError('E_DOWNLOAD', `fetching ${what} answered ${response.status}`, {
        retryable: response.status >= 500 || response.status === 429,
      });
    }
    const out = new Uint8Array(total);
    let loaded = 0;
    onProgress(loaded);
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.byteLength > total) {
          throw new TandemError(
            'E_INTEGRITY',
            `${what} is larger than the manifest's ${total} bytes`,
          );
        }
        out.set(value, loaded);
        loaded += value.byteLength;
        onProgress(loaded);
      }
    } catch (error) {
      await reader.cancel().catch(() => undefined);
      if (error instanceof TandemError) throw error;
      throw (
        aborted(signal) ??
        new TandemError('E_DOWNLOAD', `the download of ${what} broke off`, { cause: error })
      );
    }
    if (loaded !== total) {
      throw new TandemError(
        'E_INTEGRITY',
        `${what} has ${loaded} bytes; the manifest says ${total}`,
      );
    }
    return out;
  }
}

/**
 * Bytes a local run of the model downloads when nothing of it is stored: its .onnx and every
 * external data file; undefined for a manifest without a file.
 */
export function modelBytes(manifest: ModelManifest): number | undefined {
  if (manifest.bytes === undefined) return undefined;
  return (manifest.externalData ?? []).reduce((sum, file) => sum + file.bytes, manifest.bytes);
}

function sumBytes(files: readonly { bytes: number }[]): number {
  return files.reduce((sum, file) => sum + file.bytes, 0);
}

/** A file as messages name it: its URL, and for external data the path the model gives it. */
function describeFile(file: ModelFileSpec): string {
  const path = file.entry.external?.path;
  return path === undefined ? file.url : `external data file "${path}" (${file.url})`;
}

/**
 * The model as the call that began waiting for it at `joinedAt` sees it: the whole download's
 * time, and the part of the download that came after the call joined (all of it for the call
 * that started it, which joined before its first request).
 */
function fileFor(fetched: FetchedModel, joinedAt: number): ModelFile {
  const { bytes, externalData, download } = fetched;
  if (download === undefined) {
    return {
      bytes,
      externalData,
      cached: true,
      downloadMs: 0,
      downloadWaitMs: 0,
      downloadedBytes: 0,
    };
  }
  const { startedAt, endedAt } = download;
  return {
    bytes,
    externalData,
    cached: false,
    downloadMs: endedAt - startedAt,
    downloadWaitMs: Math.max(0, endedAt - Math.max(startedAt, joinedAt)),
    downloadedBytes: download.bytes,
  };
}

/** A stored file, where it is, and how to remove it. */
interface StoredFile {
  readonly entry: IndexEntry;
  readonly storage: ModelStorage;
  /** Removes it; true when it was there. */
  remove(): Promise<boolean>;
}

/** A stored name entry, the model (see modelId) it names, and how to remove it. */
interface StoredName {
  readonly entry: NameEntry;
  readonly id: string;
  /** Removes it; true when it was there. */
  remove(): Promise<boolean>;
}

/** The files of one stored model (one .onnx), as listed under each of its names. */
interface StoredModel {
  /** What every name of it lists. */
  readonly listed: Omit<CachedModel, 'name'>;
  /** The names in its files' index headers: the names it lists when none is recorded apart. */
  readonly storedBy: readonly string[];
  readonly files: readonly StoredFile[];
}

/** A model's identity in storage: its .onnx's URL and sha256 (as the .onnx's entry is keyed). */
function modelId(entry: IndexEntry | NameEntry): string {
  if ('modelUrl' in entry) return `${entry.modelUrl} ${entry.modelSha256}`;
  const url = entry.external?.modelUrl ?? entry.url;
  const sha256 = entry.external?.modelSha256 ?? entry.sha256;
  return `${url} ${sha256}`;
}

/**
 * The names a stored model is listed under: those recorded for it, sorted; for files stored
 * before names were recorded apart (none is), the names in their index headers.
 */
function namesOf(id: string, storedBy: readonly string[], names: readonly StoredName[]): string[] {
  const recorded = names.filter((stored) => stored.id === id).map((stored) => stored.entry.name);
  return [...new Set(recorded.length > 0 ? recorded : storedBy)].sort();
}

/** The storage key of a name entry: beside its model's .onnx key, never a file's. */
function nameKey(modelKey: string, name: string): string {
  const key = new URL(modelKey);
  key.searchParams.set('tandem-name', name);
  return key.toString();
}

/**
 * Stored files grouped into models, by {@link modelId}: each external data file joins the .onnx
 * it belongs to.
 */
function groupByModel(found: readonly StoredFile[]): Map<string, StoredModel> {
  const models = new Map<
    string,
    {
      url: string;
      bytes: number;
      sha256: string;
      storage: ModelStorage;
      externalData: CachedExternalData[];
      storedBy: string[];
      files: StoredFile[];
    }
  >();
  for (const file of found) {
    const { entry, storage } = file;
    const url = entry.external?.modelUrl ?? entry.url;
    const sha256 = entry.external?.modelSha256 ?? entry.sha256;
    const id = modelId(entry);
    let model = models.get(id);
    if (model === undefined) {
      model = { url, bytes: 0, sha256, storage, externalData: [], storedBy: [], files: [] };
      models.set(id, model);
    }
    model.bytes += entry.bytes;
    model.files.push(file);
    if (!model.storedBy.includes(entry.name)) model.storedBy.push(entry.name);
    if (storage === 'memory') model.storage = 'memory';
    if (entry.external !== undefined) {
      const { path } = entry.external;
      model.externalData.push({
        path,
        url: entry.url,
        bytes: entry.bytes,
        sha256: entry.sha256,
        storage,
      });
    }
  }
  const grouped = new Map<string, StoredModel>();
  for (const [id, { externalData, storedBy, files, ...model }] of models) {
    grouped.set(id, {
      // Stored in the order their downloads ended (several run at once): listed by path.
      listed:
        externalData.length === 0
          ? model
          : { ...model, externalData: externalData.sort((a, b) => (a.path < b.path ? -1 : 1)) },
      storedBy,
      files,
    });
  }
  return grouped;
}

/** A stored entry's JSON header as an object, or undefined (none, not JSON, not an object). */
function headerRecord(header: string | null | undefined): Record<string, unknown> | undefined {
  if (header === null || header === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(header);
  } catch {
    return undefined;
  }
  return typeof parsed === 'object' && parsed !== null
    ? (parsed as Record<string, unknown>)
    : undefined;
}

/** A name entry's header, or undefined for anything else. */
function nameEntry(header: string | null | undefined): NameEntry | undefined {
  const parsed = headerRecord(header);
  if (parsed === undefined) return undefined;
  const { name, model } = parsed;
  if (typeof name !== 'string' || typeof model !== 'object' || model === null) return undefined;
  const { url, sha256 } = model as Record<string, unknown>;
  if (typeof url !== 'string' || typeof sha256 !== 'string') return undefined;
  return { name, modelUrl: url, modelSha256: sha256 };
}

/** A stored file's index header, as written. */
function indexHeader(entry: IndexEntry): Record<string, unknown> {
  const { name, url, bytes, sha256, external } = entry;
  return external === undefined
    ? { name, url, bytes, sha256 }
    : {
        name,
        url,
        bytes,
        sha256,
        path: external.path,
        model: { url: external.modelUrl, sha256: external.modelSha256 },
      };
}

/**
 * A stored file's index header, or undefined for an entry this code did not write (no header, not
 * JSON, fields missing): such an entry is not listed or deleted.
 */
function indexEntry(header: string | null | undefined): IndexEntry | undefined {
  const parsed = headerRecord(header);
  if (parsed === undefined) return undefined;
  const { name, url, bytes, sha256, path, model } = parsed;
  if (
    typeof name !== 'string' ||
    typeof url !== 'string' ||
    typeof bytes !== 'number' ||
    typeof sha256 !== 'string'
  )
    return undefined;
  if (path === undefined && model === undefined) return { name, url, bytes, sha256 };
  // An external data file: its path and the .onnx it belongs to, both or it is not ours.
  if (typeof path !== 'string' || typeof model !== 'object' || model === null) return undefined;
  const { url: modelUrl, sha256: modelSha256 } = model as Record<string, unknown>;
  if (typeof modelUrl !== 'string' || typeof modelSha256 !== 'string') return undefined;
  return { name, url, bytes, sha256, external: { path, modelUrl, modelSha256 } };
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

/**
 * Files of one model downloaded at once: a model exported with one file per weight has hundreds,
 * and one request after another pays a round trip each. Browsers open at most 6 connections per
 * host over HTTP/1.1; this leaves room for the page's other requests.
 */
export const PARALLEL_DOWNLOADS = 4;

function aborted(signal: AbortSignal | undefined): TandemError | undefined {
  if (signal?.aborted !== true) return undefined;
  return signal.reason instanceof TandemError
    ? signal.reason
    : new TandemError('E_CANCELLED', 'the download was cancelled');
}

/**
 * Lower-case hex sha256 of `bytes`: Web Crypto (pages, workers and Node), else plain JavaScript
 * where a page has no `crypto.subtle` (served over plain http from a host other than localhost).
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const subtle = (globalThis as { crypto?: { subtle?: SubtleCrypto } }).crypto?.subtle;
  if (subtle === undefined) return sha256(bytes);
  const digest = await subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
