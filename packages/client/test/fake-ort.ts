// A stand-in for onnxruntime-web under the worker API (local-worker-api.ts): sessions that run
// y = x, whose creation and runs wait for whatever the test says, and a record of what was
// created, run and released. The real onnxruntime-web runs in test/client-local-runtime.test.ts
// (Node) and test/client-browser.test.ts (Chromium).

import { warmUpModel, type OrtModule } from '../src/local-worker-api.js';
import { ORT_RUNTIME_VERSION } from '../src/ort-runtime-cache.js';

/** A promise and the functions that settle it. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** A promise and the functions that settle it. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A session the fake created. */
export interface FakeSession {
  readonly bytes: Uint8Array;
  /** The `externalData` session option it was created with, if any. */
  readonly externalData?: readonly { readonly path: string; readonly data: unknown }[];
  released: boolean;
  /** Resolves when the session is released. */
  readonly whenReleased: Promise<void>;
  /** Runs that were still going when the session was released (onnxruntime would fail them). */
  runsAtRelease: number;
}

/** How the fake behaves; each hook is called at the point it names and waited for. */
export interface FakeOrtOptions {
  /**
   * Inside the `n`-th model session creation (0-based, of `bytes`), before it answers; a
   * rejection fails it.
   */
  readonly compile?: (n: number, bytes: Uint8Array) => Promise<void>;
  /** Inside each run, before it answers. */
  readonly run?: () => Promise<void>;
}

/** The fake module and what happened to it. */
export interface FakeOrt {
  readonly module: OrtModule;
  /** Model session creations started (the worker's warm-up model not counted). */
  readonly creates: number;
  /** Sessions created for models, in order. */
  readonly sessions: readonly FakeSession[];
}

class FakeTensor {
  readonly location = 'cpu';
  constructor(
    readonly type: string,
    readonly data: unknown,
    readonly dims: readonly number[],
  ) {}
}

/** Builds a fake onnxruntime-web module. */
export function fakeOrt(options: FakeOrtOptions = {}): FakeOrt {
  const warmUp = warmUpModel();
  const sessions: FakeSession[] = [];
  let creates = 0;
  const create = async (
    bytes: Uint8Array,
    sessionOptions?: { externalData?: readonly { path: string; data: unknown }[] },
  ) => {
    const isWarmUp =
      bytes.byteLength === warmUp.byteLength && bytes.every((byte, i) => byte === warmUp[i]);
    if (!isWarmUp) await options.compile?.(creates++, bytes);
    const releasing = deferred();
    const record: FakeSession = {
      bytes,
      ...(sessionOptions?.externalData === undefined
        ? {}
        : { externalData: sessionOptions.externalData }),
      released: false,
      whenReleased: releasing.promise,
      runsAtRelease: 0,
    };
    if (!isWarmUp) sessions.push(record);
    let running = 0;
    return {
      inputNames: ['x'],
      outputNames: ['y'],
      async run(feeds: Record<string, FakeTensor>) {
        if (record.released) throw new Error('session already released');
        running++;
        try {
          await options.run?.();
          const x = feeds.x;
          if (x === undefined) throw new Error('input x is missing');
          return { y: new FakeTensor(x.type, x.data, x.dims) };
        } finally {
          running--;
        }
      },
      async release() {
        record.released = true;
        record.runsAtRelease = running;
        releasing.resolve();
      },
    };
  };
  const module = {
    env: { wasm: {}, versions: { web: ORT_RUNTIME_VERSION } },
    InferenceSession: { create },
    Tensor: FakeTensor,
  } as unknown as OrtModule;
  return {
    module,
    get creates() {
      return creates;
    },
    sessions,
  };
}
