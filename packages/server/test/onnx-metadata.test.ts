import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { TandemError, type TensorSpec } from '@tandem/shared';
import {
  REAL_MODEL_NAMES,
  buildMlpClassifier,
  buildModel,
  buildTinyModel,
  realModelPath,
} from '@tandem/test-support';
import { readOnnxMetadata } from '../src/onnx-metadata.js';
import { tempDir } from './server-fixtures.js';
import { errorCode as codeOf } from '@tandem/test-support';

const { dir, remove } = tempDir('onnx-metadata');
afterAll(remove);

let fileCount = 0;
function fileWith(bytes: Uint8Array): string {
  const path = join(dir, `model-${fileCount++}.onnx`);
  writeFileSync(path, bytes);
  return path;
}

// A few protobuf writers, to hand-craft what the model builder cannot express.
function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const field = (number: number, payload: number[] | string): number[] => {
  const bytes = typeof payload === 'string' ? [...Buffer.from(payload, 'utf8')] : payload;
  return [...varint(number * 8 + 2), ...varint(bytes.length), ...bytes];
};
const int = (number: number, value: number): number[] => [...varint(number * 8), ...varint(value)];
/** ValueInfoProto with a tensor type; `dims` undefined leaves the shape out (unknown rank). */
function valueInfo(name: string, elemType: number, dims?: (number | string | null)[]): number[] {
  const shape =
    dims === undefined
      ? []
      : field(
          2,
          dims.flatMap((dim) =>
            field(1, dim === null ? [] : typeof dim === 'number' ? int(1, dim) : field(2, dim)),
          ),
        );
  return field(1, name).concat(field(2, field(1, [...int(1, elemType), ...shape])));
}
function model(graph: number[], irVersion = 8): Uint8Array {
  return Uint8Array.from([...int(1, irVersion), ...field(7, graph)]);
}

/** onnxruntime's view of a model's inputs and outputs, in TensorSpec form. */
async function ortSpecs(path: string): Promise<{ inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  const session = await ort.InferenceSession.create(path);
  const toSpec = (meta: ort.InferenceSession.ValueMetadata): TensorSpec => {
    if (!meta.isTensor) throw new Error(`${meta.name} is not a tensor`);
    return {
      name: meta.name,
      dtype: meta.type as TensorSpec['dtype'],
      // onnxruntime reports an unnamed dynamic dim as ''; the reader calls it '?'.
      dims: meta.shape.map((dim) => (dim === '' ? '?' : dim)),
    };
  };
  const specs = {
    inputs: session.inputMetadata.map(toSpec),
    outputs: session.outputMetadata.map(toSpec),
  };
  await session.release();
  return specs;
}

describe('readOnnxMetadata on real models', () => {
  for (const name of REAL_MODEL_NAMES) {
    it(`declares what onnxruntime declares for ${name}`, async () => {
      const path = realModelPath(name);
      const metadata = readOnnxMetadata(path);
      expect(metadata.irVersion).toBeGreaterThan(0);
      expect(metadata.unsupported).toEqual([]);
      expect({ inputs: metadata.inputs, outputs: metadata.outputs }).toEqual(await ortSpecs(path));
    });
  }

  it('reads PaddleOCR recognition dims: fixed height 48, dynamic batch and width', () => {
    const [x] = readOnnxMetadata(realModelPath('paddleocr-rec')).inputs;
    expect(x).toEqual({
      name: 'x',
      dtype: 'float32',
      dims: ['p2o.DynamicDimension.0', 3, 48, 'p2o.DynamicDimension.1'],
    });
  });

  it('tells the scalar `sr` of Silero VAD ([]) from its dynamic inputs', () => {
    const { inputs, outputs } = readOnnxMetadata(realModelPath('silero-vad'));
    expect(inputs).toEqual([
      { name: 'input', dtype: 'float32', dims: ['?', '?'] },
      { name: 'state', dtype: 'float32', dims: [2, '?', 128] },
      { name: 'sr', dtype: 'int64', dims: [] },
    ]);
    expect(outputs.map((spec) => spec.name)).toEqual(['output', 'stateN']);
  });
});

describe('readOnnxMetadata on synthetic models', () => {
  it('reads the builder’s models, symbolic dims included', () => {
    const mlp = readOnnxMetadata(
      fileWith(buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 1 }).bytes),
    );
    expect(mlp).toEqual({
      irVersion: 8,
      inputs: [{ name: 'x', dtype: 'float32', dims: ['batch', 4] }],
      outputs: [
        { name: 'probs', dtype: 'float32', dims: ['batch', 3] },
        { name: 'label', dtype: 'int64', dims: ['batch'] },
      ],
      unsupported: [],
      externalData: [],
    });
  });

  it('leaves out graph inputs that are initializers (older exporters list weights as inputs)', () => {
    const bytes = buildModel({
      inputs: [
        { name: 'x', dtype: 'float32', dims: [2] },
        { name: 'w', dtype: 'float32', dims: [2] },
      ],
      outputs: [{ name: 'y', dtype: 'float32', dims: [2] }],
      initializers: [{ name: 'w', dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) }],
      nodes: [{ opType: 'Add', inputs: ['x', 'w'], outputs: ['y'] }],
    });
    expect(readOnnxMetadata(fileWith(bytes)).inputs).toEqual([
      { name: 'x', dtype: 'float32', dims: [2] },
    ]);
  });

  it('tells an unknown shape (no dims) from a scalar, and a dim with no value from a fixed one', () => {
    const graph = [
      ...field(11, valueInfo('unknown', 1)),
      ...field(11, valueInfo('scalar', 7, [])),
      ...field(11, valueInfo('blank', 1, [null, 3, ''])),
      ...field(12, valueInfo('y', 1, ['n'])),
    ];
    const metadata = readOnnxMetadata(fileWith(model(graph)));
    expect(metadata.inputs).toEqual([
      { name: 'unknown', dtype: 'float32' },
      { name: 'scalar', dtype: 'int64', dims: [] },
      { name: 'blank', dtype: 'float32', dims: ['?', 3, '?'] },
    ]);
  });

  it('seeks over weights: a 32 GiB initializer (a sparse file) is never read', () => {
    const weightBytes = 2 ** 35;
    // The initializer's name, then the raw_data field's tag and length; its bytes are a hole.
    const initializerHead = [
      ...field(8, 'w'),
      ...int(2, 1),
      ...varint(9 * 8 + 2),
      ...varint(weightBytes),
    ];
    const initializerLength = initializerHead.length + weightBytes;
    const tail = [
      ...field(11, valueInfo('x', 1, ['n', 3])),
      ...field(12, valueInfo('y', 1, ['n'])),
    ];
    const graphLength =
      varint(5 * 8 + 2).length + varint(initializerLength).length + initializerLength + tail.length;
    const head = Buffer.from([
      ...int(1, 8),
      ...varint(7 * 8 + 2),
      ...varint(graphLength),
      ...varint(5 * 8 + 2),
      ...varint(initializerLength),
      ...initializerHead,
    ]);
    const path = join(dir, 'sparse.onnx');
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, head, 0, head.byteLength, 0);
      writeSync(fd, Buffer.from(tail), 0, tail.length, head.byteLength + weightBytes);
    } finally {
      closeSync(fd);
    }
    expect(statSync(path).size).toBeGreaterThan(weightBytes);
    expect(readOnnxMetadata(path)).toEqual({
      irVersion: 8,
      inputs: [{ name: 'x', dtype: 'float32', dims: ['n', 3] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: ['n'] }],
      unsupported: [],
      externalData: [],
    });
  });

  it('lists inputs of element types neither onnxruntime supports (bfloat16) as unsupported', () => {
    const graph = [
      ...field(11, valueInfo('x', 16, [2])),
      ...field(11, valueInfo('ok', 1, [2])),
      ...field(12, valueInfo('y', 1, [2])),
    ];
    const metadata = readOnnxMetadata(fileWith(model(graph)));
    expect(metadata.unsupported).toEqual(['x']);
    expect(metadata.inputs.map((spec) => spec.name)).toEqual(['ok']);
  });
});

describe('readOnnxMetadata: external data', () => {
  /** A float32 TensorProto whose data is external at `location` (undefined: no location entry). */
  const externalTensor = (
    name: string,
    location: string | undefined,
    dataLocation = 1,
  ): number[] => [
    ...int(1, 4),
    ...int(2, 1),
    ...field(8, name),
    ...(location === undefined ? [] : field(13, [...field(1, 'location'), ...field(2, location)])),
    ...field(13, [...field(1, 'offset'), ...field(2, '0')]),
    ...field(13, [...field(1, 'length'), ...field(2, '16')]),
    ...int(14, dataLocation),
  ];
  const io = [...field(11, valueInfo('x', 1, [4])), ...field(12, valueInfo('y', 1, [4]))];

  it("lists the files a model's weights live in, each once: initializers, node tensors, subgraphs", () => {
    const mlp = buildMlpClassifier({
      features: 4,
      hidden: 8,
      classes: 3,
      seed: 1,
      externalData: 'w.bin',
    });
    expect(readOnnxMetadata(fileWith(mlp.bytes)).externalData).toEqual(['w.bin']);
    expect(
      readOnnxMetadata(
        fileWith(buildMlpClassifier({ features: 4, hidden: 8, classes: 3, seed: 1 }).bytes),
      ).externalData,
    ).toEqual([]);

    // An If node: a Constant-like tensor attribute, and a then_branch subgraph with its own
    // external initializer; the main graph's initializers share one file.
    const subgraph = [
      ...field(5, externalTensor('s', 'sub/deep.bin')),
      ...field(12, valueInfo('s', 1, [4])),
    ];
    const node = [
      ...field(1, 'c'),
      ...field(2, 'y'),
      ...field(4, 'If'),
      ...field(5, [...field(1, 'value'), ...field(5, externalTensor('v', 'attr.bin'))]),
      ...field(5, [...field(1, 'then_branch'), ...field(6, subgraph)]),
    ];
    const graph = [
      ...field(1, node),
      ...field(5, externalTensor('a', 'shared.bin')),
      ...field(5, externalTensor('b', 'shared.bin')),
      // External data entries without the EXTERNAL data location: the data is inside.
      ...field(5, externalTensor('inside', 'ignored.bin', 0)),
      ...io,
    ];
    expect(readOnnxMetadata(fileWith(model(graph))).externalData).toEqual([
      'attr.bin',
      'sub/deep.bin',
      'shared.bin',
    ]);
  });

  it('answers a tensor stored externally without a location with E_MODEL_LOAD_FAILED', () => {
    const graph = [...field(5, externalTensor('a', undefined)), ...io];
    expect(codeOf(() => readOnnxMetadata(fileWith(model(graph))))).toBe('E_MODEL_LOAD_FAILED');
  });
});

describe('readOnnxMetadata on files that are not ONNX models', () => {
  it('answers empty, text, graphless, missing and directory paths with E_MODEL_LOAD_FAILED', () => {
    const directory = join(dir, 'a-directory.onnx');
    mkdirSync(directory);
    const paths = [
      fileWith(new Uint8Array(0)),
      fileWith(new TextEncoder().encode('this is not an onnx model\n')),
      fileWith(Uint8Array.from(int(1, 8))), // an ir_version and nothing else
      fileWith(model(field(11, valueInfo('x', 1, [1])), 0)), // a graph without ir_version
      join(dir, 'missing.onnx'),
      directory,
    ];
    for (const path of paths)
      expect(
        codeOf(() => readOnnxMetadata(path)),
        path,
      ).toBe('E_MODEL_LOAD_FAILED');
  });

  it('answers a truncated real model with E_MODEL_LOAD_FAILED', () => {
    const bytes = readFileSync(realModelPath('paddleocr-cls'));
    for (const fraction of [0.001, 0.1, 0.5, 0.9, 0.9999]) {
      const cut = fileWith(bytes.subarray(0, Math.floor(bytes.byteLength * fraction)));
      expect(
        codeOf(() => readOnnxMetadata(cut)),
        String(fraction),
      ).toBe('E_MODEL_LOAD_FAILED');
    }
  });

  it('either reads every prefix of a model or refuses it with E_MODEL_LOAD_FAILED', () => {
    const bytes = buildTinyModel().bytes;
    const full = readOnnxMetadata(fileWith(bytes));
    for (let length = 0; length < bytes.byteLength; length++) {
      const path = fileWith(bytes.subarray(0, length));
      let metadata;
      try {
        metadata = readOnnxMetadata(path);
      } catch (error) {
        expect(error).toBeInstanceOf(TandemError);
        expect((error as TandemError).code).toBe('E_MODEL_LOAD_FAILED');
        continue;
      }
      // Only a cut after the whole graph (before opset_import) may still read, and reads it all.
      expect(metadata, `prefix of ${length}`).toEqual(full);
    }
  });

  it('never throws anything but E_MODEL_LOAD_FAILED on arbitrary bytes', () => {
    const path = join(dir, 'fuzz.onnx');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 256 }),
          // Mutations of a real, small model reach deeper into the parser than noise does.
          fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([at, patch]) => {
            const bytes = buildTinyModel().bytes.slice();
            bytes.set(patch.subarray(0, bytes.length - (at % bytes.length)), at % bytes.length);
            return bytes;
          }),
        ),
        (bytes) => {
          writeFileSync(path, bytes);
          try {
            readOnnxMetadata(path);
          } catch (error) {
            expect(error).toBeInstanceOf(TandemError);
            expect((error as TandemError).code).toBe('E_MODEL_LOAD_FAILED');
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
