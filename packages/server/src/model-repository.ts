// The model repository: DIR/<name>/<version>/model.onnx with an optional model.json beside it, plus
// a built-in catalog. Nothing is hard-coded per model: a file dropped into DIR is found on the next
// scan. Any lookup or listing rescans first when the last scan is a second old (a version copied
// in becomes the latest, a new model shows in /v1/models), so no watcher is needed: fs.watch misses
// changes on the network volumes models often live on.

import { existsSync, readFileSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { TandemError, compareVersions } from '@tandem/shared';
import { DEFAULT_MODEL_CONFIG, parseModelConfig, type ModelConfig } from './model-config.js';

/** One servable model version. */
export interface ModelEntry {
  /** The model's name: its folder in the repository, or its catalog name. */
  readonly name: string;
  /** The version folder's name; the latest sorts last ("9" < "10", "v2" < "v10"). */
  readonly version: string;
  /** Path of the .onnx file. */
  readonly path: string;
  /** Size of model.onnx in bytes (the model host adds its external data files: ModelHost.bytes). */
  readonly bytes: number;
  /** model.json read and checked, defaults filled in (the defaults alone when there is none). */
  readonly config: ModelConfig;
  /** Why model.json could not be used; such a model is reported failed. */
  readonly configError?: string;
  /** Where it came from: the `--models` folder, or the built-in catalog of npm-packaged models. */
  readonly source: 'repository' | 'catalog';
  /**
   * The sizes, modification and change times and inodes of model.onnx and model.json, and the
   * version folder's (it changes when external data files are added, removed or renamed), when
   * scanned. An entry with another stamp than the one a model was loaded from means its files
   * were replaced or its model.json edited (or a copy still in progress was read). Absent for
   * catalog entries: their files ship in an npm package and do not change while the server runs.
   */
  readonly stamp?: string;
}

/** Names and versions allowed in the repository (they end up in URLs and metrics labels). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Fewest milliseconds between two rescans triggered by lookups and listings. */
const RESCAN_INTERVAL_MS = 1000;

/**
 * Refuses a model repository folder that is not there (a typo in `--models`), with
 * E_INVALID_ARGUMENT: a server started on it would serve none of the models meant for it, with no
 * word why. A folder that goes away later only empties the listing (see {@link ModelRepository}).
 */
export function checkModelsDir(dir: string): void {
  if (!isDirectory(dir))
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `the model repository ${dir} is not a folder (expected ${dir}/<name>/<version>/model.onnx)`,
    );
}

/** Finds models in a directory and a catalog. */
export class ModelRepository {
  readonly #dir: string | undefined;
  readonly #catalog: readonly ModelEntry[];
  #entries: ModelEntry[] = [];
  #lastScanAt = 0;

  constructor(options: { dir?: string | undefined; catalog?: readonly ModelEntry[] }) {
    this.#dir = options.dir;
    this.#catalog = options.catalog ?? [];
    this.scan();
  }

  /**
   * Every model version, repository entries overriding catalog ones of the same name (rescanned
   * first when the last scan is a second old).
   */
  get entries(): readonly ModelEntry[] {
    this.#rescanIfStale();
    return this.#entries;
  }

  /** Re-reads the directory. */
  scan(): readonly ModelEntry[] {
    this.#lastScanAt = Date.now();
    const found = this.#dir === undefined ? [] : scanDirectory(this.#dir);
    const names = new Set(found.map((entry) => entry.name));
    this.#entries = [...this.#catalog.filter((entry) => !names.has(entry.name)), ...found];
    return this.#entries;
  }

  /**
   * The entry for `name` at `version`, or its latest version. Rescans first (at most once a
   * second), so a model or version copied in while the server runs is found. A scan of a few
   * models costs a fraction of a millisecond; a flood of lookups costs one a second.
   */
  find(name: string, version?: string): ModelEntry | undefined {
    this.#rescanIfStale();
    return this.#lookup(name, version);
  }

  /** Like {@link find}, but throws `E_MODEL_NOT_FOUND`. */
  get(name: string, version?: string): ModelEntry {
    const entry = this.find(name, version);
    if (entry === undefined) {
      throw new TandemError(
        'E_MODEL_NOT_FOUND',
        version === undefined
          ? `no model named "${name}"`
          : `model "${name}" has no version "${version}"`,
      );
    }
    return entry;
  }

  #rescanIfStale(): void {
    if (this.#dir !== undefined && Date.now() - this.#lastScanAt >= RESCAN_INTERVAL_MS) this.scan();
  }

  #lookup(name: string, version: string | undefined): ModelEntry | undefined {
    const versions = this.#entries.filter((entry) => entry.name === name);
    if (version !== undefined) return versions.find((entry) => entry.version === version);
    return versions.sort((a, b) => compareVersions(b.version, a.version))[0];
  }
}

function scanDirectory(dir: string): ModelEntry[] {
  if (!existsSync(dir)) return [];
  const entries: ModelEntry[] = [];
  for (const name of safeList(dir)) {
    if (!NAME_PATTERN.test(name) || !isDirectory(join(dir, name))) continue;
    for (const version of safeList(join(dir, name))) {
      const versionDir = join(dir, name, version);
      const path = join(versionDir, 'model.onnx');
      if (!NAME_PATTERN.test(version)) continue;
      const file = statOrUndefined(path);
      if (file === undefined || !file.isFile()) continue;
      let config = DEFAULT_MODEL_CONFIG;
      let configError: string | undefined;
      const configPath = join(versionDir, 'model.json');
      const configFile = statOrUndefined(configPath);
      if (configFile !== undefined) {
        try {
          config = parseModelConfig(
            JSON.parse(readFileSync(configPath, 'utf8')),
            `${name}/${version}/model.json`,
          );
        } catch (error) {
          configError = error instanceof Error ? error.message : String(error);
        }
      }
      const entry = {
        name,
        version,
        path,
        bytes: file.size,
        config,
        source: 'repository' as const,
        stamp: `${stampOf(file)} ${configFile === undefined ? '-' : stampOf(configFile)} ${folderStamp(versionDir)}`,
      };
      entries.push(configError === undefined ? entry : { ...entry, configError });
    }
  }
  return entries;
}

/**
 * The version folder's own stamp: it changes when a file is added, removed or renamed in it (the
 * safe way to replace external data: write the new file under a temporary name, rename it over
 * the old), for one stat however many weight files the folder holds; with its ctime, even when
 * a copy sets the folder's mtime back (rsync -a). A file rewritten in place, or one in a
 * subfolder, does not change it.
 */
function folderStamp(versionDir: string): string {
  const stats = statOrUndefined(versionDir);
  return stats === undefined ? '-' : `${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** A file's stats, or undefined when it does not exist (or vanished since it was listed). */
function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Size, modification time, change time and inode: a file rewritten in place changes its ctime
 * (and mostly its size or mtime), one renamed over the old (the safe way to replace a file) the
 * inode. The ctime is what no tool can set back: `cp -p` or `rsync --inplace -t` rewriting a
 * file of the same size in place restore its mtime, and the utimes call that does so is itself
 * a change. It comes with the same stat, so the rescan costs nothing more.
 */
function stampOf(stats: Stats): string {
  return `${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
