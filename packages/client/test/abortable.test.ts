import { describe, expect, it } from 'vitest';
import { TandemError } from '@tandem/shared';
import { rejectionCode } from '@tandem/test-support';
import { abortable } from '../src/abortable.js';

const cancelled = (): TandemError => new TandemError('E_CANCELLED', 'cancelled');

/** A promise and the functions that settle it. */
function deferred<T>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('abortable', () => {
  it('settles like the promise while the signal stays quiet, and lets go of the signal', async () => {
    const controller = new AbortController();
    const work = deferred<number>();
    const raced = abortable(work.promise, controller.signal, cancelled);
    work.resolve(7);
    await expect(raced).resolves.toBe(7);
    // Its listener is gone: a later abort rejects nothing and throws nothing.
    controller.abort();
  });

  it('rejects with the cancel error as soon as the signal aborts, before the work ends', async () => {
    const controller = new AbortController();
    const work = deferred<number>();
    const raced = abortable(work.promise, controller.signal, cancelled);
    controller.abort();
    expect(await rejectionCode(raced)).toBe('E_CANCELLED');
    work.resolve(1); // the work goes on; nothing waits for it
  });

  it('rejects at once when the signal already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    expect(
      await rejectionCode(abortable(new Promise(() => {}), controller.signal, cancelled)),
    ).toBe('E_CANCELLED');
  });

  it('codes a failure of the work with failureCode unless it is a TandemError already', async () => {
    const signal = new AbortController().signal;
    expect(
      await rejectionCode(
        abortable(Promise.reject(new Error('reset')), signal, cancelled, 'E_NETWORK'),
      ),
    ).toBe('E_NETWORK');
    expect(await rejectionCode(abortable(Promise.reject(new Error('x')), signal, cancelled))).toBe(
      'E_INTERNAL',
    );
    const coded = new TandemError('E_UNAUTHORIZED', 'no key');
    await expect(abortable(Promise.reject(coded), signal, cancelled, 'E_NETWORK')).rejects.toBe(
      coded,
    );
  });

  it('passes the promise through without a signal', async () => {
    const work = Promise.resolve('same');
    expect(abortable(work, undefined, cancelled)).toBe(work);
  });
});
