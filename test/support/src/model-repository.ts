// Writes models in the server's repository layout, `<dir>/<name>/<version>/model.onnx`, so tests
// can point a server at a temporary directory of synthetic models.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** File name of a model inside its version directory. */
export const MODEL_FILE_NAME = 'model.onnx';

function expectPathSegment(value: string, what: string): void {
  // One directory level each: a name like '../x' would write outside the repository.
  if (value.length === 0 || value === '.' || value === '..' || /[/\\]/.test(value)) {
    throw new RangeError(`${what} must be a single path segment, got '${value}'`);
  }
}

/**
 * Writes `bytes` to `<dir>/<name>/<version>/model.onnx`, creating directories as needed, and
 * resolves to the file's path. `name` and `version` must each be a single path segment.
 */
export async function writeModelFile(
  dir: string,
  name: string,
  version: number | string,
  bytes: Uint8Array,
): Promise<string> {
  const versionSegment = String(version);
  expectPathSegment(name, 'model name');
  expectPathSegment(versionSegment, 'model version');
  const versionDir = join(dir, name, versionSegment);
  await mkdir(versionDir, { recursive: true });
  const path = join(versionDir, MODEL_FILE_NAME);
  await writeFile(path, bytes);
  return path;
}
