// Builds the demo into demo/dist, which `npm start` serves from the Tandem server (same origin,
// cross-origin isolated, so onnxruntime-web can use wasm threads). `npm run dev -w demo`-style
// development works too: the dev server sends the same isolation headers.

import { defineConfig } from 'vite';

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  root: import.meta.dirname,
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
  server: { headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
});
