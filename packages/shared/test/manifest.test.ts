import { describe, expect, it } from 'vitest';
import { BACKENDS, LOCAL_BACKENDS, isBackend, parseModelManifest } from '../src/index.js';
import { errorCode } from '@tandem/test-support';

const sha256 = 'a'.repeat(64);

function codeOf(value: unknown): string {
  return errorCode(() => parseModelManifest(value));
}

describe('parseModelManifest', () => {
  it('parses a full manifest and keeps only known fields', () => {
    const manifest = parseModelManifest({
      name: 'det',
      version: '1',
      url: '/models/det.onnx',
      bytes: 4_745_517,
      sha256,
      inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 3, '?', '?'] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: ['batch', 1, '?', '?'] }],
      placement: { prefer: 'local', minBackend: 'wasm' },
      extra: 'ignored',
    });
    expect(manifest).toEqual({
      name: 'det',
      version: '1',
      url: '/models/det.onnx',
      bytes: 4_745_517,
      sha256,
      inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 3, '?', '?'] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: ['batch', 1, '?', '?'] }],
      placement: { prefer: 'local', minBackend: 'wasm' },
    });
  });

  it('accepts a remote-only manifest with just a name', () => {
    expect(parseModelManifest({ name: 'rec' })).toEqual({ name: 'rec' });
  });

  it('rejects bad manifests with E_INVALID_ARGUMENT', () => {
    for (const bad of [
      null,
      {},
      { name: '' },
      { name: 'm', url: '/m.onnx' },
      { name: 'm', url: '/m.onnx', bytes: 10 },
      { name: 'm', url: '/m.onnx', bytes: 10, sha256: 'ABC' },
      { name: 'm', url: '/m.onnx', bytes: -1, sha256 },
      { name: 'm', inputs: [{ name: 'x', dtype: 'complex', dims: [] }] },
      { name: 'm', inputs: [{ name: 'x', dtype: 'float32', dims: [-1] }] },
      { name: 'm', placement: { minBackend: 'webgl' } },
      { name: 'm', placement: { prefer: 'cloud' } },
    ]) {
      expect(codeOf(bad), JSON.stringify(bad)).toBe('E_INVALID_ARGUMENT');
    }
  });
});

describe('parseModelManifest: external data', () => {
  const base = { name: 'llm', url: '/llm.onnx', bytes: 300, sha256 };
  const file = (path: string) => ({ path, url: `/files/${path}`, bytes: 5_000_000_000, sha256 });

  it('keeps the files of weights stored outside the .onnx, by their relative locations', () => {
    const files = [file('model.onnx.data'), file('weights/part-1.bin')];
    expect(parseModelManifest({ ...base, externalData: files })).toEqual({
      ...base,
      externalData: files,
    });
    expect(parseModelManifest({ ...base, externalData: [] })).toEqual(base);
  });

  it('rejects locations outside the model folder, bad files, and external data without a url', () => {
    for (const path of [
      '../x.bin',
      '/abs.bin',
      'a/../../x',
      './x.bin',
      'a//b',
      'a\\b',
      'C:x.bin',
      '',
      'dir/',
    ]) {
      expect(codeOf({ ...base, externalData: [file(path)] }), path).toBe('E_INVALID_ARGUMENT');
    }
    for (const bad of [
      { ...file('w.bin'), sha256: 'nope' },
      { ...file('w.bin'), bytes: -1 },
      { path: 'w.bin', bytes: 1, sha256 },
      'w.bin',
    ]) {
      expect(codeOf({ ...base, externalData: [bad] }), JSON.stringify(bad)).toBe(
        'E_INVALID_ARGUMENT',
      );
    }
    expect(codeOf({ name: 'llm', externalData: [file('w.bin')] })).toBe('E_INVALID_ARGUMENT');
  });
});

describe('isBackend', () => {
  it('knows every backend, the browser ones among them, and nothing else', () => {
    for (const backend of BACKENDS) expect(isBackend(backend)).toBe(true);
    for (const backend of LOCAL_BACKENDS) expect(BACKENDS).toContain(backend);
    for (const other of ['CPU', 'gpu', '', 1, null, undefined, ['cpu']])
      expect(isBackend(other)).toBe(false);
  });
});
