// The only module that talks to onnxruntime-node: creating sessions, running them, and converting
// tensors between the wire form and onnxruntime's without copying data.

import * as ort from 'onnxruntime-node';
import { TandemError, type Backend, type Tensor, type TensorMap } from '@tandem/shared';

/** Session options the server passes through to onnxruntime-node. */
export interface SessionSettings {
  /** Execution providers in order of preference. @default ['cpu'] */
  readonly executionProviders?: readonly ('cpu' | 'cuda' | 'tensorrt' | 'dml' | 'coreml')[];
  /** Threads used within one operator; 0 lets onnxruntime choose. @default 0 */
  readonly intraOpNumThreads?: number;
}

/** A loaded model instance's session. */
export interface LoadedSession {
  readonly session: ort.InferenceSession;
  /** The execution provider that runs it. */
  readonly backend: Backend;
}

/** Creates a session from a model file. Failures are `E_MODEL_LOAD_FAILED` with onnxruntime's reason. */
export async function createSession(
  path: string,
  settings: SessionSettings = {},
): Promise<LoadedSession> {
  const providers = settings.executionProviders ?? ['cpu'];
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [...providers],
    graphOptimizationLevel: 'all',
  };
  if (settings.intraOpNumThreads !== undefined && settings.intraOpNumThreads > 0) {
    options.intraOpNumThreads = settings.intraOpNumThreads;
  }
  try {
    const session = await ort.InferenceSession.create(path, options);
    return { session, backend: providers[0] ?? 'cpu' };
  } catch (error) {
    throw new TandemError(
      'E_MODEL_LOAD_FAILED',
      `onnxruntime could not load the model: ${reason(error)}`,
      {
        cause: error,
      },
    );
  }
}

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
