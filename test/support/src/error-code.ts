// Tests assert on error codes, never on message text. These run a call and say which TandemError
// code it failed with ('ok' when it did not fail); anything thrown that is not a TandemError is
// re-thrown, so the test fails loudly instead of comparing codes.

import { TandemError } from '@tandem/shared';

/** The code `fn` throws, or 'ok'. */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof TandemError) return error.code;
    throw error;
  }
  return 'ok';
}

/** The code `promise` rejects with, or 'ok'. */
export async function rejectionCode(promise: PromiseLike<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TandemError) return error.code;
    throw error;
  }
  return 'ok';
}
