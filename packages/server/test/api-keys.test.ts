import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TandemError, type TensorMap } from '@tandem/shared';
import { buildMlpClassifier, connectClient, writeModelFile } from '@tandem/test-support';
import {
  ANONYMOUS,
  ApiKeys,
  hashApiKey,
  loadApiKeyFile,
  parseApiKeyFile,
  type ApiKeyRecord,
} from '../src/api-keys.js';
import {
  SLOW_WIDTH,
  errorCodeOf,
  resultOf,
  slowInput,
  startServer,
  writeSlowModel,
  type TestServer,
} from './fixtures.js';
import { encodeInferRequest, type ClientInput } from './oip-client.js';
import { tempDir, writeModelConfig } from './server-fixtures.js';

const alice: ApiKeyRecord = { id: 'alice', sha256: hashApiKey('alice-secret') };
const bob: ApiKeyRecord = { id: 'bob', sha256: hashApiKey('bob-secret'), ratePerMinute: 6 };
const carol: ApiKeyRecord = { id: 'carol', sha256: hashApiKey('carol-secret'), maxConcurrent: 2 };

function errorOf(fn: () => unknown): TandemError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    return error as TandemError;
  }
  throw new Error('expected a TandemError');
}

describe('hashApiKey', () => {
  it('is the lower-case hex sha256 of the UTF-8 key', () => {
    expect(hashApiKey('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});

describe('ApiKeys.verify', () => {
  const keys = new ApiKeys([alice, bob, carol]);

  it('returns the record of a good key', () => {
    expect(keys.required).toBe(true);
    expect(keys.verify('alice-secret')).toBe(alice);
    expect(keys.verify('carol-secret')).toBe(carol);
  });

  it('returns undefined for a missing, empty or wrong key', () => {
    for (const key of [undefined, '', 'alice', 'alice-secret ', alice.sha256]) {
      expect(keys.verify(key), String(key)).toBeUndefined();
    }
  });

  it('lets anyone in as ANONYMOUS when no keys are configured', () => {
    const open = new ApiKeys([]);
    expect(open.required).toBe(false);
    expect(open.verify(undefined)).toBe(ANONYMOUS);
    expect(open.verify('anything')).toBe(ANONYMOUS);
    expect(ANONYMOUS.id).toBe('anonymous');
  });

  it('refuses records whose sha256 is not 64 hex digits, rather than failing on every verify', () => {
    for (const sha256 of ['alice-secret', 'ab', hashApiKey('x').toUpperCase().slice(1)]) {
      expect(errorOf(() => new ApiKeys([{ id: 'x', sha256 }])).code).toBe('E_INVALID_ARGUMENT');
    }
  });
});

/** ApiKeys.acquire for limits kept in this process: synchronous. */
function take(keys: ApiKeys, record: ApiKeyRecord, now?: number): () => void {
  const taken = keys.acquire(record, now);
  if (typeof taken !== 'function') throw new Error('expected limits kept in this process');
  return taken;
}

describe('ApiKeys.acquire', () => {
  it('enforces the rate with a bucket of one minute of tokens that refills continuously', () => {
    const keys = new ApiKeys([bob]);
    const t0 = 1_000_000;
    for (let i = 0; i < 6; i++) take(keys, bob, t0)();
    const limited = errorOf(() => take(keys, bob, t0));
    expect(limited.code).toBe('E_RATE_LIMITED');
    expect(limited.retryable).toBe(true);
    // Six a minute: one token every 10 s.
    expect(limited.retryAfterMs).toBe(10_000);
    expect(errorOf(() => take(keys, bob, t0 + 4_000)).retryAfterMs).toBe(6_000);
    take(keys, bob, t0 + 10_000)();
    expect(errorOf(() => take(keys, bob, t0 + 10_000)).code).toBe('E_RATE_LIMITED');
    // A long pause refills up to the burst, never beyond it.
    for (let i = 0; i < 6; i++) take(keys, bob, t0 + 3_600_000)();
    expect(errorOf(() => take(keys, bob, t0 + 3_600_000)).code).toBe('E_RATE_LIMITED');
  });

  it('enforces the concurrency limit until a slot is released, and releases only once', () => {
    const keys = new ApiKeys([carol, alice]);
    const first = take(keys, carol);
    const second = take(keys, carol);
    const busy = errorOf(() => take(keys, carol));
    expect(busy.code).toBe('E_RATE_LIMITED');
    expect(busy.retryAfterMs).toBeGreaterThan(0);
    first();
    first(); // a second call must not free a slot it does not hold
    const third = take(keys, carol);
    expect(errorOf(() => take(keys, carol)).code).toBe('E_RATE_LIMITED');
    second();
    third();
    take(keys, carol);
    take(keys, carol);
    // Limits are per key: alice has none.
    for (let i = 0; i < 100; i++) take(keys, alice);
  });

  it('asks shared limits (a scaled-out gateway) for keys with limits, and nobody for keys without', async () => {
    const asked: string[] = [];
    const keys = new ApiKeys([alice, bob, carol]);
    keys.share({
      acquire: (record) => {
        asked.push(record.id);
        return record.id === 'bob'
          ? Promise.reject(new TandemError('E_RATE_LIMITED', 'over', { retryAfterMs: 5 }))
          : Promise.resolve(() => undefined);
      },
    });
    expect(typeof keys.acquire(alice)).toBe('function');
    await expect(keys.acquire(bob)).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
    // Not counted here any more: the shared limits decide, however many are taken.
    for (let i = 0; i < 3; i++) expect(typeof (await keys.acquire(carol))).toBe('function');
    expect(asked).toEqual(['bob', 'carol', 'carol', 'carol']);
  });

  it('does not count a rate-limited attempt against the concurrency limit', () => {
    const both: ApiKeyRecord = { ...bob, id: 'both', ratePerMinute: 1, maxConcurrent: 1 };
    const keys = new ApiKeys([both]);
    const release = take(keys, both, 0);
    release();
    expect(errorOf(() => take(keys, both, 1)).code).toBe('E_RATE_LIMITED');
    take(keys, both, 60_001);
  });
});

describe('parseApiKeyFile / loadApiKeyFile', () => {
  const { dir, remove } = tempDir('api-keys');
  afterAll(remove);

  it('parses keys with their optional limits', () => {
    expect(
      parseApiKeyFile(
        {
          keys: [
            { id: 'alice', sha256: alice.sha256 },
            { id: 'bob', sha256: bob.sha256, ratePerMinute: 6, maxConcurrent: 2 },
          ],
        },
        'keys.json',
      ),
    ).toEqual([alice, { ...bob, maxConcurrent: 2 }]);
  });

  it('answers every malformed file with E_INVALID_ARGUMENT', () => {
    const bad: unknown[] = [
      null,
      [],
      {},
      { keys: {} },
      { keys: [null] },
      { keys: [{ sha256: alice.sha256 }] },
      { keys: [{ id: '', sha256: alice.sha256 }] },
      { keys: [{ id: 'a' }] },
      { keys: [{ id: 'a', sha256: 'alice-secret' }] },
      { keys: [{ id: 'a', sha256: alice.sha256.toUpperCase() }] },
      { keys: [{ id: 'a', sha256: alice.sha256, ratePerMinute: 0 }] },
      { keys: [{ id: 'a', sha256: alice.sha256, maxConcurrent: 1.5 }] },
      {
        keys: [
          { id: 'a', sha256: alice.sha256 },
          { id: 'a', sha256: bob.sha256 },
        ],
      },
    ];
    for (const value of bad) {
      expect(errorOf(() => parseApiKeyFile(value, 'keys.json')).code, JSON.stringify(value)).toBe(
        'E_INVALID_ARGUMENT',
      );
    }
  });

  it('loads a file, and answers a missing or non-JSON file with E_INVALID_ARGUMENT', () => {
    const good = join(dir, 'keys.json');
    writeFileSync(good, JSON.stringify({ keys: [alice] }));
    expect(loadApiKeyFile(good)).toEqual([alice]);
    const garbled = join(dir, 'garbled.json');
    writeFileSync(garbled, 'keys: alice');
    expect(errorOf(() => loadApiKeyFile(garbled)).code).toBe('E_INVALID_ARGUMENT');
    expect(errorOf(() => loadApiKeyFile(join(dir, 'missing.json'))).code).toBe(
      'E_INVALID_ARGUMENT',
    );
  });
});

describe('ApiKeys at the front doors: refused jobs keep their rate token and give their slot back', () => {
  const MLP = buildMlpClassifier({ features: 4, hidden: 4, classes: 2, seed: 5 });
  /** Rows of the job that holds the slow model's instance: about a second, longer than the probes. */
  const LONG_ROWS = 4096;
  const SLOTS_KEY = 'tk_test_slots';
  const TOKENS_KEY = 'tk_test_tokens';
  const FILLER_KEY = 'tk_test_filler';
  const WS_PROBE_KEY = 'tk_test_ws_probe';
  const HTTP_PROBE_KEY = 'tk_test_http_probe';
  const mlpInputs: TensorMap = {
    x: { dtype: 'float32', dims: [1, MLP.features], data: new Float32Array(MLP.features) },
  };
  const wrongShape: TensorMap = {
    x: { dtype: 'float32', dims: [1, MLP.features + 1], data: new Float32Array(MLP.features + 1) },
  };
  /** An OIP v2 input `x` of zeros shaped `shape`. */
  const oipZeros = (shape: readonly number[]): ClientInput => ({
    name: 'x',
    datatype: 'FP32',
    shape,
    data: Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 0),
  });
  let ctx: TestServer;

  beforeAll(async () => {
    ctx = await startServer(
      async (dir) => {
        await writeModelFile(dir, 'mlp', 1, MLP.bytes);
        // One job may wait: with one running, the next one queued fills the queue.
        await writeSlowModel(dir);
        writeModelConfig(dir, 'slow', 1, { maxQueue: 1 });
      },
      {
        apiKeys: [
          { id: 'slots', sha256: hashApiKey(SLOTS_KEY), maxConcurrent: 1 },
          // Refills one token per 20 s: none comes back while the test runs.
          { id: 'tokens', sha256: hashApiKey(TOKENS_KEY), ratePerMinute: 3 },
          { id: 'filler', sha256: hashApiKey(FILLER_KEY) },
          // Two tokens each, none refilled while the test runs (one per 30 s).
          { id: 'ws-probe', sha256: hashApiKey(WS_PROBE_KEY), ratePerMinute: 2 },
          { id: 'http-probe', sha256: hashApiKey(HTTP_PROBE_KEY), ratePerMinute: 2 },
        ],
      },
    );
  });
  afterAll(async () => {
    await ctx.close();
  });

  /** POSTs an OIP v2 infer request with a key; the status and the error code, if any. */
  const post = async (
    model: string,
    input: ClientInput,
    key: string,
  ): Promise<{ status: number; code: string | undefined }> => {
    const { body, headers } = encodeInferRequest({ inputs: [input] });
    const response = await fetch(`${ctx.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers: { ...headers, authorization: `Bearer ${key}` },
    });
    const answer = (await response.json()) as { code?: string };
    return { status: response.status, code: answer.code };
  };

  it('gives the maxConcurrent slot of every refused job back at once, over WebSocket and HTTP', async () => {
    // Another key fills the slow model's queue: one job running, one waiting.
    const filler = await connectClient(ctx.url, { apiKey: FILLER_KEY });
    filler.send({ type: 'infer', id: 'long', model: 'slow', inputs: slowInput(LONG_ROWS) });
    await filler.nextOf('progress', (m) => m.event.jobId === 'long' && m.event.stage === 'running');
    filler.send({ type: 'infer', id: 'waits', model: 'slow', inputs: slowInput(1) });
    await filler.nextOf('progress', (m) => m.event.jobId === 'waits' && m.event.stage === 'queued');

    // One slot: had any of these refusals kept it, the jobs after it would be E_RATE_LIMITED.
    const client = await connectClient(ctx.url, { apiKey: SLOTS_KEY });
    const refusals = [
      ['E_MODEL_NOT_FOUND', await client.infer({ id: 'r-1', model: 'nope', inputs: mlpInputs })],
      ['E_INPUT_SHAPE', await client.infer({ id: 'r-2', model: 'mlp', inputs: wrongShape })],
      ['E_BUSY', await client.infer({ id: 'r-3', model: 'slow', inputs: slowInput(1) })],
    ] as const;
    for (const [code, log] of refusals) expect(errorCodeOf(log), code).toBe(code);
    expect(await post('mlp', oipZeros([1, MLP.features + 1]), SLOTS_KEY)).toEqual({
      status: 400,
      code: 'E_INPUT_SHAPE',
    });
    expect(await post('slow', oipZeros([1, SLOW_WIDTH]), SLOTS_KEY)).toEqual({
      status: 503,
      code: 'E_BUSY',
    });
    expect(await post('nope', oipZeros([1, MLP.features]), SLOTS_KEY)).toEqual({
      status: 404,
      code: 'E_MODEL_NOT_FOUND',
    });
    resultOf(await client.infer({ id: 'ok-1', model: 'mlp', inputs: mlpInputs }));
    expect((await post('mlp', oipZeros([1, MLP.features]), SLOTS_KEY)).status).toBe(200);

    for (const id of ['long', 'waits']) resultOf(await filler.collectJob(id));
    await Promise.all([client.close(), filler.close()]);
  });

  it('takes a rate token for each job a model refuses, over WebSocket and HTTP alike', async () => {
    const client = await connectClient(ctx.url, { apiKey: TOKENS_KEY });
    // Three tokens: spent on an unknown model and bad inputs, whichever door they came through.
    const unknown = await client.infer({ id: 't-1', model: 'nope', inputs: mlpInputs });
    expect(errorCodeOf(unknown)).toBe('E_MODEL_NOT_FOUND');
    expect(errorCodeOf(await client.infer({ id: 't-2', model: 'mlp', inputs: wrongShape }))).toBe(
      'E_INPUT_SHAPE',
    );
    expect((await post('mlp', oipZeros([1, MLP.features + 1]), TOKENS_KEY)).code).toBe(
      'E_INPUT_SHAPE',
    );
    // A good job now finds the key out of tokens.
    const limited = await client.infer({ id: 't-4', model: 'mlp', inputs: mlpInputs });
    expect(errorCodeOf(limited)).toBe('E_RATE_LIMITED');
    expect(await post('mlp', oipZeros([1, MLP.features]), TOKENS_KEY)).toEqual({
      status: 429,
      code: 'E_RATE_LIMITED',
    });
    await client.close();
  });

  it('takes a rate token for an unknown model or version over HTTP, as over WebSocket', async () => {
    // A client probing names is limited alike through either door: two probes spend both tokens.
    const client = await connectClient(ctx.url, { apiKey: WS_PROBE_KEY });
    const probes = [
      await client.infer({ id: 'p-1', model: 'nope', inputs: mlpInputs }),
      await client.infer({ id: 'p-2', model: 'mlp', version: '9', inputs: mlpInputs }),
    ];
    for (const log of probes) expect(errorCodeOf(log)).toBe('E_MODEL_NOT_FOUND');
    expect(errorCodeOf(await client.infer({ id: 'p-3', model: 'mlp', inputs: mlpInputs }))).toBe(
      'E_RATE_LIMITED',
    );
    await client.close();

    for (const model of ['nope', 'mlp/versions/9']) {
      expect(await post(model, oipZeros([1, MLP.features]), HTTP_PROBE_KEY), model).toEqual({
        status: 404,
        code: 'E_MODEL_NOT_FOUND',
      });
    }
    expect(await post('mlp', oipZeros([1, MLP.features]), HTTP_PROBE_KEY)).toEqual({
      status: 429,
      code: 'E_RATE_LIMITED',
    });
  });
});
