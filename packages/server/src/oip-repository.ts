// The Open Inference Protocol's model repository extension (Triton's `model_repository`), which
// `GET /v2` advertises, so Triton and KServe clients can list and control models:
//   POST /v2/repository/index                 every model version with its state (body: {ready?})
//   POST /v2/repository/models/{m}/load       Tandem's warm of the latest version, answered once
//                                             it is ready (200) or has failed (its error)
//   POST /v2/repository/models/{m}/unload     unloads the idle instances of every version
// Tandem loads models on demand and unloads them when idle, so these steer that lifecycle rather
// than gate inference: a model that is not loaded still serves (its first request loads it).

import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  TandemError,
  at,
  expectBoolean,
  expectRecord,
  optional,
  type ModelState,
  type ModelStatus,
  type ParseContext,
} from '@tandem/shared';
import type { ApiKeyRecord } from './api-keys.js';
import { takeRawBodies } from './content-encoding.js';
import type { JobDispatcher } from './job-dispatcher.js';

/** What the repository routes need from the server. */
export interface RepositoryRouteOptions {
  /** The in-process ModelManager, or the Redis dispatcher when scaled out. */
  readonly manager: JobDispatcher;
  /** Resolves the caller's key; throws E_UNAUTHORIZED. */
  readonly authenticate: (request: FastifyRequest) => ApiKeyRecord;
  /** Largest request body, in bytes, after any Content-Encoding is undone. */
  readonly maxPayloadBytes: number;
}

/** One entry of the index: Triton's `$repository_index_response` item. */
export interface RepositoryIndexEntry {
  readonly name: string;
  readonly version: string;
  /** `READY`, `LOADING` or `UNAVAILABLE`, as Triton names model states. */
  readonly state: 'READY' | 'LOADING' | 'UNAVAILABLE';
  /** Why the model is in that state: empty when ready or loading. */
  readonly reason: string;
}

/** Triton's state names for Tandem's lifecycle states. */
const TRITON_STATE: Record<ModelState, RepositoryIndexEntry['state']> = {
  ready: 'READY',
  loading: 'LOADING',
  warming: 'LOADING',
  unloaded: 'UNAVAILABLE',
  failed: 'UNAVAILABLE',
};

/** A model version's index entry. */
export function repositoryIndexEntry(status: ModelStatus): RepositoryIndexEntry {
  const reason =
    status.state === 'failed'
      ? (status.reason ?? 'failed to load')
      : status.state === 'unloaded'
        ? 'unloaded'
        : '';
  return {
    name: status.name,
    version: status.version,
    state: TRITON_STATE[status.state],
    reason,
  };
}

/** Registers the repository routes (in a scope of their own: they parse their bodies). */
export function registerRepositoryRoutes(
  fastify: FastifyInstance,
  options: RepositoryRouteOptions,
): void {
  const { manager } = options;
  void fastify.register(async (scope) => {
    // The spec lets load and unload come with no body, and clients send the index's JSON with
    // or without a content type: take the bytes (inflated, if compressed) and parse them here.
    takeRawBodies(scope, options.maxPayloadBytes);

    scope.post('/v2/repository/index', async (request) => {
      options.authenticate(request);
      const ctx: ParseContext = { path: 'request', code: 'E_INVALID_ARGUMENT' };
      const body = bodyOf(request, ctx);
      const readyOnly = optional(body.ready, at(ctx, 'ready'), expectBoolean) ?? false;
      const entries = manager.statuses().map(repositoryIndexEntry);
      return readyOnly ? entries.filter((entry) => entry.state === 'READY') : entries;
    });

    scope.post('/v2/repository/models/:name/load', async (request) => {
      options.authenticate(request);
      const { name } = request.params as { name: string };
      const ctx: ParseContext = { path: 'request', code: 'E_INVALID_ARGUMENT' };
      const body = bodyOf(request, ctx);
      const parameters = optional(body.parameters, at(ctx, 'parameters'), expectRecord) ?? {};
      // Triton's `config` and `file:` parameters load a model from what the request carries;
      // Tandem loads only what its repository holds (model.onnx and model.json).
      const override = Object.keys(parameters).find(
        (key) => key === 'config' || key.startsWith('file:'),
      );
      if (override !== undefined) {
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          `load parameter "${override}" is not supported: models load from the repository`,
        );
      }
      await manager.warm(name).ready;
      return { name, load: true };
    });

    scope.post('/v2/repository/models/:name/unload', async (request) => {
      options.authenticate(request);
      const { name } = request.params as { name: string };
      bodyOf(request, { path: 'request', code: 'E_INVALID_ARGUMENT' });
      if (manager.unload === undefined) {
        manager.model(name);
        throw new TandemError(
          'E_INVALID_ARGUMENT',
          'unload is not available on a scaled-out gateway: the workers unload idle models',
        );
      }
      await manager.unload(name);
      return { name, unload: true };
    });
  });
}

/** The request's JSON object; an empty body counts as `{}`. */
function bodyOf(request: FastifyRequest, ctx: ParseContext): Record<string, unknown> {
  const bytes = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  if (bytes.byteLength === 0) return {};
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new TandemError('E_INVALID_ARGUMENT', 'the request body is not valid JSON');
  }
  return expectRecord(json, ctx);
}
