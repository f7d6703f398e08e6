// sha256 where Web Crypto is missing (a page served over plain http from a LAN or intranet host is
// no secure context, and has no crypto.subtle): the fallback agrees with node:crypto, and a model
// file is still checked and stored there.

import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ModelFileStore, sha256Hex } from '../src/model-files.js';
import { sha256 } from '../src/sha256.js';

const hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('sha256', () => {
  it('agrees with node:crypto on the standard vectors and across block boundaries', () => {
    const text = (value: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(value);
    expect(sha256(text(''))).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    expect(sha256(text('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    // Lengths around the 55/56/64-byte padding edges.
    for (let length = 50; length <= 130; length++) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 37 + length) % 256);
      expect(sha256(bytes)).toBe(hex(bytes));
    }
  });

  it('agrees with node:crypto on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        const copy = new Uint8Array(bytes);
        expect(sha256(copy)).toBe(hex(copy));
      }),
    );
  });
});

describe('sha256Hex and ModelFileStore without Web Crypto', () => {
  it('checks and stores a model file on a page with no crypto.subtle (no secure context)', async () => {
    const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31) % 251);
    vi.stubGlobal('crypto', { getRandomValues: crypto.getRandomValues.bind(crypto) });
    expect(await sha256Hex(bytes)).toBe(hex(bytes));
    const store = new ModelFileStore({
      fetch: () => Promise.resolve(new Response(bytes.slice())),
    });
    const manifest = { name: 'm', url: 'http://intranet.example/m.onnx', bytes: 100_000 };
    const file = await store.get({ ...manifest, sha256: hex(bytes) });
    expect(file.bytes).toEqual(bytes);
    await expect(
      store.get({
        ...manifest,
        name: 'n',
        sha256: '0'.repeat(64),
        url: 'http://intranet.example/n.onnx',
      }),
    ).rejects.toMatchObject({
      code: 'E_INTEGRITY',
    });
  });
});
