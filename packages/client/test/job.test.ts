import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { TandemError, type ProgressEvent } from '@tandem/shared';
import { Job, type JobController } from '../src/job.js';
import type { RunResult } from '../src/run-result.js';

const result: RunResult = {
  outputs: {},
  placement: 'local',
  backend: 'wasm',
  reason: 'test',
  cold: false,
  timings: { downloadMs: 0, compileMs: 0, queueMs: 0, loadMs: 0, runMs: 1, totalMs: 1 },
};

function event(stage: ProgressEvent['stage'], fraction: number): ProgressEvent {
  return { jobId: 'j', model: 'm', where: 'local', stage, fraction, elapsedMs: 0 };
}

/** A job whose controller the test drives by hand. */
function manualJob(signal?: AbortSignal): { job: Job; controller: JobController } {
  let controller!: JobController;
  const job = new Job('j', 'm', (c) => (controller = c), signal);
  return { job, controller };
}

async function collect(job: Job): Promise<string[]> {
  const stages: string[] = [];
  for await (const e of job) stages.push(e.stage);
  return stages;
}

describe('Job', () => {
  it("lets go of the caller's signal once settled: a signal shared by many calls does not keep every job (and its outputs)", async () => {
    const shared = new AbortController();
    const done = manualJob(shared.signal);
    const failed = manualJob(shared.signal);
    const open = manualJob(shared.signal);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(3);
    done.controller.resolve(result);
    failed.controller.reject(new TandemError('E_RUNTIME', 'failed'));
    await done.job;
    await failed.job.catch(() => undefined);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(1);
    // The job still running is still cancelled by it.
    shared.abort();
    expect(open.controller.signal.aborted).toBe(true);
  });

  it('is awaitable and resolves once with the result', async () => {
    const { job, controller } = manualJob();
    controller.resolve(result);
    controller.reject(new Error('late'));
    await expect(job).resolves.toBe(result);
    expect(job.settled).toBe(true);
  });

  it('gives every iterator the whole event sequence, even one attached late', async () => {
    const { job, controller } = manualJob();
    const early = collect(job);
    controller.progress(event('download', 0.3));
    controller.progress(event('running', 0.8));
    const late = collect(job);
    controller.progress(event('done', 1));
    controller.resolve(result);
    expect(await early).toEqual(['download', 'running', 'done']);
    expect(await late).toEqual(['download', 'running', 'done']);
    expect(job.lastProgress?.stage).toBe('done');
  });

  it('turns any failure into a TandemError', async () => {
    const { job, controller } = manualJob();
    controller.reject(new RangeError('boom'));
    await expect(job).rejects.toBeInstanceOf(TandemError);
    await expect(job).rejects.toMatchObject({ code: 'E_INTERNAL' });
  });

  it('cancel() aborts the controller signal with E_CANCELLED', async () => {
    const { job, controller } = manualJob();
    controller.signal.addEventListener('abort', () => controller.reject(controller.signal.reason));
    job.cancel();
    await expect(job).rejects.toMatchObject({ code: 'E_CANCELLED' });
    job.cancel(); // no effect once settled
  });

  it("follows the caller's AbortSignal", async () => {
    const abort = new AbortController();
    const { job, controller } = manualJob(abort.signal);
    controller.signal.addEventListener('abort', () => controller.reject(controller.signal.reason));
    abort.abort();
    await expect(job).rejects.toMatchObject({ code: 'E_CANCELLED' });
  });

  it('rejects when the starter throws', async () => {
    const job = new Job('j', 'm', () => {
      throw new TandemError('E_NO_BACKEND', 'none');
    });
    await expect(job).rejects.toMatchObject({ code: 'E_NO_BACKEND' });
  });
});
