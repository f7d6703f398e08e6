import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, TandemError, isTandemError, type ErrorCode } from '../src/index.js';
import { nonNegativeDouble } from './arbitraries.js';

const codes = Object.keys(ERROR_CODES) as ErrorCode[];

describe('TandemError', () => {
  it('takes its default retryability from the code table', () => {
    for (const code of codes) {
      expect(new TandemError(code, 'x').retryable).toBe(ERROR_CODES[code].retryable);
    }
    expect(new TandemError('E_BUSY', 'x', { retryable: false }).retryable).toBe(false);
  });

  it('survives a JSON round trip (a socket) with code, retryable and retryAfterMs intact', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...codes),
        fc.string(),
        fc.option(fc.boolean(), { nil: undefined }),
        fc.option(nonNegativeDouble, { nil: undefined }),
        (code, message, retryable, retryAfterMs) => {
          const options: { retryable?: boolean; retryAfterMs?: number } = {};
          if (retryable !== undefined) options.retryable = retryable;
          if (retryAfterMs !== undefined) options.retryAfterMs = retryAfterMs;
          const original = new TandemError(code, message, options);
          const copy = TandemError.fromSerialized(JSON.parse(JSON.stringify(original)));
          expect(copy).toBeInstanceOf(TandemError);
          expect(copy.code).toBe(original.code);
          expect(copy.message).toBe(original.message);
          expect(copy.retryable).toBe(original.retryable);
          expect(copy.retryAfterMs).toBe(original.retryAfterMs);
        },
      ),
    );
  });

  it('survives structured cloning (a worker boundary) of its wire form', () => {
    const original = new TandemError('E_RATE_LIMITED', 'slow down', { retryAfterMs: 250 });
    const copy = TandemError.fromSerialized(structuredClone(original.toJSON()));
    expect(copy.toJSON()).toEqual(original.toJSON());
  });

  it('keeps the cause local: it is never serialised', () => {
    const cause = new Error('secret path /etc/keys');
    const error = new TandemError('E_INTERNAL', 'failed', { cause });
    expect(error.cause).toBe(cause);
    expect(JSON.stringify(error)).not.toContain('secret');
  });

  it('turns anything that is not a serialized error into E_PROTOCOL', () => {
    for (const bad of [
      null,
      1,
      'E_BUSY',
      {},
      { code: 'E_NOPE', message: '' },
      { code: 'E_BUSY' },
      { code: 'E_BUSY', message: 'x', retryable: 'yes' },
      { code: 'E_BUSY', message: 'x', retryAfterMs: -1 },
    ]) {
      expect(TandemError.fromSerialized(bad).code).toBe('E_PROTOCOL');
    }
  });

  it('wraps foreign errors with a fallback code and keeps the original as cause', () => {
    const cause = new RangeError('boom');
    const wrapped = TandemError.from(cause, 'E_RUNTIME');
    expect(wrapped.code).toBe('E_RUNTIME');
    expect(wrapped.cause).toBe(cause);
    expect(TandemError.from('text').code).toBe('E_INTERNAL');
    const own = new TandemError('E_BUSY', 'x');
    expect(TandemError.from(own)).toBe(own);
    expect(isTandemError(own, 'E_BUSY')).toBe(true);
    expect(isTandemError(own, 'E_INTERNAL')).toBe(false);
    expect(isTandemError(cause)).toBe(false);
  });
});
