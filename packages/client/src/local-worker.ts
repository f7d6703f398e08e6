// The module Web Worker that runs models in the browser (new Worker(…, { type: 'module' })). Both
// onnxruntime-web builds are imported on demand: a bundler emits both, a worker loads one.

import { expose } from 'comlink';
import { createLocalWorkerApi } from './local-worker-api.js';
import { installTandemErrorHandler } from './worker-errors.js';

/**
 * What went wrong when this script is started as one of onnxruntime-web's wasm threads. Those
 * threads load the script that holds onnxruntime-web; a bundler that makes classic (non-ES)
 * workers, as Vite does by default, puts it inside this one, so the thread would start a second
 * Tandem worker and onnxruntime-web would wait for it forever.
 */
const CLASSIC_WORKER_BUNDLE =
  "onnxruntime-web's wasm threads cannot start: the workers were bundled as classic scripts; " +
  "bundle them as ES modules (Vite: worker: { format: 'es' })";

if (self.name.startsWith('em-pthread')) throw new Error(CLASSIC_WORKER_BUNDLE);

// onnxruntime-web rethrows its thread's error event as is, which reaches the page as
// "[object ErrorEvent]": report it with the words above instead.
self.addEventListener('error', (event) => {
  const inner: unknown = event.error;
  if (!(inner instanceof ErrorEvent) || !inner.message.includes(CLASSIC_WORKER_BUNDLE)) return;
  event.preventDefault();
  reportError(new Error(CLASSIC_WORKER_BUNDLE));
});

installTandemErrorHandler();
expose(
  createLocalWorkerApi({
    full: () => import('onnxruntime-web'),
    wasmOnly: () => import('onnxruntime-web/wasm'),
  }),
);
