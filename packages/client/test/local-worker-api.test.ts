// The worker's warm-up model: valid ONNX that onnxruntime runs, and the model it says it is (built
// here again with the test fixtures' ONNX writer). The probe's use of it runs in
// test/client-local-runtime.test.ts (Node) and test/client-browser.test.ts (Chromium).

import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildModel } from '@tandem/test-support';
import { warmUpModel } from '../src/local-worker-api.js';

describe('warmUpModel', () => {
  it('is y = Identity(x) on float32[1], and onnxruntime runs it', async () => {
    expect(warmUpModel()).toEqual(
      buildModel({
        graphName: 'warm',
        inputs: [{ name: 'x', dtype: 'float32', dims: [1] }],
        outputs: [{ name: 'y', dtype: 'float32', dims: [1] }],
        nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
      }),
    );
    const session = await ort.InferenceSession.create(warmUpModel());
    const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array([3]), [1]) });
    expect(Array.from(y!.data as Float32Array)).toEqual([3]);
    await session.release();
  });
});
