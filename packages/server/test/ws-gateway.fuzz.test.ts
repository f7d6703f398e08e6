// The WebSocket gateway under fuzzing, over real sockets to a real server with real onnxruntime:
// fast-check writes sessions of client messages in any order (hello again, cancels and resumes of
// ids nobody sent, infers with reused ids, unknown models, priorities and deadlines out of range,
// text frames, valid frames cut into random WebSocket fragments, damaged frames, dims whose
// product overflows) and checks each answer against what docs/protocol.md promises for it. A
// bystander connection gets onnxruntime's outputs throughout. FUZZ_SEED replays a run.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  PROTOCOL_VERSION,
  encodeMessage,
  type ErrorCode,
  type ServerMessage,
  type TensorMap,
} from '@tandem/shared';
import {
  buildMlpClassifier,
  connectClient,
  writeModelFile,
  type TestClient,
} from '@tandem/test-support';
import {
  expectSameTensors,
  resultOf,
  runDirect,
  startServer,
  type TestServer,
} from './fixtures.js';

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MLP = buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 9 });
const ROWS = 2;
const INPUTS: TensorMap = {
  x: {
    dtype: 'float32',
    dims: [ROWS, MLP.features],
    data: Float32Array.from([0.5, -1, 2, 0.25, 3, 1.5, -0.75, 0]),
  },
};

/** Codes a client's messages must never cause: each means the server itself went wrong. */
const SERVER_FAULTS: readonly ErrorCode[] = ['E_INTERNAL', 'E_RUNTIME', 'E_ATTEMPTS_EXHAUSTED'];

let ctx: TestServer;
let mlpPath: string;
let expected: TensorMap;

beforeAll(async () => {
  ctx = await startServer(
    async (dir) => {
      mlpPath = await writeModelFile(dir, 'mlp', 1, MLP.bytes);
    },
    // Every malformed frame is answered: no session here may be cut off for sending many. Jobs
    // run on the worker thread, as a large model's do, so they queue and overlap.
    { maxProtocolErrors: 1_000_000, inlineMaxRunMs: 0 },
  );
  expected = await runDirect(mlpPath, INPUTS);
});

afterAll(async () => {
  await ctx.close();
});

/** A frame with the Tandem prefix around a header written by hand (and an optional body). */
function rawFrame(header: string, body = new Uint8Array(0)): Uint8Array {
  const headerBytes = Buffer.from(header, 'utf8');
  const bodyStart =
    body.length === 0 ? 12 + headerBytes.length : (12 + headerBytes.length + 7) & ~7;
  const frame = new Uint8Array(bodyStart + body.length);
  frame.set([0x54, 0x4e, 0x44, 0x4d, 1, 0, 0, 0]);
  new DataView(frame.buffer).setUint32(8, headerBytes.length, true);
  frame.set(headerBytes, 12);
  frame.set(body, bodyStart);
  return frame;
}

/** An infer header for the MLP with `extra` fields spliced in, as JSON text. */
function inferHeader(id: string, extra: string, dims = `[${ROWS},${MLP.features}]`): string {
  const byteLength = 4 * ROWS * MLP.features;
  return `{"type":"infer","id":"${id}","model":"mlp","inputs":[{"name":"x","dtype":"float32","dims":${dims},"offset":0,"byteLength":${byteLength}}]${extra}}`;
}

const inputData = INPUTS.x!.data as Float32Array;
const inputBytes = Uint8Array.from(
  new Uint8Array(inputData.buffer, inputData.byteOffset, inputData.byteLength),
);

/**
 * What a step expects back: `result` (the MLP's outputs under that id), a job `error` with one of
 * `codes` under that id, a connection-level error (`id: null`) with one of `codes`, or `nothing`
 * (a cancel of an unknown id). `any` accepts any documented answer (a damaged frame may decode
 * into anything), or none.
 */
type Expectation =
  | { kind: 'result'; id: string }
  | { kind: 'job-error'; id: string; codes: readonly ErrorCode[] }
  | { kind: 'result-or-error'; id: string; codes: readonly ErrorCode[] }
  | { kind: 'twice'; id: string }
  | { kind: 'null-error'; codes: readonly ErrorCode[] }
  | { kind: 'nothing' }
  | { kind: 'any' };

/** One step of a session: what it sends, and what it expects. */
interface Step {
  readonly label: string;
  send(client: TestClient, fresh: () => string): Expectation;
}

const step = (label: string, send: Step['send']): Step => ({ label, send });

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.constant(
    step('infer', (client, fresh) => {
      const id = fresh();
      client.send({ type: 'infer', id, model: 'mlp', inputs: INPUTS });
      return { kind: 'result', id };
    }),
  ),
  fc.record({ cuts: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }) }).map(({ cuts }) =>
    step(`infer in fragments ${cuts.join(',')}`, (client, fresh) => {
      const id = fresh();
      const frame = encodeMessage({ type: 'infer', id, model: 'mlp', inputs: INPUTS });
      const points = [...new Set(cuts.map((c) => c % frame.length))].sort((a, b) => a - b);
      const bounds = [0, ...points.filter((p) => p > 0), frame.length];
      for (let i = 0; i + 1 < bounds.length; i++) {
        client.socket.send(frame.subarray(bounds[i], bounds[i + 1]), {
          binary: true,
          fin: i + 2 === bounds.length,
        });
      }
      return { kind: 'result', id };
    }),
  ),
  fc.constant(
    step('infer twice under one id', (client, fresh) => {
      // The second arrives while the first is in flight (E_DUPLICATE_JOB) or, run inline, after
      // it ended (a second job under a free id): two answers either way, one a result.
      const id = fresh();
      client.send({ type: 'infer', id, model: 'mlp', inputs: INPUTS });
      client.send({ type: 'infer', id, model: 'mlp', inputs: INPUTS });
      return { kind: 'twice', id };
    }),
  ),
  fc.constantFrom('nope', 'mlp@2', '__proto__', 'constructor').map((model) =>
    step(`infer on unknown model ${model}`, (client, fresh) => {
      const id = fresh();
      client.send({ type: 'infer', id, model, inputs: INPUTS });
      return { kind: 'job-error', id, codes: ['E_MODEL_NOT_FOUND'] };
    }),
  ),
  fc.constantFrom('2', 'abc', '').map((version) =>
    step(`infer on unknown version "${version}"`, (client, fresh) => {
      const id = fresh();
      client.send({ type: 'infer', id, model: 'mlp', version, inputs: INPUTS });
      // An empty version is a malformed field, refused by the decoder before any job (as that
      // job: its id is readable).
      return {
        kind: 'job-error',
        id,
        codes: [version === '' ? 'E_PROTOCOL' : 'E_MODEL_NOT_FOUND'],
      };
    }),
  ),
  fc
    .constantFrom(
      ',"priority":11',
      ',"priority":-1',
      ',"priority":2.5',
      ',"priority":"5"',
      ',"deadlineMs":-1',
      ',"deadlineMs":"10"',
      ',"deadlineMs":1e309',
      ',"deadlineMs":null',
      ',"outputs":"probs"',
      ',"outputs":[""]',
      ',"progress":1',
    )
    .map((extra) =>
      step(`infer with ${extra}`, (client, fresh) => {
        // Malformed, but its id is readable: refused as that job.
        const id = fresh();
        client.sendRaw(rawFrame(inferHeader(id, extra), inputBytes));
        return { kind: 'job-error', id, codes: ['E_PROTOCOL'] };
      }),
    ),
  fc
    .constantFrom(',"priority":0', ',"priority":10', ',"deadlineMs":60000', ',"deadlineMs":3e15')
    .map((extra) =>
      step(`infer with in-range ${extra}`, (client, fresh) => {
        const id = fresh();
        client.sendRaw(rawFrame(inferHeader(id, extra), inputBytes));
        return { kind: 'result', id };
      }),
    ),
  fc.constant(
    step('infer with a deadline of 0', (client, fresh) => {
      const id = fresh();
      client.sendRaw(rawFrame(inferHeader(id, ',"deadlineMs":0'), inputBytes));
      return { kind: 'job-error', id, codes: ['E_DEADLINE_EXCEEDED'] };
    }),
  ),
  fc
    .constantFrom(
      '[4294967295,4294967295]',
      '[65536,65536,65536,65536]',
      '[2,4.5]',
      '[-2,4]',
      '[2,"4"]',
      `[${Array<number>(33).fill(1).join(',')}]`,
      '[8]',
    )
    .map((dims) =>
      step(`infer with dims ${dims}`, (client, fresh) => {
        // byteLength stays that of [2, 4]: every product but 8 elements disagrees with it.
        const id = fresh();
        client.sendRaw(rawFrame(inferHeader(id, '', dims), inputBytes));
        return { kind: 'job-error', id, codes: [dims === '[8]' ? 'E_INPUT_SHAPE' : 'E_PROTOCOL'] };
      }),
    ),
  fc.constant(
    step('infer with zero rows', (client, fresh) => {
      const id = fresh();
      client.send({
        type: 'infer',
        id,
        model: 'mlp',
        inputs: { x: { dtype: 'float32', dims: [0, MLP.features], data: new Float32Array(0) } },
      });
      return { kind: 'result-or-error', id, codes: [] };
    }),
  ),
  fc.constant(
    step('hello again', (client) => {
      client.send({
        type: 'hello',
        protocolVersion: PROTOCOL_VERSION,
        client: { name: 'fuzz', version: '0' },
      });
      return { kind: 'null-error', codes: ['E_PROTOCOL'] };
    }),
  ),
  fc.constantFrom('never-sent', '', 'x'.repeat(128)).map((id) =>
    step(`cancel of "${id.slice(0, 8)}"`, (client) => {
      if (id === '') {
        client.sendRaw(rawFrame('{"type":"cancel","id":""}'));
        return { kind: 'null-error', codes: ['E_PROTOCOL'] };
      }
      client.send({ type: 'cancel', id });
      return { kind: 'nothing' };
    }),
  ),
  fc.integer({ min: 1, max: 20 }).map((count) =>
    step(`resume of ${count} unknown ids`, (client, fresh) => {
      const ids = Array.from({ length: count }, () => `${fresh()}-bogus`);
      client.send({ type: 'resume', ids });
      // Reported through the last: every id is answered, in order.
      return { kind: 'job-error', id: ids.at(-1)!, codes: ['E_JOB_NOT_FOUND'] };
    }),
  ),
  fc.constantFrom('{"type":"ping","nonce":1}', '', 'TNDM').map((text) =>
    step(`text frame "${text}"`, (client) => {
      client.sendRaw(text);
      return { kind: 'null-error', codes: ['E_PROTOCOL'] };
    }),
  ),
  fc.constantFrom('welcome', 'result', 'pong', 'x-unknown').map((type) =>
    step(`message of type ${type}`, (client) => {
      client.sendRaw(rawFrame(`{"type":"${type}","nonce":1}`));
      return { kind: 'null-error', codes: ['E_UNKNOWN_MESSAGE', 'E_PROTOCOL'] };
    }),
  ),
  fc
    .record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), keep: fc.nat() })
    .map(({ at, value, keep }) =>
      step(`damaged frame at ${at}`, (client, fresh) => {
        // An id no one-byte change turns into another step's (it is longer than all of them).
        const id = `damaged-${fresh()}`;
        const frame = encodeMessage({ type: 'infer', id, model: 'mlp', inputs: INPUTS });
        const damaged = frame.slice(0, frame.length - (keep % 3 === 0 ? keep % frame.length : 0));
        if (damaged.length > 0) damaged[at % damaged.length] = value;
        client.sendRaw(damaged);
        return { kind: 'any' };
      }),
    ),
  fc.constant(
    step('warm of an unknown model', (client) => {
      client.send({ type: 'warm', model: 'nope' });
      return { kind: 'null-error', codes: ['E_MODEL_NOT_FOUND'] };
    }),
  ),
);

/** The first outcome (result or error) under `id`, among `messages`. */
const outcomesOf = (messages: readonly ServerMessage[], id: string): ServerMessage[] =>
  messages.filter((m) => (m.type === 'result' || m.type === 'error') && m.id === id);

/** Checks every error is a documented code with its retryability, and no server fault. */
function checkErrors(messages: readonly ServerMessage[], label: string): void {
  for (const message of messages) {
    if (message.type !== 'error') continue;
    expect(Object.keys(ERROR_CODES), label).toContain(message.code);
    expect(SERVER_FAULTS, `${label}: ${message.message}`).not.toContain(message.code);
    expect(message.retryable, label).toBe(ERROR_CODES[message.code].retryable);
  }
}

/** Runs one session of steps; each step's answer is checked once a round trip has passed it. */
async function runSession(steps: readonly Step[], session: number): Promise<void> {
  const client = await connectClient(ctx.url);
  try {
    let next = 0;
    const fresh = (): string => `s${session}-${next++}`;
    for (const s of steps) {
      const before = client.received.length;
      const expectation = s.send(client, fresh);
      const label = `${s.label} (session ${session})`;
      // Results come after their job runs; a round trip alone proves the rest was answered.
      if (expectation.kind === 'result' || expectation.kind === 'result-or-error') {
        await client.collectJob(expectation.id);
      } else if (expectation.kind === 'twice') {
        await client.collectJob(expectation.id);
        await client.collectJob(expectation.id);
      } else if (expectation.kind === 'job-error') {
        await client.next(
          (m) => (m.type === 'result' || m.type === 'error') && m.id === expectation.id,
        );
      }
      await client.roundTrip();
      const answers = client.received
        .slice(before)
        .filter((m) => m.type !== 'pong' && m.type !== 'progress' && m.type !== 'model');
      checkErrors(answers, label);
      switch (expectation.kind) {
        case 'result': {
          const outcomes = outcomesOf(answers, expectation.id);
          expect(outcomes, label).toHaveLength(1);
          const outcome = outcomes[0]!;
          if (outcome.type !== 'result') throw new Error(`${label}: ${JSON.stringify(outcome)}`);
          expectSameTensors(outcome.outputs, expected);
          break;
        }
        case 'result-or-error': {
          const outcomes = outcomesOf(answers, expectation.id);
          expect(outcomes.length, label).toBeGreaterThanOrEqual(1);
          for (const outcome of outcomes) {
            if (outcome.type === 'error') expect(expectation.codes, label).toContain(outcome.code);
          }
          break;
        }
        case 'twice': {
          const outcomes = outcomesOf(answers, expectation.id);
          expect(outcomes, label).toHaveLength(2);
          expect(outcomes.some((m) => m.type === 'result')).toBe(true);
          for (const outcome of outcomes) {
            if (outcome.type === 'result') expectSameTensors(outcome.outputs, expected);
            else if (outcome.type === 'error') expect(outcome.code, label).toBe('E_DUPLICATE_JOB');
          }
          break;
        }
        case 'job-error': {
          const outcome = outcomesOf(answers, expectation.id)[0];
          expect(outcome?.type, label).toBe('error');
          if (outcome?.type === 'error') expect(expectation.codes, label).toContain(outcome.code);
          break;
        }
        case 'null-error': {
          const errors = answers.filter((m) => m.type === 'error' && m.id === null);
          expect(errors, label).toHaveLength(1);
          const error = errors[0]!;
          if (error.type === 'error') expect(expectation.codes, label).toContain(error.code);
          break;
        }
        case 'nothing':
          // Nothing at all; a job of a damaged frame sent earlier may still end meanwhile.
          expect(
            answers.filter((m) => !(m.type === 'result' || m.type === 'error') || m.id === null),
            label,
          ).toEqual([]);
          break;
        case 'any':
          break;
      }
    }
    // The session is still open and serving, whatever it sent.
    expect(client.closeInfo).toBeUndefined();
    const last = fresh();
    expectSameTensors(
      resultOf(await client.infer({ id: last, model: 'mlp', inputs: INPUTS })).outputs,
      expected,
    );
  } finally {
    await client.close();
  }
}

describe('ws-gateway under fuzzing', () => {
  it(`answers each message of random sessions as the protocol says, while a bystander is served (seed ${seed})`, async () => {
    const bystander = await connectClient(ctx.url);
    const run = { fuzzing: true };
    let served = 0;
    const serving = (async () => {
      while (run.fuzzing) {
        const log = await bystander.infer({ id: `b-${served}`, model: 'mlp', inputs: INPUTS });
        expectSameTensors(resultOf(log).outputs, expected);
        served++;
      }
    })();
    let session = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 12 }), async (steps) => {
          await runSession(steps, session++);
        }),
        { numRuns: Number(process.env.FUZZ_RUNS ?? 60), seed, endOnFailure: true },
      );
    } finally {
      run.fuzzing = false;
      await serving;
      await bystander.close();
    }
    expect(served).toBeGreaterThan(0);
    const ready = await fetch(`${ctx.url}/v2/health/ready`);
    expect(ready.status).toBe(200);
  });
});
