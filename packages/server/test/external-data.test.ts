// Resolving a model's external data locations against its folder, on real files.

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorCode } from '@tandem/test-support';
import { resolveExternalData } from '../src/external-data.js';
import { tempDir } from './server-fixtures.js';

const { dir, remove } = tempDir('external-data');
afterAll(remove);
const versionDir = join(dir, 'model', '1');
mkdirSync(join(versionDir, 'parts', 'folder'), { recursive: true });
writeFileSync(join(versionDir, 'w.bin'), new Uint8Array(10));
writeFileSync(join(versionDir, 'parts', 'p1.bin'), new Uint8Array(3));
writeFileSync(join(dir, 'model', 'outside.bin'), new Uint8Array(1));
// Links inside the folder: to a file outside it, to a folder outside it, and to a file inside it.
symlinkSync(join(dir, 'model', 'outside.bin'), join(versionDir, 'link.bin'));
symlinkSync(join(dir, 'model'), join(versionDir, 'up'));
symlinkSync(join(versionDir, 'w.bin'), join(versionDir, 'alias.bin'));
const modelPath = join(versionDir, 'model.onnx');

describe('resolveExternalData', () => {
  it('resolves locations inside the model folder with their sizes', () => {
    expect(resolveExternalData(modelPath, ['w.bin', 'parts/p1.bin', './w.bin'])).toEqual([
      { location: 'w.bin', path: join(versionDir, 'w.bin'), bytes: 10 },
      { location: 'parts/p1.bin', path: join(versionDir, 'parts', 'p1.bin'), bytes: 3 },
      { location: './w.bin', path: join(versionDir, 'w.bin'), bytes: 10 },
    ]);
    expect(resolveExternalData(modelPath, ['alias.bin'])[0]?.bytes).toBe(10);
    expect(resolveExternalData(modelPath, [])).toEqual([]);
  });

  it('refuses locations outside the folder (by text or through links), missing files, folders and the model itself with E_MODEL_LOAD_FAILED', () => {
    for (const location of [
      '../outside.bin',
      'parts/../../outside.bin',
      join(dir, 'model', 'outside.bin'),
      '.',
      'missing.bin',
      'parts/folder',
      'link.bin',
      'up/outside.bin',
      'model.onnx',
      './model.json',
    ]) {
      expect(
        errorCode(() => resolveExternalData(modelPath, [location])),
        location,
      ).toBe('E_MODEL_LOAD_FAILED');
    }
  });
});
