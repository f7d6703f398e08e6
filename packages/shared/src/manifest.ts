// Model manifests: what a client knows about a model before it downloads a byte (file size and hash,
// inputs and outputs, where it prefers to run), and the placement policies the router understands.

import {
  at,
  expectArray,
  expectInteger,
  expectOneOf,
  expectRecord,
  expectString,
  optional,
  type ParseContext,
} from './assert.js';
import { MAX_NAME_CHARS, type Where } from './progress.js';
import { TandemError } from './tandem-error.js';
import { TENSOR_DTYPES, type TensorDtype } from './tensor.js';

/** Where a call may run: the router's policy, per client or per call. */
export type Placement = 'auto' | 'prefer-local' | 'prefer-remote' | 'local-only' | 'remote-only';

/** Every {@link Placement}. */
export const PLACEMENTS: readonly Placement[] = [
  'auto',
  'prefer-local',
  'prefer-remote',
  'local-only',
  'remote-only',
];

/** Backends a browser can run a model on, weakest first. */
export const LOCAL_BACKENDS = ['wasm', 'webgpu'] as const;
/** A backend a browser can run a model on. */
export type LocalBackend = (typeof LOCAL_BACKENDS)[number];

/** The execution backend that ran a job: browser backends and onnxruntime execution providers. */
export type Backend = LocalBackend | 'webnn' | 'cpu' | 'cuda' | 'tensorrt' | 'coreml' | 'dml';

/** Every {@link Backend}: what a result from a server may name. */
export const BACKENDS: readonly Backend[] = [
  'wasm',
  'webgpu',
  'webnn',
  'cpu',
  'cuda',
  'tensorrt',
  'coreml',
  'dml',
];

/** True when `value` names a {@link Backend}. */
export function isBackend(value: unknown): value is Backend {
  return typeof value === 'string' && (BACKENDS as readonly string[]).includes(value);
}

/**
 * One dimension of a model input or output: a fixed size, or a symbolic name for a dimension that
 * varies (`'batch'`, or `'?'` when the model leaves it unnamed).
 */
export type DimSpec = number | string;

/** A model input or output as the model declares it. */
export interface TensorSpec {
  /** The input or output name: its key in a {@link TensorMap}. */
  readonly name: string;
  /** The element type declared; the server refuses an input of another with `E_INPUT_DTYPE`. */
  readonly dtype: TensorDtype;
  /** The declared shape; absent when the model declares none (any rank is accepted). */
  readonly dims?: readonly DimSpec[];
}

/** Hints that steer the router for one model. */
export interface PlacementHints {
  /** The side this model runs best on when both are possible. */
  readonly prefer?: Where;
  /** The weakest local backend the model is usable on; a device without it sends the model remote. */
  readonly minBackend?: LocalBackend;
}

/**
 * A file of weights stored outside the `.onnx` file (ONNX external data, as exporters write models
 * past protobuf's 2 GiB limit), downloaded beside it for a local run.
 */
export interface ExternalDataFile {
  /**
   * The location the model names the file by: a relative path (`model.onnx.data`,
   * `weights/part-1.bin`), what onnxruntime-web's `externalData[].path` must match.
   */
  readonly path: string;
  /** Where the file is downloaded from. */
  readonly url: string;
  /** Its size in bytes, counted in the download's byte total before the first byte. */
  readonly bytes: number;
  /** Lower-case hex sha256 of the file, checked after download. */
  readonly sha256: string;
}

/** What a client knows about a model before downloading it. */
export interface ModelManifest {
  /** The model's name: the server's name for it (`infer.model`), and part of local cache keys. */
  readonly name: string;
  /** The version to run; when absent, the server's latest (highest). A server's manifest always names one. */
  readonly version?: string;
  /** Where the `.onnx` file is downloaded from, for local runs. */
  readonly url?: string;
  /**
   * Size of the `.onnx` file in bytes, known before the first byte. Required with `url`. A local
   * run downloads this plus the bytes of every {@link ModelManifest.externalData} file.
   */
  readonly bytes?: number;
  /** Lower-case hex sha256 of the file, checked after download. Required with `url`. */
  readonly sha256?: string;
  /** The model's external data files, each downloaded beside the `.onnx` for a local run. */
  readonly externalData?: readonly ExternalDataFile[];
  /** The inputs the model declares, for information: the server checks inputs against its own copy. */
  readonly inputs?: readonly TensorSpec[];
  /** The outputs the model declares, for information. */
  readonly outputs?: readonly TensorSpec[];
  /**
   * Hints for the router. Without them any local backend will do, and `auto` tries this device
   * first until it has estimates.
   */
  readonly placement?: PlacementHints;
}

/** Largest number of inputs or outputs a manifest may list. */
const MAX_TENSOR_SPECS = 4096;
/** Highest rank a tensor may have. */
export const MAX_TENSOR_RANK = 32;
/** Largest file a manifest may describe: 64 GiB, in bytes. */
const MAX_MODEL_BYTES = 64 * 1024 ** 3;
/** Most external data files a manifest may list. */
const MAX_EXTERNAL_DATA_FILES = 4096;
/** Longest external data location, in UTF-16 code units. */
const MAX_EXTERNAL_DATA_PATH_CHARS = 1024;

/**
 * Parses a manifest from JSON or app code. Failures are `E_INVALID_ARGUMENT` naming the bad field.
 */
export function parseModelManifest(value: unknown, path = 'manifest'): ModelManifest {
  const ctx: ParseContext = { path, code: 'E_INVALID_ARGUMENT' };
  const record = expectRecord(value, ctx);
  const manifest: {
    -readonly [K in keyof ModelManifest]: ModelManifest[K];
  } = { name: expectString(record.name, at(ctx, 'name'), MAX_NAME_CHARS) };
  const version = optional(record.version, at(ctx, 'version'), (v, c) =>
    expectString(v, c, MAX_NAME_CHARS),
  );
  if (version !== undefined) manifest.version = version;
  if (record.url !== undefined) {
    manifest.url = expectString(record.url, at(ctx, 'url'), 8192);
    manifest.bytes = expectInteger(record.bytes, at(ctx, 'bytes'), 1, MAX_MODEL_BYTES);
    manifest.sha256 = expectSha256(record.sha256, at(ctx, 'sha256'));
    const externalData = optional(record.externalData, at(ctx, 'externalData'), (v, c) =>
      expectArray(v, c, MAX_EXTERNAL_DATA_FILES).map((item, index) =>
        parseExternalDataFile(item, at(c, index)),
      ),
    );
    if (externalData !== undefined && externalData.length > 0) manifest.externalData = externalData;
  } else if (record.externalData !== undefined) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `${path}.externalData: only a manifest with a url (a model to download) has external data`,
    );
  }
  const inputs = optional(record.inputs, at(ctx, 'inputs'), parseTensorSpecs);
  const outputs = optional(record.outputs, at(ctx, 'outputs'), parseTensorSpecs);
  if (inputs !== undefined) manifest.inputs = inputs;
  if (outputs !== undefined) manifest.outputs = outputs;
  const placement = optional(record.placement, at(ctx, 'placement'), parsePlacementHints);
  if (placement !== undefined) manifest.placement = placement;
  return manifest;
}

function expectSha256(value: unknown, ctx: ParseContext): string {
  const sha = expectString(value, ctx, 64);
  if (!/^[0-9a-f]{64}$/.test(sha)) {
    throw new TandemError('E_INVALID_ARGUMENT', `${ctx.path}: expected 64 lower-case hex digits`);
  }
  return sha;
}

/**
 * One external data file. Its path must stay inside the model's folder: relative, `/`-separated,
 * no `.` or `..` segments (a manifest from elsewhere must not make a client name files outside).
 */
function parseExternalDataFile(value: unknown, ctx: ParseContext): ExternalDataFile {
  const record = expectRecord(value, ctx);
  const path = expectString(record.path, at(ctx, 'path'), MAX_EXTERNAL_DATA_PATH_CHARS);
  const segments = path.split('/');
  if (
    path.includes('\\') ||
    path.includes(':') ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw new TandemError(
      'E_INVALID_ARGUMENT',
      `${ctx.path}.path: "${path}" must be a relative path inside the model's folder (no "..", "." or empty segments, no "\\" or ":")`,
    );
  }
  return {
    path,
    url: expectString(record.url, at(ctx, 'url'), 8192),
    bytes: expectInteger(record.bytes, at(ctx, 'bytes'), 0, MAX_MODEL_BYTES),
    sha256: expectSha256(record.sha256, at(ctx, 'sha256')),
  };
}

/** Parses placement hints (from a manifest or a server's model.json). */
export function parsePlacementHints(value: unknown, ctx: ParseContext): PlacementHints {
  const hints = expectRecord(value, ctx);
  const placement: { prefer?: Where; minBackend?: LocalBackend } = {};
  const prefer = optional(hints.prefer, at(ctx, 'prefer'), (v, c) =>
    expectOneOf(v, c, ['local', 'remote'] as const),
  );
  const minBackend = optional(hints.minBackend, at(ctx, 'minBackend'), (v, c) =>
    expectOneOf(v, c, LOCAL_BACKENDS),
  );
  if (prefer !== undefined) placement.prefer = prefer;
  if (minBackend !== undefined) placement.minBackend = minBackend;
  return placement;
}

/** Parses a list of input or output specs. */
export function parseTensorSpecs(value: unknown, ctx: ParseContext): TensorSpec[] {
  return expectArray(value, ctx, MAX_TENSOR_SPECS).map((item, index) => {
    const itemCtx = at(ctx, index);
    const record = expectRecord(item, itemCtx);
    const spec: TensorSpec = {
      name: expectString(record.name, at(itemCtx, 'name'), MAX_NAME_CHARS),
      dtype: expectOneOf(record.dtype, at(itemCtx, 'dtype'), TENSOR_DTYPES),
    };
    if (record.dims === undefined) return spec;
    const dims = expectArray(record.dims, at(itemCtx, 'dims'), MAX_TENSOR_RANK).map((dim, d) =>
      typeof dim === 'string'
        ? expectString(dim, at(at(itemCtx, 'dims'), d), MAX_NAME_CHARS)
        : expectInteger(dim, at(at(itemCtx, 'dims'), d), 0, 2 ** 32 - 1),
    );
    return { ...spec, dims };
  });
}
