// The worker_threads entry that runs models in Node (same API as the browser worker).

import { parentPort } from 'node:worker_threads';
import { expose } from 'comlink';
import { nodeEndpoint } from './node-endpoint.js';
import { createLocalWorkerApi } from './local-worker-api.js';
import { installTandemErrorHandler } from './worker-errors.js';

if (parentPort === null) throw new Error('local-worker-node must run in a worker thread');
installTandemErrorHandler();
expose(createLocalWorkerApi({ full: () => import('onnxruntime-web') }), nodeEndpoint(parentPort));
