// One OCR run as the demo performs it: every model call goes through the Tandem client with the
// chosen placement, gets its own <tandem-progress>, and is recorded for the panel. Detection
// prefers this device and recognition the server (the server's manifests say so), unless the
// person picks a side.

import type { RunResult, Tandem } from '@tandem/client';
import type { TandemProgressElement } from '@tandem/client/progress';
import type { Placement, TensorMap } from '@tandem/shared';
import {
  DEFAULT_OCR_MODELS,
  runOcr,
  type OcrDictionary,
  type OcrLine,
  type RgbaImage,
} from '../ocr/index.js';
import type { StepRecord } from './steps-panel.js';

/** The placement switch: auto, this device, or the server. */
export type PlacementChoice = 'auto' | 'local' | 'server';

/** The router placement each choice asks for. */
export const PLACEMENT_FOR: Record<PlacementChoice, Placement> = {
  auto: 'auto',
  local: 'local-only',
  server: 'remote-only',
};

/** What {@link runDemoOcr} needs from the page. */
export interface DemoOcrOptions {
  readonly tandem: Tandem;
  readonly dictionary: OcrDictionary;
  readonly placement: PlacementChoice;
  /** Adds a progress element for a new job and returns it (the page owns the list). */
  readonly addProgress: (label: string) => TandemProgressElement;
  /** Called after each model call finishes, with every step so far. */
  readonly onStep: (steps: readonly StepRecord[]) => void;
  readonly signal: AbortSignal;
}

/** Runs OCR on an image; resolves with the lines, rejects with the first job's TandemError. */
export async function runDemoOcr(image: RgbaImage, options: DemoOcrOptions): Promise<OcrLine[]> {
  const steps: StepRecord[] = [];
  let recognitionBatch = 0;
  const placement = PLACEMENT_FOR[options.placement];
  return runOcr(image, {
    dictionary: options.dictionary,
    signal: options.signal,
    runModel: async (model: string, inputs: TensorMap): Promise<TensorMap> => {
      const step =
        model === DEFAULT_OCR_MODELS.detection
          ? 'Find text'
          : `Read lines (batch ${++recognitionBatch})`;
      const job = options.tandem.run(model, inputs, { placement, signal: options.signal });
      const progress = options.addProgress(step);
      progress.job = job;
      const result: RunResult = await job;
      steps.push({ step, model, result });
      options.onStep([...steps]);
      return result.outputs;
    },
  });
}
