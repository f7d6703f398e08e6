// Compressed request bodies: which Content-Encoding headers are taken, bodies inflated as they
// arrive, and a zip bomb stopped at the limit having read and inflated little more than it.

import { Readable } from 'node:stream';
import { createGzip, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TandemError } from '@tandem/shared';
import { DecodedBody, requestEncoding } from '../src/content-encoding.js';

/** Reads a body to its end: the bytes, or the TandemError it failed with. */
async function readAll(body: Readable): Promise<{ bytes: Buffer } | { error: TandemError }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of body) chunks.push(chunk as Buffer);
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    return { error: error as TandemError };
  }
  return { bytes: Buffer.concat(chunks) };
}

/** `bytes` as a request arrives: in chunks of `size` bytes. */
function arriving(bytes: Buffer, size = 1024): Readable {
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < bytes.byteLength; pos += size)
    chunks.push(bytes.subarray(pos, pos + size));
  return Readable.from(chunks, { objectMode: false });
}

/** gzip of `bytes` zero bytes, compressed as a stream (the input is never whole in memory). */
async function gzipOfZeros(bytes: number): Promise<Buffer> {
  const zeros = Buffer.alloc(1024 * 1024);
  const gzip = createGzip({ level: 9 });
  const out: Buffer[] = [];
  gzip.on('data', (chunk: Buffer) => out.push(chunk));
  const ended = new Promise((resolve) => gzip.on('end', resolve));
  for (let written = 0; written < bytes; written += zeros.byteLength) {
    if (!gzip.write(zeros)) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  gzip.end();
  await ended;
  return Buffer.concat(out);
}

describe('requestEncoding', () => {
  it('takes gzip (and x-gzip) and deflate, in any case; none or identity is no coding', () => {
    expect(requestEncoding('gzip')).toBe('gzip');
    expect(requestEncoding(' GZip ')).toBe('gzip');
    expect(requestEncoding('x-gzip')).toBe('gzip');
    expect(requestEncoding('deflate')).toBe('deflate');
    expect(requestEncoding(undefined)).toBeUndefined();
    expect(requestEncoding('')).toBeUndefined();
    expect(requestEncoding('identity')).toBeUndefined();
  });

  it('refuses any other coding, and lists of codings, with E_UNSUPPORTED_ENCODING', () => {
    for (const header of ['br', 'zstd', 'compress', 'gzip, deflate', ['gzip', 'gzip']]) {
      const error = (() => {
        try {
          requestEncoding(header);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error, String(header)).toBeInstanceOf(TandemError);
      expect((error as TandemError).code).toBe('E_UNSUPPORTED_ENCODING');
    }
  });
});

describe('DecodedBody', () => {
  const text = Buffer.from(JSON.stringify({ inputs: Array.from({ length: 500 }, (_, i) => i) }));

  it('inflates gzip and deflate bodies as they arrive, counting the bytes read off the wire', async () => {
    for (const [encoding, compressed] of [
      ['gzip', gzipSync(text)],
      ['deflate', deflateSync(text)],
    ] as const) {
      const body = new DecodedBody(arriving(compressed, 7), encoding, text.byteLength);
      expect(await readAll(body)).toEqual({ bytes: text });
      expect(body.receivedEncodedLength).toBe(compressed.byteLength);
    }
  });

  it('fails with E_PAYLOAD_TOO_LARGE one byte past the limit', async () => {
    const body = new DecodedBody(arriving(gzipSync(text)), 'gzip', text.byteLength - 1);
    const outcome = await readAll(body);
    expect('error' in outcome && outcome.error.code).toBe('E_PAYLOAD_TOO_LARGE');
  });

  it('stops a zip bomb at the limit: no more than the limit comes out, and the rest is not read', async () => {
    // 256 MiB of zeros in about 256 KB; the limit is 1 MiB.
    const bomb = await gzipOfZeros(256 * 1024 * 1024);
    const limit = 1024 * 1024;
    expect(bomb.byteLength).toBeLessThan(limit);
    const body = new DecodedBody(arriving(bomb), 'gzip', limit);
    let delivered = 0;
    body.on('data', (chunk: Buffer) => (delivered += chunk.byteLength));
    const failed = await new Promise<unknown>((resolve) => body.on('error', resolve));
    expect(failed).toBeInstanceOf(TandemError);
    expect(failed).toMatchObject({ code: 'E_PAYLOAD_TOO_LARGE' });
    expect(delivered).toBeLessThanOrEqual(limit);
    // Inflating the whole bomb would have read all of it; stopping at the limit reads about
    // limit / 1000 bytes of it, plus what the pipe buffers.
    expect(body.receivedEncodedLength).toBeLessThan(bomb.byteLength / 4);
  });

  it('fails with E_INVALID_ARGUMENT on data that is not of its coding, or ends early', async () => {
    const gzipped = gzipSync(text);
    for (const [encoding, bytes] of [
      ['gzip', text],
      ['deflate', gzipped],
      ['gzip', gzipped.subarray(0, gzipped.byteLength - 10)],
    ] as const) {
      const outcome = await readAll(new DecodedBody(arriving(bytes), encoding, 1 << 20));
      expect('error' in outcome && outcome.error.code).toBe('E_INVALID_ARGUMENT');
    }
  });
});
