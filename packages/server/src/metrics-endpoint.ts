// A scale-out worker's own HTTP endpoint: `/metrics` for Prometheus and `/health` for a liveness
// probe, on node:http. A worker takes its jobs from Redis and answers nothing else over HTTP, so
// it loads no web framework for two read-only routes.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** A listening metrics endpoint. */
export interface MetricsEndpoint {
  /** Its base URL (http://host:port), with the port picked when 0 was asked for. */
  readonly url: string;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * Serves `registry` at `/metrics` and liveness at `/health` on `host:port` (0 picks a port).
 * `/health` answers 503 while `alive()` is false: the process runs but can no longer do its job.
 */
export async function serveMetrics(
  registry: Registry,
  host: string,
  port: number,
  alive: () => boolean = () => true,
): Promise<MetricsEndpoint> {
  const answer = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      const text = await registry.metrics();
      response.writeHead(200, { 'Content-Type': registry.contentType }).end(text);
    } else if (path === '/health') {
      // Liveness: 200 while the process does its job, draining included (an orchestrator that
      // saw 503 while a worker finishes its last job would kill it mid-job).
      const ok = alive();
      response
        .writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' })
        .end(ok ? 'ok\n' : 'not taking jobs\n');
    } else {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  };
  const server = createServer((request, response) => {
    answer(request, response).catch((error: unknown) => {
      // A collect() that throws (a gauge reading a closed resource) must not kill the worker.
      if (!response.headersSent) response.writeHead(500, { 'Content-Type': 'text/plain' });
      response.end(`${error instanceof Error ? error.message : String(error)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
