// The only module that talks to onnxruntime-node: creating sessions, running them, and converting
// tensors between the wire form and onnxruntime's without copying data.

import { dirname, sep } from 'node:path';
import * as ort from 'onnxruntime-node';
import { TandemError, type Backend, type Tensor, type TensorMap } from '@tandem/shared';

/** The onnxruntime-node execution providers the server can be configured with. */
export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'dml', 'coreml'] as const;

/** Session options the server passes through to onnxruntime-node. */
export interface SessionSettings {
  /**
   * Execution providers in order of preference; one this machine cannot start is skipped for the
   * next (see {@link createSession}). @default ['cpu']
   */
  readonly executionProviders?: readonly (typeof EXECUTION_PROVIDERS)[number][];
  /** Threads used within one operator; 0 lets onnxruntime choose. @default 0 */
  readonly intraOpNumThreads?: number;
}

/** An execution provider the server was configured with. */
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** A configured execution provider this machine could not start, and why. */
export interface SkippedProvider {
  readonly provider: ExecutionProvider;
  readonly reason: string;
}

/** A loaded model instance's session. */
export interface LoadedSession {
  readonly session: ort.InferenceSession;
  /** The execution provider that runs it: the first configured one that started. */
  readonly backend: Backend;
  /** Configured providers before `backend` that this machine could not start. */
  readonly skipped: readonly SkippedProvider[];
}

/**
 * Creates a session from a model file on the first configured execution provider that starts
 * here. A provider this build of onnxruntime-node lacks (DirectML off Windows) or whose library
 * fails to load (CUDA without the CUDA build or its drivers) is skipped for the next one and
 * reported in `skipped`, so `['cuda', 'cpu']` serves on CPU where there is no GPU and the result
 * names the provider that really ran. Failures are `E_MODEL_LOAD_FAILED` with onnxruntime's reason.
 */
export async function createSession(
  path: string,
  settings: SessionSettings = {},
): Promise<LoadedSession> {
  const skipped: SkippedProvider[] = [];
  const built = new Set(ort.listSupportedBackends().map((backend) => backend.name));
  // onnxruntime would drop a provider it lacks with a console warning, and still report nothing.
  const providers = (settings.executionProviders ?? ['cpu']).filter((provider) => {
    if (built.has(provider)) return true;
    skipped.push({ provider, reason: 'not in this build of onnxruntime-node' });
    return false;
  });
  for (let first = 0; first < providers.length; first++) {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: providers.slice(first),
      graphOptimizationLevel: 'all',
    };
    if (settings.intraOpNumThreads !== undefined && settings.intraOpNumThreads > 0) {
      options.intraOpNumThreads = settings.intraOpNumThreads;
    }
    try {
      const session = await ort.InferenceSession.create(path, options);
      return { session, backend: providers[first] as ExecutionProvider, skipped };
    } catch (error) {
      // Only a provider that failed to start moves on; a bad model fails on every provider.
      // onnxruntime names the model by the path it was given ("Load model from /srv/models/…
      // failed"), and the reason reaches clients: the server's directories are not theirs to see.
      const why = withoutDir(reason(error), path);
      if (first + 1 < providers.length && PROVIDER_START_FAILURE.test(why)) {
        skipped.push({ provider: providers[first] as ExecutionProvider, reason: why });
        continue;
      }
      throw new TandemError('E_MODEL_LOAD_FAILED', `onnxruntime could not load the model: ${why}`, {
        cause: error,
      });
    }
  }
  throw new TandemError(
    'E_MODEL_LOAD_FAILED',
    `no configured execution provider is available: ${skipped
      .map((s) => `${s.provider} (${s.reason})`)
      .join(', ')}`,
  );
}

/**
 * `text` with the model's directory left out of every path under it (`/srv/models/m/1/model.onnx`
 * becomes `model.onnx`), so a message names files as the repository's folder does.
 */
function withoutDir(text: string, modelPath: string): string {
  return text.split(`${dirname(modelPath)}${sep}`).join('');
}

/** How onnxruntime-node says a provider could not be added to a session (its library, say). */
const PROVIDER_START_FAILURE = /AppendExecutionProvider|failed to load (shared )?library/i;

/** Runs a session on wire tensors and returns wire tensors (views over onnxruntime's outputs). */
export async function runSession(
  loaded: LoadedSession,
  inputs: TensorMap,
  outputNames: readonly string[] | undefined,
): Promise<TensorMap> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, tensor] of Object.entries(inputs)) feeds[name] = toOrtTensor(tensor);
  let results: ort.InferenceSession.ReturnType;
  try {
    results =
      outputNames === undefined
        ? await loaded.session.run(feeds)
        : await loaded.session.run(feeds, [...outputNames]);
  } catch (error) {
    throw new TandemError('E_RUNTIME', `onnxruntime failed to run the model: ${reason(error)}`, {
      cause: error,
    });
  }
  const outputs: TensorMap = {};
  for (const [name, value] of Object.entries(results)) outputs[name] = fromOrtTensor(value);
  return outputs;
}

/** Releases a session's native memory. */
export async function releaseSession(loaded: LoadedSession): Promise<void> {
  await loaded.session.release();
}

/** Wraps a wire tensor for onnxruntime; numeric data is shared, not copied. */
export function toOrtTensor(tensor: Tensor): ort.Tensor {
  return new ort.Tensor(tensor.dtype, tensor.data, tensor.dims);
}

/** Views an onnxruntime output as a wire tensor. */
export function fromOrtTensor(value: ort.Tensor): Tensor {
  const dtype = value.type;
  switch (dtype) {
    case 'float32':
    case 'float16':
    case 'float64':
    case 'int8':
    case 'int16':
    case 'int32':
    case 'int64':
    case 'uint8':
    case 'uint16':
    case 'uint32':
    case 'uint64':
    case 'bool':
    case 'string':
      return { dtype, dims: [...value.dims], data: value.data } as Tensor;
    default:
      throw new TandemError('E_RUNTIME', `the model produced an unsupported output type ${dtype}`);
  }
}

function reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
