// A model's external data files: weights stored beside the .onnx instead of inside it (exporters do
// this for models past protobuf's 2 GiB limit, so most large models come this way). onnxruntime-node
// reads them itself from the model's directory; the server needs them to count a model's real size
// (the memory budget, the inline-session limit, a browser's download total) and to serve them to
// browsers that run the model locally. A location that leaves the model's directory or names no
// file makes the model fail with a reason, like a corrupt file, before anything loads it.

import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { TandemError } from '@tandem/shared';

/** One external data file of a model. */
export interface ExternalDataOnDisk {
  /** The location as the model writes it: a path relative to the model's directory. */
  readonly location: string;
  /** Its path on disk. */
  readonly path: string;
  /** Its size in bytes. */
  readonly bytes: number;
}

/** Files of the version folder that are never a model's external data. */
const RESERVED = new Set(['model.onnx', 'model.json']);

/** Whether `path` is `dir` itself or lies outside it (both absolute, resolved). */
function outside(dir: string, path: string): boolean {
  const inside = relative(dir, path);
  return inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside);
}

/**
 * Resolves the external data locations a model references (see OnnxMetadata.externalData) against
 * its directory. Throws `E_MODEL_LOAD_FAILED` for a location outside that directory (absolute,
 * through `..`, or through a symbolic link that leads out of it), one that is not a file, and
 * model.onnx or model.json themselves.
 */
export function resolveExternalData(
  modelPath: string,
  locations: readonly string[],
): ExternalDataOnDisk[] {
  const dir = dirname(resolve(modelPath));
  let realDir: string | undefined;
  return locations.map((location) => {
    const path = resolve(dir, location);
    const escapes = (): TandemError =>
      new TandemError(
        'E_MODEL_LOAD_FAILED',
        `external data "${location}" is outside the model's directory`,
      );
    if (isAbsolute(location) || outside(dir, path)) throw escapes();
    if (dirname(path) === dir && RESERVED.has(basename(path))) {
      throw new TandemError(
        'E_MODEL_LOAD_FAILED',
        `external data "${location}" names the model's own ${basename(path)}`,
      );
    }
    let real: string;
    let bytes: number;
    try {
      real = realpathSync(path);
      const stats = statSync(real);
      if (!stats.isFile()) throw new Error('not a file');
      bytes = stats.size;
    } catch {
      throw new TandemError(
        'E_MODEL_LOAD_FAILED',
        `external data file "${location}" (beside model.onnx) is missing`,
      );
    }
    // The text of the path stays inside; a symbolic link on the way may not. What the files
    // route serves is the link's target, so the target is what must be inside.
    realDir ??= realpathSync(dir);
    if (outside(realDir, real)) throw escapes();
    return { location, path, bytes };
  });
}
