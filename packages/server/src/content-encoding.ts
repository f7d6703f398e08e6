// Compressed request bodies: `Content-Encoding: gzip` or `deflate`, as tritonclient.http sends them
// with `request_compression_algorithm` and Triton accepts them. A body is inflated as it arrives and
// never past the server's body limit: a small body that inflates to gigabytes (a zip bomb) stops
// at the limit with E_PAYLOAD_TOO_LARGE, having cost no more than that limit in memory and work.

import type { FastifyInstance } from 'fastify';
import { Readable } from 'node:stream';
import { createGunzip, createInflate, type Gunzip, type Inflate } from 'node:zlib';
import { TandemError } from '@tandem/shared';

/**
 * The codings a request body may come in: gzip, and deflate in its zlib wrapping (RFC 9110's
 * "deflate", which is what tritonclient's `zlib.compress` writes).
 */
export const REQUEST_ENCODINGS = ['gzip', 'deflate'] as const;

/** One of {@link REQUEST_ENCODINGS}. */
export type RequestEncoding = (typeof REQUEST_ENCODINGS)[number];

/**
 * The coding of a request body from its Content-Encoding header: undefined when there is none (no
 * header, empty, or `identity`). Anything else, a list of codings included (no client of OIP sends
 * one), is refused with E_UNSUPPORTED_ENCODING (415).
 */
export function requestEncoding(
  header: string | string[] | undefined,
): RequestEncoding | undefined {
  const value = (Array.isArray(header) ? header.join(',') : (header ?? '')).trim().toLowerCase();
  if (value === '' || value === 'identity') return undefined;
  // RFC 9110 asks recipients to take x-gzip as gzip.
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate') return 'deflate';
  throw new TandemError(
    'E_UNSUPPORTED_ENCODING',
    `the request body's Content-Encoding "${value}" is not one this server decodes (${REQUEST_ENCODINGS.join(', ')}, one coding)`,
  );
}

/**
 * A request body, inflated: what a fastify `preParsing` hook returns in place of the raw stream.
 * It fails with E_PAYLOAD_TOO_LARGE as soon as the inflated bytes pass `maxBytes` (nothing past
 * that is inflated), and with E_INVALID_ARGUMENT when the body is not valid data of its coding.
 * `receivedEncodedLength` counts the bytes read off the wire, which fastify checks against the
 * Content-Length header and its body limit.
 */
export class DecodedBody extends Readable {
  /** Compressed bytes read from the request so far. */
  receivedEncodedLength = 0;
  readonly #raw: Readable;
  readonly #encoding: RequestEncoding;
  readonly #maxBytes: number;
  readonly #inflater: Gunzip | Inflate;
  #started = false;
  #decodedBytes = 0;

  /**
   * @param raw the request's body as it arrives
   * @param encoding its coding
   * @param maxBytes the largest inflated body taken, in bytes (the server's `maxPayloadBytes`)
   */
  constructor(raw: Readable, encoding: RequestEncoding, maxBytes: number) {
    super();
    this.#raw = raw;
    this.#encoding = encoding;
    this.#maxBytes = maxBytes;
    this.#inflater = encoding === 'gzip' ? createGunzip() : createInflate();
    // fastify stops listening once it has refused a body by its own limits, and an error after
    // that would then be an uncaught 'error' event that ends the process.
    this.on('error', () => undefined);
  }

  override _read(): void {
    // Nothing is read off the wire before fastify reads this stream: an error before its
    // listeners were on would go unheard.
    if (this.#started) {
      this.#inflater.resume();
      return;
    }
    this.#started = true;
    const raw = this.#raw;
    const inflater = this.#inflater;
    raw.on('data', this.#count);
    raw.on('error', this.#aborted);
    raw.on('aborted', this.#aborted);
    inflater.on('data', (chunk: Buffer) => {
      this.#decodedBytes += chunk.byteLength;
      if (this.#decodedBytes > this.#maxBytes) {
        this.#fail(
          new TandemError(
            'E_PAYLOAD_TOO_LARGE',
            `the request body inflates past the server's limit of ${this.#maxBytes} bytes (maxPayloadBytes)`,
          ),
        );
        return;
      }
      if (!this.push(chunk)) inflater.pause();
    });
    inflater.on('end', () => this.push(null));
    inflater.on('error', (error) =>
      this.#fail(
        new TandemError(
          'E_INVALID_ARGUMENT',
          `the request body is not valid ${this.#encoding} data: ${error.message}`,
          { cause: error },
        ),
      ),
    );
    raw.pipe(inflater);
  }

  readonly #count = (chunk: Buffer): void => {
    this.receivedEncodedLength += chunk.byteLength;
  };

  readonly #aborted = (error?: Error): void =>
    this.#fail(
      new TandemError('E_INVALID_ARGUMENT', 'the request was aborted before its body ended', {
        cause: error,
      }),
    );

  #fail(error: TandemError): void {
    if (!this.destroyed) this.destroy(error);
  }

  /**
   * Stops inflating. The request itself is left open (unpiped, not destroyed): destroying it would
   * take the socket, and with it the coded answer, down too; Node's http server discards what is
   * left of it once the answer is sent.
   */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Without a 'data' listener of ours left on it, the request stops flowing here.
    this.#raw.off('data', this.#count);
    this.#raw.off('error', this.#aborted);
    this.#raw.off('aborted', this.#aborted);
    this.#raw.unpipe(this.#inflater);
    this.#inflater.destroy();
    callback(error);
  }
}

/**
 * Makes the routes of a fastify scope take their request bodies as raw bytes (a Buffer they parse
 * themselves, whatever the Content-Type), inflated first when they come compressed: gzip or
 * deflate, never past `maxPayloadBytes` (see {@link DecodedBody}); another coding is refused
 * with E_UNSUPPORTED_ENCODING.
 */
export function takeRawBodies(scope: FastifyInstance, maxPayloadBytes: number): void {
  scope.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = requestEncoding(request.headers['content-encoding']);
    return encoding === undefined ? payload : new DecodedBody(payload, encoding, maxPayloadBytes);
  });
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });
}
