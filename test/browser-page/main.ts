// The page the browser tests and benches drive: it exposes the client library on window so they
// can call it with page.evaluate, exactly as an app would use it, and onnxruntime-web itself for
// benches that compare against using it directly.

import * as client from '@tandem/client';
import * as ort from 'onnxruntime-web';

declare global {
  interface Window {
    tandemClient: typeof client;
    ort: typeof ort;
  }
}

window.tandemClient = client;
window.ort = ort;
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
