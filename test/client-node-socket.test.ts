// In Node the client talks to the server over the ws package even where Node has a global
// WebSocket (Node 22 and later): one tested path, with fragmented sends and uncapped results.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TandemServer } from '@tandem/server';
import { createTandem } from '@tandem/client';
import { createPrng, fillUniform } from '@tandem/test-support';

describe('the Node client socket', () => {
  let server: TandemServer;
  let url: string;
  const globals = globalThis as { WebSocket?: unknown };
  const had = Object.prototype.hasOwnProperty.call(globals, 'WebSocket');
  const before = globals.WebSocket;
  let nativeCalls = 0;

  beforeAll(async () => {
    server = await createServer({ port: 0 });
    url = await server.listen();
    // Stands in for Node 22's global WebSocket: the client must not reach for it.
    globals.WebSocket = function GlobalWebSocket(): never {
      nativeCalls++;
      throw new Error('the global WebSocket was used');
    };
  });

  afterAll(async () => {
    if (had) globals.WebSocket = before;
    else delete globals.WebSocket;
    await server.close();
  });

  it('uses ws, not a global WebSocket, for remote runs', async () => {
    const tandem = createTandem({ server: url, placement: 'remote-only' });
    try {
      const data = fillUniform(new Float32Array(3 * 48 * 192), createPrng(1), 0, 1);
      const result = await tandem.run('paddleocr-cls', {
        x: { dtype: 'float32', dims: [1, 3, 48, 192], data },
      });
      expect(result.placement).toBe('remote');
      expect(nativeCalls).toBe(0);
    } finally {
      await tandem.close();
    }
  });
});
