// onnxruntime-web used directly in a plain module worker of the page, as an app would run it off
// the main thread without Tandem: the baseline that tells Tandem's own cost (its worker protocol,
// router, progress) apart from the cost of running in a worker at all.

import * as ort from 'onnxruntime-web/wasm';

/** Messages the page sends: load a model, then run it on one float32 input. */
export type DirectWorkerRequest =
  | { readonly type: 'load'; readonly bytes: Uint8Array }
  | { readonly type: 'run'; readonly data: Float32Array; readonly dims: readonly number[] };

let session: ort.InferenceSession | undefined;

self.onmessage = async (event: MessageEvent<DirectWorkerRequest>): Promise<void> => {
  const request = event.data;
  if (request.type === 'load') {
    // One wasm thread, as on the page's main thread and in Tandem's worker in the bench.
    ort.env.wasm.numThreads = 1;
    session = await ort.InferenceSession.create(request.bytes, {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
    });
    self.postMessage({ type: 'loaded' });
    return;
  }
  if (session === undefined) throw new Error('run before load');
  const name = session.inputNames[0] as string;
  const results = await session.run({
    [name]: new ort.Tensor('float32', request.data, request.dims),
  });
  // Outputs go back transferred, as Tandem's worker sends them.
  const outputs = Object.values(results).map((tensor) => tensor.data as Float32Array);
  self.postMessage({ type: 'ran', outputs }, { transfer: outputs.map((data) => data.buffer) });
};
