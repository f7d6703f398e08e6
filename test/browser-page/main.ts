// The page the browser tests drive: it exposes the client library on window so tests can call it
// with page.evaluate, exactly as an app would use it.

import * as client from '@tandem/client';

declare global {
  interface Window {
    tandemClient: typeof client;
  }
}

window.tandemClient = client;
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
