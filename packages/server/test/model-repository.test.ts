import { mkdirSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildMlpClassifier, buildTinyModel, writeModelFile } from '@tandem/test-support';
import { DEFAULT_MODEL_CONFIG } from '../src/model-config.js';
import { ModelRepository, type ModelEntry } from '../src/model-repository.js';
import { tempDir, writeModelConfig } from './server-fixtures.js';
import { errorCode as codeOf } from '@tandem/test-support';

const model = buildTinyModel().bytes;

/**
 * Waits until the filesystem's clock has passed `ctimeMs` (it ticks in steps of a few ms): a
 * change made after it gets a later ctime. A bounded poll on that clock, touching a scratch file.
 */
function untilFileClockPasses(ctimeMs: number): void {
  const probe = join(dir, '.clock');
  for (let i = 0; i < 100_000; i++) {
    writeFileSync(probe, '');
    if (statSync(probe).ctimeMs > ctimeMs) return;
  }
  throw new Error('the filesystem clock did not move');
}

let dir: string;
let remove: () => void;

beforeEach(() => {
  ({ dir, remove } = tempDir('repository'));
});

afterEach(() => {
  vi.useRealTimers();
  remove();
});

describe('ModelRepository', () => {
  it('finds every version and picks the latest numerically, or naturally', async () => {
    for (const version of ['1', '2', '10']) await writeModelFile(dir, 'mlp', version, model);
    for (const version of ['v2', 'v10']) await writeModelFile(dir, 'named', version, model);
    const path = await writeModelFile(dir, 'solo', 3, model);
    const repository = new ModelRepository({ dir });
    const versions = (name: string) =>
      repository.entries.filter((entry) => entry.name === name).map((entry) => entry.version);
    expect(versions('mlp').sort()).toEqual(['1', '10', '2']);
    expect(repository.find('mlp')!.version).toBe('10');
    expect(repository.find('mlp', '2')!.version).toBe('2');
    expect(repository.find('named')!.version).toBe('v10');
    const stats = statSync(path);
    const folder = statSync(dirname(path));
    expect(repository.get('solo')).toEqual({
      name: 'solo',
      version: '3',
      path,
      bytes: stats.size,
      config: DEFAULT_MODEL_CONFIG,
      source: 'repository',
      stamp: `${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino} - ${folder.mtimeMs}:${folder.ctimeMs}:${folder.ino}`,
    });
  });

  it('stamps an entry with its files: a rewrite, a rename over it, a model.json edit or a weights file renamed in changes it', async () => {
    const path = await writeModelFile(dir, 'm', 1, model);
    const repository = new ModelRepository({ dir });
    const stamps = [repository.get('m').stamp];
    const rescan = (): void => {
      repository.scan();
      stamps.push(repository.get('m').stamp);
    };
    rescan(); // nothing changed
    // Rewritten in place with the same bytes and size, a second later.
    writeFileSync(path, model);
    utimesSync(path, new Date(Date.now() + 1000), new Date(Date.now() + 1000));
    rescan();
    // A new file renamed over it, its times set back to the old file's: only the inode differs.
    const before = statSync(path);
    writeFileSync(`${path}.new`, model);
    utimesSync(`${path}.new`, before.atime, before.mtime);
    renameSync(`${path}.new`, path);
    rescan();
    writeModelConfig(dir, 'm', 1, { maxBatch: 4 });
    rescan();
    writeModelConfig(dir, 'm', 1, { maxBatch: 8 });
    utimesSync(join(dir, 'm', '1', 'model.json'), new Date(), new Date(Date.now() + 2000));
    rescan();
    // External data replaced the safe way: a new file renamed over the old, in the version folder.
    const folder = join(dir, 'm', '1');
    writeFileSync(join(folder, 'weights.bin'), new Uint8Array(8));
    rescan();
    writeFileSync(join(folder, 'weights.bin.tmp'), new Uint8Array(8));
    utimesSync(folder, new Date(), new Date(Date.now() + 3000));
    renameSync(join(folder, 'weights.bin.tmp'), join(folder, 'weights.bin'));
    utimesSync(folder, new Date(), new Date(Date.now() + 4000));
    rescan();
    expect(stamps[1]).toBe(stamps[0]);
    expect(new Set(stamps.slice(1)).size).toBe(7);
    expect(stamps.every((stamp) => typeof stamp === 'string')).toBe(true);
  });

  it('notices model.onnx and model.json rewritten in place with their size and times kept (cp -p, rsync --inplace)', async () => {
    // Two models of one size: retrained weights of one architecture.
    const v1 = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 1 }).bytes;
    const v2 = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 2 }).bytes;
    expect(v2.length).toBe(v1.length);
    const path = await writeModelFile(dir, 'm', 1, v1);
    const configPath = join(dir, 'm', '1', 'model.json');
    writeModelConfig(dir, 'm', 1, { maxBatch: 4 });
    // Whole seconds, so that setting them again restores them exactly.
    const kept = new Date('2026-01-02T03:04:05Z');
    for (const file of [path, configPath]) utimesSync(file, kept, kept);
    const repository = new ModelRepository({ dir });
    const stamps = [repository.get('m').stamp];
    const before = { onnx: statSync(path), json: statSync(configPath) };
    const rewrite = (file: string, bytes: Uint8Array | string): void => {
      untilFileClockPasses(statSync(file).ctimeMs);
      writeFileSync(file, bytes); // same inode: truncated and written again
      utimesSync(file, kept, kept);
      repository.scan();
      stamps.push(repository.get('m').stamp);
    };
    rewrite(path, v2);
    rewrite(configPath, JSON.stringify({ maxBatch: 8 }));
    // Size, modification time and inode are all as before: only the contents changed.
    for (const [file, old] of [
      [path, before.onnx],
      [configPath, before.json],
    ] as const) {
      const now = statSync(file);
      expect([now.size, now.mtimeMs, now.ino], file).toEqual([old.size, old.mtimeMs, old.ino]);
    }
    expect(new Set(stamps).size).toBe(3);
    expect(repository.get('m').config.maxBatch).toBe(8);
  });

  it('ignores names and versions with characters that do not belong in URLs and labels', async () => {
    for (const name of ['bad name', '.hidden', '-dash', 'ok'])
      await writeModelFile(dir, name, 1, model);
    await writeModelFile(dir, 'ok', 'bad version', model);
    await writeModelFile(dir, 'ok', '..dots', model);
    mkdirSync(join(dir, 'empty', '1'), { recursive: true }); // no model.onnx
    writeFileSync(join(dir, 'loose.onnx'), model); // not in a version directory
    writeFileSync(join(dir, 'ok', 'file'), 'not a directory');
    const repository = new ModelRepository({ dir });
    expect(repository.entries.map((entry) => `${entry.name}@${entry.version}`)).toEqual(['ok@1']);
  });

  it('reads model.json and reports a broken one as configError, keeping the model listed', async () => {
    await writeModelFile(dir, 'tuned', 1, model);
    writeModelConfig(dir, 'tuned', 1, { maxBatch: 8, minReady: 1 });
    await writeModelFile(dir, 'invalid', 1, model);
    writeModelConfig(dir, 'invalid', 1, { maxBatch: 0 });
    await writeModelFile(dir, 'garbled', 1, model);
    writeFileSync(join(dir, 'garbled', '1', 'model.json'), '{ not json');
    const repository = new ModelRepository({ dir });
    expect(repository.get('tuned').config).toMatchObject({ maxBatch: 8, minReady: 1 });
    expect(repository.get('tuned').configError).toBeUndefined();
    for (const name of ['invalid', 'garbled']) {
      const entry = repository.get(name);
      expect(typeof entry.configError, name).toBe('string');
      expect(entry.config).toEqual(DEFAULT_MODEL_CONFIG);
    }
    expect(repository.get('invalid').configError).toContain('maxBatch');
  });

  it('lets repository models override catalog entries of the same name', async () => {
    const catalogEntry = (name: string): ModelEntry => ({
      name,
      version: 'catalog',
      path: '/nowhere/model.onnx',
      bytes: 1,
      config: DEFAULT_MODEL_CONFIG,
      source: 'catalog',
    });
    await writeModelFile(dir, 'shared', 1, model);
    const repository = new ModelRepository({
      dir,
      catalog: [catalogEntry('shared'), catalogEntry('builtin')],
    });
    expect(repository.get('shared').source).toBe('repository');
    expect(repository.find('shared', 'catalog')).toBeUndefined();
    expect(repository.get('builtin').source).toBe('catalog');
    expect(new ModelRepository({ catalog: [catalogEntry('builtin')] }).entries).toHaveLength(1);
    expect(new ModelRepository({ dir: join(dir, 'missing') }).entries).toEqual([]);
  });

  it('answers an unknown model or version with E_MODEL_NOT_FOUND', async () => {
    await writeModelFile(dir, 'mlp', 1, model);
    const repository = new ModelRepository({ dir });
    expect(codeOf(() => repository.get('nope'))).toBe('E_MODEL_NOT_FOUND');
    expect(codeOf(() => repository.get('mlp', '2'))).toBe('E_MODEL_NOT_FOUND');
  });

  it('finds a model or version copied in later: on scan(), and on a lookup or listing at most once a second', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const repository = new ModelRepository({ dir });
    expect(repository.entries).toEqual([]);
    await writeModelFile(dir, 'late', 1, model);
    // Within a second of the last scan a miss does not rescan (a flood of bad names stays cheap).
    vi.advanceTimersByTime(500);
    expect(repository.find('late')).toBeUndefined();
    vi.advanceTimersByTime(600);
    expect(repository.find('late')!.version).toBe('1');
    await writeModelFile(dir, 'late', 2, model);
    expect(repository.find('late')!.version).toBe('1'); // scanned under a second ago
    vi.advanceTimersByTime(1000);
    expect(repository.find('late')!.version).toBe('2'); // the new version is the latest now
    await writeModelFile(dir, 'later', 1, model);
    expect(repository.entries.map((entry) => entry.name)).not.toContain('later');
    vi.advanceTimersByTime(1000);
    expect(repository.entries.map((entry) => entry.name)).toContain('later');
    await writeModelFile(dir, 'latest', 1, model);
    expect(repository.scan().map((entry) => entry.name)).toContain('latest');
  });
});
