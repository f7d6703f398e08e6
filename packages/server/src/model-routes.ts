// Tandem's own HTTP routes beside OIP v2: the model list with lifecycle states, the "wake up" call,
// manifests and model files for browsers that run a model locally, and the usage report.
//   GET  /v1/models                         states, estimates
//   POST /v1/models/:name/warm              start loading (202), or wait with ?wait=true (200)
//   GET  /v1/models/:name/manifest          ModelManifest (url, bytes, sha256, inputs, outputs, hints)
//   GET  /v1/models/:name/versions/:version/model.onnx
//   GET  /v1/models/:name/versions/:version/files/<location>   a model's external data file
//   GET  /v1/usage                          compute-seconds, jobs, cold starts per key and model

import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TandemError, parseModelManifest, type ModelManifest } from '@tandem/shared';
import { ANONYMOUS, type ApiKeyRecord } from './api-keys.js';
import type { JobDispatcher } from './job-dispatcher.js';
import type { UsageSource } from './usage.js';

/** What the routes need from the server. */
export interface ModelRouteOptions {
  /** The in-process ModelManager, or the Redis dispatcher when scaled out. */
  readonly manager: JobDispatcher;
  /** What /v1/usage serves. */
  readonly usage: UsageSource;
  readonly authenticate: (request: FastifyRequest) => ApiKeyRecord;
}

/** Registers the /v1 model routes. */
export function registerModelRoutes(fastify: FastifyInstance, options: ModelRouteOptions): void {
  const { manager } = options;
  /** Models whose manifest offers no download, each logged once. */
  const undownloadable = new Set<string>();
  const digests = new Map<
    string,
    { size: number; mtimeMs: number; ctimeMs: number; ino: number; sha256: Promise<string> }
  >();

  /**
   * sha256 of a model file, computed once per file version (streamed, never fully in memory). A
   * version is told apart as the repository's stamp does: size, modification and change times
   * and inode (a file renamed over the old one with its size and times, as rsync -a copies, or
   * rewritten in place with them, as cp -p does, is another).
   */
  const sha256Of = (path: string): Promise<string> => {
    const stat = statSync(path);
    const cached = digests.get(path);
    if (
      cached !== undefined &&
      cached.size === stat.size &&
      cached.mtimeMs === stat.mtimeMs &&
      cached.ctimeMs === stat.ctimeMs &&
      cached.ino === stat.ino
    )
      return cached.sha256;
    const sha256 = new Promise<string>((resolve, reject) => {
      const hash = createHash('sha256');
      createReadStream(path)
        .on('data', (chunk) => hash.update(chunk))
        .on('error', reject)
        .on('end', () => resolve(hash.digest('hex')));
    });
    const entry = {
      size: stat.size,
      mtimeMs: stat.mtimeMs,
      ctimeMs: stat.ctimeMs,
      ino: stat.ino,
      sha256,
    };
    digests.set(path, entry);
    // A failed read (the file deleted mid-read, EIO, too many open files) says nothing about the
    // file's contents: forget it, so the next request reads again rather than fail until the
    // file changes. Only this entry: a newer one may have replaced it meanwhile.
    sha256.catch(() => {
      if (digests.get(path) === entry) digests.delete(path);
    });
    return sha256;
  };

  fastify.get('/v1/models', async (request) => {
    options.authenticate(request);
    return { models: manager.statuses() };
  });

  fastify.post('/v1/models/:name/warm', async (request, reply) => {
    options.authenticate(request);
    const { name } = request.params as { name: string };
    const { version, wait } = request.query as { version?: string; wait?: string };
    const { model, ready } = manager.warm(name, version);
    if (wait === 'true' || wait === '1') return reply.code(200).send(await ready);
    ready.catch(() => undefined); // the outcome is visible in /v1/models and the `model` messages
    return reply.code(202).send(model.status());
  });

  fastify.get('/v1/models/:name/manifest', async (request) => {
    options.authenticate(request);
    const { name } = request.params as { name: string };
    const { version } = request.query as { version?: string };
    const host = manager.model(name, version);
    const { entry } = host;
    const base = `/v1/models/${encodeURIComponent(entry.name)}/versions/${encodeURIComponent(entry.version)}`;
    const described: ModelManifest = {
      name: entry.name,
      version: entry.version,
      ...(host.signature === undefined
        ? {}
        : { inputs: host.signature.inputs, outputs: host.signature.outputs }),
      ...(entry.config.placement === undefined ? {} : { placement: entry.config.placement }),
    };
    const externalData = await Promise.all(
      host.externalData.map(async (file) => ({
        path: file.location,
        url: `${base}/files/${file.location.split('/').map(encodeURIComponent).join('/')}`,
        bytes: file.bytes,
        sha256: await sha256Of(file.path),
      })),
    );
    const downloadable: ModelManifest = {
      ...described,
      url: `${base}/model.onnx`,
      bytes: entry.bytes,
      sha256: await sha256Of(entry.path),
      ...(externalData.length === 0 ? {} : { externalData }),
    };
    try {
      // What a client will accept: an external data location it could not name safely (`..`,
      // `\`, `./x`) leaves the model to the server, without a download to offer.
      parseModelManifest(downloadable);
      return downloadable;
    } catch (error) {
      if (!undownloadable.has(host.label)) {
        undownloadable.add(host.label);
        fastify.log.warn(
          { model: host.label, reason: error instanceof Error ? error.message : String(error) },
          'model offered without a download: a browser could not run it locally',
        );
      }
      return described;
    }
  });

  fastify.get('/v1/models/:name/versions/:version/model.onnx', async (request, reply) => {
    options.authenticate(request);
    const { name, version } = request.params as { name: string; version: string };
    const { entry } = manager.model(name, version);
    return sendFile(request, reply, entry.path, entry.bytes);
  });

  /** A model file, named by its sha256 (ETag) and cached for good: a version's files never change. */
  const sendFile = async (
    request: FastifyRequest,
    reply: FastifyReply,
    path: string,
    bytes: number,
  ): Promise<FastifyReply> => {
    const sha256 = await sha256Of(path);
    reply.header('Content-Type', 'application/octet-stream');
    reply.header('Content-Length', String(bytes));
    reply.header('ETag', `"${sha256}"`);
    reply.header('Cache-Control', 'public, max-age=31536000, immutable');
    if (request.headers['if-none-match'] === `"${sha256}"`) return reply.code(304).send();
    return reply.send(createReadStream(path));
  };

  // A model's external data files, by the location the model names them with (it may hold `/`):
  // only files the model references are served, never another path of the repository.
  fastify.get('/v1/models/:name/versions/:version/files/*', async (request, reply) => {
    options.authenticate(request);
    const params = request.params as { name: string; version: string; '*': string };
    const host = manager.model(params.name, params.version);
    const file = host.externalData.find((f) => f.location === params['*']);
    if (file === undefined) {
      throw new TandemError(
        'E_MODEL_NOT_FOUND',
        `model "${params.name}" version "${params.version}" has no external data file "${params['*']}"`,
      );
    }
    return sendFile(request, reply, file.path, file.bytes);
  });

  fastify.get('/v1/usage', async (request) => {
    const owner = options.authenticate(request);
    // Everything only on a server without keys, told by the record itself: a key file may name
    // a key "anonymous", and that key sees its own usage like any other.
    return { usage: await options.usage.rows(owner === ANONYMOUS ? undefined : owner.id) };
  });
}
