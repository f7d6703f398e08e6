// createTandem's handling of a call's progress handler, with a fake worker (comlink over a
// MessageChannel) and a fetch stub: events that reach onProgress after the call has ended. The
// real worker, server and browser are tested in test/client-create-tandem.test.ts and
// test/client-browser.test.ts.

import { expose, type Remote } from 'comlink';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ProgressEvent } from '@tandem/shared';
import { rejectionCode } from '@tandem/test-support';
import { createTandem } from '../src/create-tandem.js';
import type { WorkerHandle } from '../src/local-runtime.js';
import { sha256Hex } from '../src/model-files.js';
import { deferred } from './fake-ort.js';

const bytes = Uint8Array.of(1, 2, 3, 4);

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('createTandem and onProgress', () => {
  it('tells onProgress nothing after the event that ends the call, though the worker still reports the compile', async () => {
    vi.stubGlobal('fetch', () => Promise.resolve(new Response(bytes.slice())));
    // The worker's load hands the test its runtime-download listener and waits to be let go.
    const loading = deferred<Remote<(loaded: number, total?: number) => void>>();
    const compiled = deferred();
    const createWorker = (): Promise<WorkerHandle> => {
      const { port1, port2 } = new MessageChannel();
      expose(
        {
          probe: () => ({ backends: ['wasm'], softwareGpu: false, threads: 1 }),
          load: async (
            _key: string,
            _files: unknown,
            _backend: string,
            onRuntimeBytes: Remote<(loaded: number, total?: number) => void>,
          ) => {
            loading.resolve(onRuntimeBytes);
            await compiled.promise;
            return {
              backend: 'wasm',
              compileMs: 1,
              compiled: true,
              inputNames: ['x'],
              outputNames: ['y'],
            };
          },
        },
        port2,
      );
      return Promise.resolve({
        endpoint: port1,
        terminate: () => {
          port1.close();
          port2.close();
        },
      });
    };
    const tandem = createTandem({
      placement: 'local-only',
      createWorker,
      models: {
        m: {
          name: 'm',
          url: 'https://models.example/m.onnx',
          bytes: 4,
          sha256: await sha256Hex(bytes),
        },
      },
    });
    try {
      const stages: ProgressEvent['stage'][] = [];
      const job = tandem.run(
        'm',
        { x: { dtype: 'float32', dims: [1], data: new Float32Array(1) } },
        { onProgress: (event) => stages.push(event.stage) },
      );
      const onRuntimeBytes = await loading.promise;
      job.cancel();
      expect(await rejectionCode(job)).toBe('E_CANCELLED');
      expect(stages.at(-1)).toBe('cancelled');
      // onnxruntime-web's runtime still downloading for the compile that goes on: resolved once
      // the page has handled it.
      await onRuntimeBytes(1024, 4096);
      expect(stages.at(-1)).toBe('cancelled');
      expect(stages.filter((stage) => stage === 'cancelled')).toHaveLength(1);
    } finally {
      compiled.resolve();
      await tandem.close();
    }
  });
});

describe('createTandem options', () => {
  for (const intervalMs of [0, -1000, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`refuses keepWarm.intervalMs ${intervalMs} with E_INVALID_ARGUMENT: a warm every millisecond would flood the server`, () => {
      expect(() =>
        createTandem({ server: 'http://127.0.0.1:1', keepWarm: { models: ['m'], intervalMs } }),
      ).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    });
  }
});

describe('createTandem without a server', () => {
  it('refuses a remote-only call with E_INVALID_ARGUMENT, naming the missing server option', async () => {
    const tandem = createTandem({ models: { m: { name: 'm' } } });
    const job = tandem.run('m', {}, { placement: 'remote-only' });
    expect(await rejectionCode(job)).toBe('E_INVALID_ARGUMENT');
    await expect(job).rejects.toThrow(/server/);
    await tandem.close();
  });
});

describe('createTandem model names', () => {
  it('refuses a run or warm of no model name with E_INVALID_ARGUMENT before asking anyone', async () => {
    // A server that would answer: the call must not reach it (it asked /v1/models//manifest).
    const fetched: string[] = [];
    vi.stubGlobal('fetch', (url: string) => {
      fetched.push(url);
      return Promise.resolve(new Response('{}', { status: 404 }));
    });
    try {
      const tandem = createTandem({ server: 'http://127.0.0.1:9' });
      for (const model of ['', 'x'.repeat(257)]) {
        expect(await rejectionCode(tandem.run(model, {})), JSON.stringify(model)).toBe(
          'E_INVALID_ARGUMENT',
        );
        expect(await rejectionCode(tandem.warm(model))).toBe('E_INVALID_ARGUMENT');
      }
      expect(fetched).toEqual([]);
      await tandem.close();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe('createTandem job ids', () => {
  it('are random UUIDs on a page without crypto.randomUUID (no secure context): another caller can neither guess one nor clash with it', () => {
    // crypto.getRandomValues exists in every context; randomUUID only in secure ones.
    vi.stubGlobal('crypto', { getRandomValues: crypto.getRandomValues.bind(crypto) });
    const tandem = createTandem({ models: { m: { name: 'm' } } });
    const inputs = { x: { dtype: 'float32', dims: [1], data: new Float32Array(1) } } as const;
    const ids = [tandem.run('m', inputs).id, tandem.run('m', inputs).id];
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(ids[0]).toMatch(uuid);
    expect(ids[1]).toMatch(uuid);
    expect(ids[0]).not.toBe(ids[1]);
    void tandem.close();
  });
});
