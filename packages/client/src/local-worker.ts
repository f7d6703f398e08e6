// The module Web Worker that runs models in the browser (new Worker(…, { type: 'module' })). Both
// onnxruntime-web builds are imported on demand: a bundler emits both, a worker loads one.

import { expose } from 'comlink';
import { createLocalWorkerApi } from './local-worker-api.js';
import { installTandemErrorHandler } from './worker-errors.js';

installTandemErrorHandler();
expose(
  createLocalWorkerApi({
    full: () => import('onnxruntime-web'),
    wasmOnly: () => import('onnxruntime-web/wasm'),
  }),
);
