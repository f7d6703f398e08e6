// A worker's metrics endpoint on a real socket: the registry's text at /metrics, liveness at
// /health, and nothing else.

import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { serveMetrics, type MetricsEndpoint } from '../src/metrics-endpoint.js';

describe('serveMetrics', () => {
  let endpoint: MetricsEndpoint | undefined;
  afterEach(async () => {
    await endpoint?.close();
    endpoint = undefined;
  });

  it('serves the registry at /metrics and liveness at /health', async () => {
    const registry = new Registry();
    new Counter({ name: 'test_things_total', help: 'things', registers: [registry] }).inc(3);
    endpoint = await serveMetrics(registry, '127.0.0.1', 0);
    expect(endpoint.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metrics = await fetch(`${endpoint.url}/metrics?x=1`);
    expect(metrics.headers.get('content-type')).toBe(registry.contentType);
    expect(await metrics.text()).toContain('test_things_total 3');
    expect((await fetch(`${endpoint.url}/health`)).status).toBe(200);
  });

  it('answers other paths 404, other methods 405, and a failing collect 500 without stopping', async () => {
    const registry = new Registry();
    let fail = true;
    new Counter({
      name: 'test_flaky_total',
      help: 'fails to collect once',
      registers: [registry],
      collect() {
        if (fail) {
          fail = false;
          throw new Error('collect failed');
        }
      },
    });
    endpoint = await serveMetrics(registry, '127.0.0.1', 0);
    expect((await fetch(`${endpoint.url}/v2/health/live`)).status).toBe(404);
    expect((await fetch(`${endpoint.url}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${endpoint.url}/metrics`)).status).toBe(500);
    expect((await fetch(`${endpoint.url}/metrics`)).status).toBe(200);
  });

  it('answers /health 503 while the process cannot do its job', async () => {
    let alive = true;
    endpoint = await serveMetrics(new Registry(), '127.0.0.1', 0, () => alive);
    expect((await fetch(`${endpoint.url}/health`)).status).toBe(200);
    alive = false;
    const down = await fetch(`${endpoint.url}/health`);
    expect([down.status, await down.text()]).toEqual([503, 'not taking jobs\n']);
  });

  it('fails to start on a port that is taken', async () => {
    endpoint = await serveMetrics(new Registry(), '127.0.0.1', 0);
    const port = Number(new URL(endpoint.url).port);
    await expect(serveMetrics(new Registry(), '127.0.0.1', port)).rejects.toThrow(/EADDRINUSE/);
  });
});
