import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TENSOR_DTYPES, type InferMessage, type ResultMessage } from '../src/index.js';
import { inferHeader, resultHeader, type TensorDescriptor } from '../src/frame-header.js';
import { messageArbs } from './arbitraries.js';

/**
 * Any UTF-16 string, and ASCII ones with the characters JSON must escape: quotes, backslashes,
 * controls, and a non-ASCII letter or lone surrogate now and then.
 */
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({
    unit: fc.constantFrom('a', 'Z', '0', ' ', '"', '\\', '\n', '\x7f', 'é', '\ud800'),
    maxLength: 12,
  }),
);

const descriptorsArb: fc.Arbitrary<TensorDescriptor[]> = fc.array(
  fc.record({
    name: anyString,
    dtype: fc.constantFrom(...TENSOR_DTYPES),
    dims: fc.array(fc.nat(5000), { maxLength: 4 }),
    offset: fc.nat(),
    byteLength: fc.nat(),
  }),
  { maxLength: 3 },
);

/** What JSON.stringify would have sent, as the peer parses it. */
function viaStringify(message: object, field: string, descriptors: TensorDescriptor[]): unknown {
  return JSON.parse(JSON.stringify({ ...message, [field]: descriptors }));
}

/** Printable ASCII, and DEL (JSON leaves it as it is): every control character is escaped. */
const ASCII = /^[\x20-\x7f]*$/;

describe('frame headers', () => {
  it('parse to what JSON.stringify gives for infer, and are ASCII', () => {
    fc.assert(
      fc.property(
        messageArbs.infer,
        anyString,
        anyString,
        fc.array(anyString, { maxLength: 3 }),
        descriptorsArb,
        (message, id, model, outputs, descriptors) => {
          const infer = { ...(message as InferMessage), id, model, outputs };
          const text = inferHeader(infer, descriptors);
          expect(text).toMatch(ASCII);
          expect(JSON.parse(text)).toEqual(viaStringify(infer, 'inputs', descriptors));
        },
      ),
    );
  });

  it('parse to what JSON.stringify gives for result, and are ASCII', () => {
    fc.assert(
      fc.property(
        messageArbs.result,
        anyString,
        anyString,
        descriptorsArb,
        (message, id, version, d) => {
          const result = { ...(message as ResultMessage), id, version };
          const text = resultHeader(result, d);
          expect(text).toMatch(ASCII);
          expect(JSON.parse(text)).toEqual(viaStringify(result, 'outputs', d));
        },
      ),
    );
  });

  it('write non-finite numbers as null and leave optional fields out, as JSON.stringify does', () => {
    const infer: InferMessage = { type: 'infer', id: 'a', model: 'm', inputs: {}, deadlineMs: NaN };
    expect(JSON.parse(inferHeader(infer, []))).toEqual({
      type: 'infer',
      id: 'a',
      model: 'm',
      inputs: [],
      deadlineMs: null,
    });
  });

  it('pass a wrongly typed field from plain JavaScript through as JSON.stringify would', () => {
    // The peer then rejects it by its type, as before, rather than by a broken header.
    const infer = {
      type: 'infer',
      id: 5,
      model: ['m'],
      inputs: {},
      progress: 'yes',
      outputs: 'y',
    } as unknown as InferMessage;
    expect(JSON.parse(inferHeader(infer, []))).toEqual(viaStringify(infer, 'inputs', []));
  });
});
