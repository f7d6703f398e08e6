// The module Web Worker that runs models in the browser (new Worker(…, { type: 'module' })).

import { expose } from 'comlink';
import { createLocalWorkerApi } from './local-worker-api.js';
import { installTandemErrorHandler } from './worker-errors.js';

installTandemErrorHandler();
expose(createLocalWorkerApi());
