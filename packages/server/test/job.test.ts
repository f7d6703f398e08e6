import { describe, expect, it } from 'vitest';
import { encodeMessage, type ProgressEvent, type ResultMessage } from '@tandem/shared';
import { Job } from '../src/job.js';

const request = { id: 'j1', owner: 'anonymous', model: 'tiny', inputs: {}, priority: 0 };

describe('Job.succeedWithFrame', () => {
  it('settles once with the frame, its result decoded from it when read, and reports done', async () => {
    const job = new Job(request, undefined, performance.now());
    const events: ProgressEvent[] = [];
    job.listen((event) => events.push(event));
    const message: ResultMessage = {
      type: 'result',
      id: 'j1',
      model: 'tiny',
      version: '1',
      outputs: { y: { dtype: 'float32', dims: [2], data: new Float32Array([0.5, -2]) } },
      backend: 'cpu',
      coldStart: true,
      timings: { queueMs: 0.125, loadMs: 3, warmupMs: 1.5, runMs: 0.25, totalMs: 5 },
    };
    const frame = encodeMessage(message);
    expect(job.succeedWithFrame(frame)).toBe(true);
    expect(job.succeedWithFrame(encodeMessage({ ...message, id: 'other' }))).toBe(false);
    expect(job.settled).toBe(true);
    const outcome = await job.outcome;
    if (!outcome.ok) throw outcome.error;
    expect(outcome.frame).toBe(frame);
    expect({ type: 'result', ...outcome.result }).toEqual(message);
    // Decoded once: later reads see the same object.
    expect(outcome.result).toBe(outcome.result);
    expect(events.at(-1)).toMatchObject({ stage: 'done', fraction: 1 });
  });

  it('reports a frame that holds no result as an internal error when read', async () => {
    const job = new Job(request, undefined, performance.now());
    job.succeedWithFrame(encodeMessage({ type: 'pong', nonce: 1 }));
    const outcome = await job.outcome;
    if (!outcome.ok) throw outcome.error;
    expect(() => outcome.result).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
  });
});

describe('Job.unlisten', () => {
  it('stops only the listener it is given: one that took over since keeps hearing the job', () => {
    const job = new Job(request, undefined, performance.now());
    const old: ProgressEvent[] = [];
    const current: ProgressEvent[] = [];
    const oldListener = (event: ProgressEvent): void => void old.push(event);
    job.listen(oldListener);
    job.listen((event) => current.push(event));
    job.unlisten(oldListener);
    job.progress({ stage: 'queued', queuePosition: 0 });
    expect(current.map((event) => event.stage)).toEqual(['queued']);
    expect(old).toEqual([]);
  });
});
