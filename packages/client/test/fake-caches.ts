// A Cache Storage stand-in for ModelFileStore's unit tests: a Map per bucket, with puts that can
// fail as a full quota does or be held until the test lets them land. Real Cache Storage is
// tested in Chromium (test/client-browser.test.ts).

/**
 * A Cache Storage stand-in: a Map per bucket. `full` makes put() fail as a quota error does;
 * `heldPuts` holds every put until it resolves, and `onPut` hears each put begin.
 */
export function fakeCaches(
  options: { full?: boolean; heldPuts?: Promise<void>; onPut?: (key: string) => void } = {},
): CacheStorage {
  const buckets = new Map<string, Map<string, Response>>();
  const open = async (name: string): Promise<Cache> => {
    const bucket = buckets.get(name) ?? new Map<string, Response>();
    buckets.set(name, bucket);
    return {
      async match(key: Request | string) {
        return bucket.get(key instanceof Request ? key.url : key)?.clone();
      },
      async put(key: string, response: Response) {
        options.onPut?.(key);
        await options.heldPuts;
        if (options.full === true) throw new DOMException('quota', 'QuotaExceededError');
        bucket.set(key, response);
      },
      async keys() {
        return [...bucket.keys()].map((key) => new Request(key));
      },
      async delete(key: Request | string) {
        return bucket.delete(key instanceof Request ? key.url : key);
      },
    } as unknown as Cache;
  };
  return { open } as unknown as CacheStorage;
}
