// The folder-backed Cache Storage for Node, on a real temporary folder: what goes in comes back,
// buckets and entries stay apart, damage reads as absent, and failures reject for the caller to
// fall back on memory.

import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFileCacheStorage } from '../src/file-cache-storage.js';

const URL_A = 'http://127.0.0.1:8080/v1/models/a/versions/1/model.onnx?tandem-sha256=aa';
const URL_B = 'http://127.0.0.1:8080/v1/models/b/versions/1/model.onnx?tandem-sha256=bb';

function response(bytes: Uint8Array, headers: Record<string, string> = {}): Response {
  return new Response(bytes.slice(), { headers: { 'x-tandem-model': '{"name":"a"}', ...headers } });
}

describe('createFileCacheStorage', () => {
  let directory: string;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'tandem-file-cache-'));
  });

  afterEach(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('returns what was put, headers included, to a storage opened afresh on the folder', async () => {
    // Larger than one read chunk, so the body is read in several pieces.
    const bytes = Uint8Array.from({ length: 9 << 20 }, (_, i) => (i * 7) % 256);
    const cache = await createFileCacheStorage(directory).open('models');
    await cache.put(URL_A, response(bytes, { 'content-length': String(bytes.byteLength) }));

    const reopened = await createFileCacheStorage(directory).open('models');
    const found = await reopened.match(URL_A);
    expect(found?.headers.get('x-tandem-model')).toBe('{"name":"a"}');
    expect(found?.headers.get('content-length')).toBe(String(bytes.byteLength));
    expect(Buffer.from(await found!.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true);
    expect((await reopened.keys()).map((request) => request.url)).toEqual([URL_A]);
  });

  it('matches a Request or a URL as its string', async () => {
    const cache = await createFileCacheStorage(directory).open('models');
    await cache.put(new Request(URL_A), response(Uint8Array.of(1, 2, 3)));
    expect(await (await cache.match(new URL(URL_A)))?.arrayBuffer()).toEqual(
      Uint8Array.of(1, 2, 3).buffer,
    );
    const [key] = await cache.keys();
    expect(await cache.match(key!)).toBeDefined();
  });

  it('keeps buckets and entries apart, and replaces an entry put again', async () => {
    const storage = createFileCacheStorage(directory);
    const models = await storage.open('models');
    const other = await storage.open('other/bucket');
    await models.put(URL_A, response(Uint8Array.of(1)));
    await models.put(URL_B, response(Uint8Array.of(2)));
    await models.put(URL_B, response(Uint8Array.of(3)));
    await other.put(URL_A, response(Uint8Array.of(4)));

    expect((await models.keys()).map((request) => request.url).sort()).toEqual([URL_A, URL_B]);
    expect(new Uint8Array(await (await models.match(URL_B))!.arrayBuffer())).toEqual(
      Uint8Array.of(3),
    );
    expect(new Uint8Array(await (await other.match(URL_A))!.arrayBuffer())).toEqual(
      Uint8Array.of(4),
    );
    expect(await other.match(URL_B)).toBeUndefined();
  });

  it('deletes an entry and says whether there was one; no file is left behind', async () => {
    const cache = await createFileCacheStorage(directory).open('models');
    await cache.put(URL_A, response(Uint8Array.of(1, 2)));
    expect(await cache.delete(URL_A)).toBe(true);
    expect(await cache.delete(URL_A)).toBe(false);
    expect(await cache.match(URL_A)).toBeUndefined();
    expect(await cache.keys()).toEqual([]);
    expect(readdirSync(join(directory, 'models'))).toEqual([]);
  });

  it('reads a damaged entry as absent, and a put replaces it', async () => {
    const cache = await createFileCacheStorage(directory).open('models');
    await cache.put(URL_A, response(Uint8Array.of(1)));
    const meta = readdirSync(join(directory, 'models')).find((name) => name.endsWith('.json'))!;
    writeFileSync(join(directory, 'models', meta), '{"url":');
    expect(await cache.match(URL_A)).toBeUndefined();
    expect(await cache.keys()).toEqual([]);
    await cache.put(URL_A, response(Uint8Array.of(5)));
    expect(new Uint8Array(await (await cache.match(URL_A))!.arrayBuffer())).toEqual(
      Uint8Array.of(5),
    );
  });

  it('fails the body read, not the match, when the entry goes between the two', async () => {
    const cache = await createFileCacheStorage(directory).open('models');
    await cache.put(URL_A, response(Uint8Array.of(1)));
    const found = await cache.match(URL_A);
    await cache.delete(URL_A);
    await expect(found!.arrayBuffer()).rejects.toThrow();
  });

  it('rejects where the folder cannot be made, for the store to fall back on memory', async () => {
    const file = join(directory, 'a-file');
    writeFileSync(file, 'not a folder');
    await expect(createFileCacheStorage(file).open('models')).rejects.toThrow();
  });

  it('refuses an empty folder path with E_INVALID_ARGUMENT', () => {
    expect(() => createFileCacheStorage('')).toThrow(
      expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }),
    );
  });
});
