// Entry point of a session worker thread: owns one onnxruntime-node session and answers load, run
// and release requests. Outputs go back as transferred buffers (no copy).

import { parentPort } from 'node:worker_threads';
import { TandemError, type SerializedError, type TensorMap } from '@tandem/shared';
import { createSession, releaseSession, runSession, type LoadedSession } from './onnx-session.js';
import type { WorkerReply, WorkerRequest } from './session-messages.js';
import { writeResultFrames } from './result-frames.js';
import { packTensorMaps, unpackTensorMaps } from './tensor-pack.js';

const port = parentPort;
if (port === null) throw new Error('session-worker must run in a worker thread');

let loaded: LoadedSession | undefined;

function reply(message: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer);
}

/** Buffers to transfer: each output that owns its whole buffer moves; others are copied. */
function transferables(outputs: TensorMap): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const tensor of Object.values(outputs)) {
    if (tensor.dtype === 'string') continue;
    const { buffer, byteOffset, byteLength } = tensor.data;
    if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength)
      buffers.add(buffer);
  }
  return [...buffers];
}

// One request at a time, in order: the host may queue a second group behind a running one, and
// each run awaits onnxruntime (a macrotask), where the next message would otherwise start.
let previous: Promise<void> = Promise.resolve();
port.on('message', (message: WorkerRequest) => {
  previous = previous.then(() => handle(message));
});

async function handle(message: WorkerRequest): Promise<void> {
  switch (message.type) {
    case 'load':
      try {
        loaded = await createSession(message.path, message.settings);
        reply({ type: 'loaded', backend: loaded.backend, skipped: loaded.skipped });
      } catch (error) {
        reply({
          type: 'failed',
          id: null,
          error: TandemError.from(error, 'E_MODEL_LOAD_FAILED').toJSON(),
        });
      }
      return;
    case 'run':
      try {
        if (loaded === undefined) throw new TandemError('E_INTERNAL', 'run before load');
        const started = performance.now();
        const outputs = await runSession(loaded, message.inputs, message.outputs);
        const runMs = performance.now() - started;
        reply({ type: 'ran', id: message.id, outputs, runMs }, transferables(outputs));
      } catch (error) {
        reply({
          type: 'failed',
          id: message.id,
          error: TandemError.from(error, 'E_RUNTIME').toJSON(),
        });
      }
      return;
    case 'runEach': {
      const items = unpackTensorMaps(message.inputs);
      // Filled, not sparse: a failed item stays undefined and must still be visited.
      const outputs = new Array<TensorMap | undefined>(items.length).fill(undefined);
      const runMs = new Float64Array(items.length);
      const finishedAt = new Float64Array(items.length);
      let failures: Record<number, SerializedError> | undefined;
      // Every run queued at once: onnxruntime-node starts each run in a setImmediate, so they go
      // back to back in one turn of this thread's loop instead of one turn each (3 µs less per
      // run of a tiny model here). An item's answer arrives before the next run starts, so its
      // time runs from the previous item's end to its own.
      let previousEnd = performance.now();
      await Promise.all(
        items.map(async (inputs, index) => {
          try {
            if (loaded === undefined) throw new TandemError('E_INTERNAL', 'run before load');
            outputs[index] = await runSession(
              loaded,
              inputs,
              message.outputs?.[index] ?? undefined,
            );
          } catch (error) {
            (failures ??= {})[index] = TandemError.from(error, 'E_RUNTIME').toJSON();
          }
          const finished = performance.now();
          runMs[index] = finished - previousEnd;
          previousEnd = finished;
          finishedAt[index] = performance.timeOrigin + finished;
        }),
      );
      const failed = failures === undefined ? {} : { failures };
      if (message.results !== undefined) {
        // Result frames written here, off the main thread (see result-frames.ts).
        const frames = writeResultFrames(message.results, outputs, runMs, finishedAt);
        reply({ type: 'ranEach', id: message.id, frames, runMs, ...failed }, [
          frames.buffer,
          frames.ends.buffer as ArrayBuffer,
          runMs.buffer,
        ]);
        return;
      }
      // The outputs go back in one buffer: the copy happens here, off the main thread, and
      // saves the main thread an ArrayBuffer per output.
      const packed = packTensorMaps(outputs.map((itemOutputs) => itemOutputs ?? {}));
      reply({ type: 'ranEach', id: message.id, outputs: packed, runMs, ...failed }, [
        packed.buffer,
        runMs.buffer,
      ]);
      return;
    }
    case 'release':
      if (loaded !== undefined) await releaseSession(loaded);
      loaded = undefined;
      port?.close();
      return;
  }
}
