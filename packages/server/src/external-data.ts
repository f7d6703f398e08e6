// A model's external data files: weights stored beside the .onnx instead of inside it (exporters do
// this for models past protobuf's 2 GiB limit, so most large models come this way). onnxruntime-node
// reads them itself from the model's directory; the server needs them to count a model's real size
// (the memory budget, the inline-session limit, a browser's download total) and to serve them to
// browsers that run the model locally. A location that leaves the model's directory or names no
// file makes the model fail with a reason, like a corrupt file, before anything loads it.

import { statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
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

/**
 * Resolves the external data locations a model references (see OnnxMetadata.externalData) against
 * its directory. Throws `E_MODEL_LOAD_FAILED` for a location outside that directory (absolute, or
 * through `..`) or one that is not a file.
 */
export function resolveExternalData(
  modelPath: string,
  locations: readonly string[],
): ExternalDataOnDisk[] {
  const dir = dirname(resolve(modelPath));
  return locations.map((location) => {
    const path = resolve(dir, location);
    const inside = relative(dir, path);
    if (
      isAbsolute(location) ||
      inside === '' ||
      inside === '..' ||
      inside.startsWith(`..${sep}`) ||
      isAbsolute(inside)
    ) {
      throw new TandemError(
        'E_MODEL_LOAD_FAILED',
        `external data "${location}" is outside the model's directory`,
      );
    }
    let bytes: number;
    try {
      const stats = statSync(path);
      if (!stats.isFile()) throw new Error('not a file');
      bytes = stats.size;
    } catch {
      throw new TandemError(
        'E_MODEL_LOAD_FAILED',
        `external data file "${location}" (beside model.onnx) is missing`,
      );
    }
    return { location, path, bytes };
  });
}
