// The page the browser tests and benches drive: it exposes the client library on window so they
// can call it with page.evaluate, exactly as an app would use it, onnxruntime-web itself for
// benches that compare against using it directly (its wasm-only build: the one the client's
// worker loads on a device without WebGPU, so both sides run the same runtime), and the progress
// element (imported by its subpath, as an app does, which defines <tandem-progress>), and a plain
// worker running onnxruntime-web directly (direct-worker.ts).

import * as client from '@tandem/client';
import * as progress from '@tandem/client/progress';
import * as ort from 'onnxruntime-web/wasm';

declare global {
  interface Window {
    tandemClient: typeof client;
    tandemProgress: typeof progress;
    ort: typeof ort;
    /** Starts a plain worker running onnxruntime-web directly (see direct-worker.ts). */
    startDirectWorker: () => Worker;
  }
}

window.tandemClient = client;
window.tandemProgress = progress;
window.ort = ort;
window.startDirectWorker = () =>
  new Worker(new URL('./direct-worker.ts', import.meta.url), { type: 'module' });
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
