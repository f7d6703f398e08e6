// A fetch whose response bodies the test feeds chunk by chunk, for calls that must overlap a
// download at a chosen byte (ModelFileStore sharing one download, LocalRuntime runs that join it).
// The real network path is tested against a real server in test/client-model-files.test.ts.

/** One response body of {@link gatedFetch}, fed by the test. */
export interface GatedBody {
  /** The URL requested. */
  readonly url: string;
  /** The signal the request was made with. */
  readonly signal: AbortSignal | undefined;
  /** Delivers the next chunk of the body. */
  push(chunk: Uint8Array): void;
  /** Ends the body. */
  end(): void;
  /** Breaks the body off with `error`, as a failing network does. */
  fail(error: Error): void;
}

/** What {@link gatedFetch} returns. */
export interface GatedFetch {
  /** The fetch to hand to the code under test. */
  readonly fetch: typeof fetch;
  /** The bodies of the requests made so far, in order. */
  readonly bodies: GatedBody[];
  /** Resolves once the `n`th request (1-based) has been made. */
  requested(n: number): Promise<GatedBody>;
}

/**
 * A fetch whose response bodies the test feeds chunk by chunk, so calls can be made to overlap a
 * download at a chosen byte. An aborted request's body fails, as a real fetch's does.
 */
export function gatedFetch(): GatedFetch {
  const bodies: GatedBody[] = [];
  const waiting: { n: number; resolve: (body: GatedBody) => void }[] = [];
  const gated = (async (url: string, init?: RequestInit) => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const signal = init?.signal ?? undefined;
    signal?.addEventListener('abort', () =>
      controller.error(new DOMException('aborted', 'AbortError')),
    );
    const body: GatedBody = {
      url,
      signal,
      push: (chunk) => controller.enqueue(chunk),
      end: () => controller.close(),
      fail: (error) => controller.error(error),
    };
    bodies.push(body);
    for (const waiter of waiting.filter((w) => w.n === bodies.length)) waiter.resolve(body);
    return new Response(stream, { status: 200 });
  }) as typeof fetch;
  return {
    fetch: gated,
    bodies,
    requested: (n) =>
      bodies[n - 1] !== undefined
        ? Promise.resolve(bodies[n - 1]!)
        : new Promise((resolve) => waiting.push({ n, resolve })),
  };
}
