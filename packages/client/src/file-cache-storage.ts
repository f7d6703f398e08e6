// Model files kept in a folder, for Node: it has no Cache Storage, and without this a process
// downloads every model again each time it starts and keeps the bytes in memory while it runs.

import { TandemError } from '@tandem/shared';
import { nodeBuiltin } from './node-builtin.js';
import type * as Crypto from 'node:crypto';
import type * as FsPromises from 'node:fs/promises';
import type * as Path from 'node:path';

/**
 * The part of Cache Storage that {@link ModelFileStore} uses. The browser's `caches` is one; so is
 * {@link createFileCacheStorage}'s folder.
 */
export interface ModelCacheStorage {
  /** Opens (creating if needed) the named bucket. */
  open(cacheName: string): Promise<ModelCache>;
}

/** One bucket of a {@link ModelCacheStorage}: responses stored by request URL. */
export interface ModelCache {
  /** The stored response for a URL, if any. */
  match(request: RequestInfo | URL): Promise<Response | undefined>;
  /** Stores a response under a URL, replacing any before it. */
  put(request: RequestInfo | URL, response: Response): Promise<void>;
  /** Removes a URL's response; true if there was one. */
  delete(request: RequestInfo | URL): Promise<boolean>;
  /** The URLs stored. */
  keys(): Promise<readonly Request[]>;
}

/**
 * Model files stored in a folder (Node): pass it as `caches` to {@link ModelFileStore}, or give
 * `createTandem` a `cacheDirectory`. A restarted process then reads its models from disk instead
 * of the network, and holds no copy of them in memory between runs. Each bucket is a subfolder;
 * each entry is a body file and a small JSON file of its URL and headers, both written to a
 * temporary name first and renamed into place, so two processes sharing the folder never read a
 * half-written entry. Bodies are read only when asked for (listing the cache reads headers only).
 * A write that fails (disk full, no permission) rejects, and the store keeps that file in memory
 * instead, as it does on a browser's quota error.
 */
export function createFileCacheStorage(directory: string): ModelCacheStorage {
  if (directory.length === 0)
    throw new TandemError('E_INVALID_ARGUMENT', 'cacheDirectory must be a folder path');
  let modules: Promise<NodeModules> | undefined;
  return {
    async open(cacheName: string): Promise<ModelCache> {
      modules ??= loadModules();
      const node = await modules;
      // The bucket name becomes one folder name, whatever characters it has.
      const folder = node.path.join(directory, encodeURIComponent(cacheName));
      await node.fs.mkdir(folder, { recursive: true });
      return new FolderCache(folder, node);
    },
  };
}

interface NodeModules {
  readonly fs: typeof FsPromises;
  readonly path: typeof Path;
  readonly crypto: typeof Crypto;
}

async function loadModules(): Promise<NodeModules> {
  const [fs, path, crypto] = await Promise.all([
    nodeBuiltin<typeof FsPromises>('node:fs/promises'),
    nodeBuiltin<typeof Path>('node:path'),
    nodeBuiltin<typeof Crypto>('node:crypto'),
  ]);
  return { fs, path, crypto };
}

/** What an entry's JSON file holds. */
interface EntryMeta {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
}

const META = '.json';
const BODY = '.body';
/** Bytes read from a body file at a time. */
const READ_CHUNK_BYTES = 4 << 20;

class FolderCache implements ModelCache {
  readonly #folder: string;
  readonly #node: NodeModules;

  constructor(folder: string, node: NodeModules) {
    this.#folder = folder;
    this.#node = node;
  }

  async match(request: RequestInfo | URL): Promise<Response | undefined> {
    const base = this.#base(urlOf(request));
    const meta = await this.#readMeta(`${base}${META}`);
    if (meta === undefined) return undefined;
    return new Response(this.#lazyBody(`${base}${BODY}`), { headers: meta.headers });
  }

  async put(request: RequestInfo | URL, response: Response): Promise<void> {
    const url = urlOf(request);
    const base = this.#base(url);
    const body = new Uint8Array(await response.arrayBuffer());
    const meta: EntryMeta = { url, headers: Object.fromEntries(response.headers) };
    // The body lands before the entry's JSON: an entry is listed only once its body is whole.
    await this.#writeAtomically(`${base}${BODY}`, body);
    await this.#writeAtomically(`${base}${META}`, JSON.stringify(meta));
  }

  async delete(request: RequestInfo | URL): Promise<boolean> {
    const base = this.#base(urlOf(request));
    // The JSON goes first: from then on the entry is not listed, whatever happens to the body.
    const existed = await this.#unlink(`${base}${META}`);
    await this.#unlink(`${base}${BODY}`);
    return existed;
  }

  async keys(): Promise<readonly Request[]> {
    const names = await this.#node.fs.readdir(this.#folder);
    const requests: Request[] = [];
    for (const name of names) {
      if (!name.endsWith(META)) continue;
      const meta = await this.#readMeta(this.#node.path.join(this.#folder, name));
      if (meta !== undefined) requests.push(new Request(meta.url));
    }
    return requests;
  }

  /** The entry's path without extension: a hash of its URL, safe as a file name. */
  #base(url: string): string {
    const hash = this.#node.crypto.createHash('sha256').update(url).digest('hex');
    return this.#node.path.join(this.#folder, hash);
  }

  async #readMeta(path: string): Promise<EntryMeta | undefined> {
    let text: string;
    try {
      text = await this.#node.fs.readFile(path, 'utf8');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    try {
      const meta = JSON.parse(text) as Partial<EntryMeta>;
      if (typeof meta.url === 'string' && isStringRecord(meta.headers)) return meta as EntryMeta;
    } catch {
      // Not ours, or damaged: treated as absent, and replaced by the next put.
    }
    return undefined;
  }

  /** The body file as a stream that opens the file on the first read. */
  #lazyBody(path: string): ReadableStream<Uint8Array> {
    const { fs } = this.#node;
    let file: FsPromises.FileHandle | undefined;
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          try {
            file ??= await fs.open(path, 'r');
            const chunk = new Uint8Array(READ_CHUNK_BYTES);
            const { bytesRead } = await file.read(chunk, 0, chunk.byteLength, null);
            if (bytesRead > 0) {
              controller.enqueue(chunk.subarray(0, bytesRead));
              return;
            }
            await file.close();
            controller.close();
          } catch (error) {
            await file?.close().catch(() => undefined);
            controller.error(error);
          }
        },
        async cancel() {
          await file?.close();
        },
      },
      // Nothing is read ahead: a caller that wants only the headers never opens the file.
      { highWaterMark: 0 },
    );
  }

  async #writeAtomically(path: string, data: Uint8Array | string): Promise<void> {
    const temporary = `${path}.${this.#node.crypto.randomUUID()}.tmp`;
    try {
      await this.#node.fs.writeFile(temporary, data);
      await this.#node.fs.rename(temporary, path);
    } catch (error) {
      await this.#unlink(temporary);
      throw error;
    }
  }

  async #unlink(path: string): Promise<boolean> {
    try {
      await this.#node.fs.unlink(path);
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }
}

function urlOf(request: RequestInfo | URL): string {
  if (typeof request === 'string') return request;
  if (request instanceof URL) return request.href;
  return request.url;
}

function isMissing(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ENOENT';
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((item) => typeof item === 'string')
  );
}
