// Racing a promise against an AbortSignal: the call ends the moment the signal aborts, while the
// work it waited on (a connection, a session being created) goes on for later calls.

import { TandemError, type ErrorCode } from '@tandem/shared';

/**
 * Settles like `promise`, or rejects with `cancelled()` as soon as `signal` aborts (at once when
 * it already has). A rejection of `promise` becomes a TandemError, coded `failureCode` when it is
 * not one already.
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  cancelled: () => TandemError,
  failureCode?: ErrorCode,
): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(TandemError.from(error, failureCode));
      },
    );
  });
}
