import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TandemError, type ProgressEvent, type ProgressStage } from '@tandem/shared';
import {
  ProgressViewModel,
  describeError,
  formatByteProgress,
  formatBytes,
  formatDuration,
  formatEta,
} from '../src/progress-view-model.js';

/** A view model on a clock the test moves by hand. */
function fakeClock(): { model: ProgressViewModel; advance: (ms: number) => void } {
  let now = 0;
  return {
    model: new ProgressViewModel({ now: () => now }),
    advance: (ms) => {
      now += ms;
    },
  };
}

function event(
  stage: ProgressStage,
  fraction: number,
  extra: Partial<Omit<ProgressEvent, 'stage' | 'fraction'>> = {},
): ProgressEvent {
  return { jobId: 'j', model: 'm', where: 'local', stage, fraction, elapsedMs: 0, ...extra };
}

describe('ProgressViewModel words', () => {
  it('says what each local stage is doing, and where', () => {
    const { model } = fakeClock();
    expect(model.view()).toMatchObject({ state: 'idle', label: 'Not started', where: '' });
    model.update(event('resolve', 0));
    expect(model.view()).toMatchObject({
      state: 'running',
      label: 'Getting ready…',
      where: 'On this device',
    });
    model.update(event('download', 0.27, { loaded: 12_300_000, total: 44_000_000 }));
    expect(model.view()).toMatchObject({
      label: 'Downloading model 12.3 / 44.0 MB',
      valueText: 'Downloading model 12.3 / 44.0 MB, 27%',
      mode: 'measured',
      animating: false,
      announcement: 'Downloading model',
    });
    model.update(event('cache', 0.6, { loaded: 0, total: 44_000_000 }));
    expect(model.view().label).toBe('Saving model for next time…');
    model.update(event('compile', 0.62, { loaded: 7_000_000, total: 14_000_000 }));
    expect(model.view().label).toBe('Downloading runtime 7.0 / 14.0 MB');
    model.update(event('compile', 0.65));
    expect(model.view()).toMatchObject({
      label: 'Preparing model…',
      mode: 'estimate',
      animating: true,
    });
    model.update(event('warmup', 0.8));
    expect(model.view().label).toBe('Warming up…');
    model.update(event('running', 0.85));
    expect(model.view()).toMatchObject({ label: 'Running…', announcement: 'Running' });
    model.showResult({ placement: 'local', backend: 'webgpu', timings: { totalMs: 1400 } });
    expect(model.view()).toMatchObject({
      state: 'done',
      label: 'Done in 1.4 s',
      where: 'On this device · WebGPU',
      value: 100,
      percent: 100,
      animating: false,
      eta: '',
    });
  });

  it('reads a cached model as reading, not saving', () => {
    const { model } = fakeClock();
    model.update(event('cache', 0.5, { loaded: 600_000, total: 600_000 }));
    expect(model.view().label).toBe('Reading model from this device…');
  });

  it('says what each remote stage is doing: queue position, cold start, running', () => {
    const { model } = fakeClock();
    model.update(event('queued', 0, { where: 'remote', queuePosition: 3 }));
    expect(model.view()).toMatchObject({
      label: 'In queue: 3 ahead',
      where: 'On the server',
      mode: 'measured',
      announcement: 'In queue',
    });
    model.update(event('queued', 0.05, { where: 'remote', queuePosition: 0 }));
    expect(model.view().label).toBe('Next in queue');
    model.update(event('loading', 0.1, { where: 'remote' }));
    expect(model.view()).toMatchObject({
      label: 'Waking the server…',
      announcement: 'Waking the server',
    });
    model.update(event('warmup', 0.5, { where: 'remote' }));
    expect(model.view().label).toBe('Warming up the server…');
    model.update(event('running', 0.6, { where: 'remote', etaMs: 0 }));
    expect(model.view()).toMatchObject({ label: 'Running…', mode: 'estimate', eta: '' });
    model.showResult({
      placement: 'remote',
      backend: 'cuda',
      fallback: { from: 'local', code: 'E_OUT_OF_MEMORY', message: 'oom' },
      timings: { totalMs: 65_000 },
    });
    expect(model.view()).toMatchObject({
      label: 'Done in 1 min 5 s',
      where: 'On the server · CUDA (after this device failed: E_OUT_OF_MEMORY)',
    });
  });

  it('shows an error with its code, and E_CANCELLED as cancelled', () => {
    const failed = fakeClock().model;
    failed.update(event('running', 0.4, { where: 'remote' }));
    failed.showError(new TandemError('E_BUSY', 'the queue is full', { retryAfterMs: 2000 }));
    const view = failed.view();
    expect(view).toMatchObject({ state: 'error', label: 'Failed', animating: false });
    expect(view.error).toEqual({
      code: 'E_BUSY',
      message: 'the queue is full',
      retryable: true,
      retryAfterMs: 2000,
    });
    expect(view.announcement).toBe('Failed: E_BUSY. the queue is full');
    expect(view.percent).toBe(40);

    const cancelled = fakeClock().model;
    cancelled.update(event('download', 0.1, { loaded: 1, total: 10 }));
    cancelled.showError(new TandemError('E_CANCELLED', 'job j was cancelled'));
    expect(cancelled.view()).toMatchObject({ state: 'cancelled', label: 'Cancelled' });
    expect(cancelled.view().error?.code).toBe('E_CANCELLED');
    // Later events of the same job change nothing.
    cancelled.update(event('running', 0.9));
    expect(cancelled.view()).toMatchObject({ state: 'cancelled', percent: 10 });
  });

  it('keeps the code of an error from another realm, and codes anything else E_INTERNAL', () => {
    expect(describeError({ code: 'E_NETWORK', message: 'down', retryable: true })).toEqual({
      code: 'E_NETWORK',
      message: 'down',
      retryable: true,
    });
    expect(describeError(new Error('boom'))).toEqual({
      code: 'E_INTERNAL',
      message: 'boom',
      retryable: false,
    });
  });

  it('starts over when an event of another job arrives after the end', () => {
    const { model } = fakeClock();
    model.update(event('done', 1, { elapsedMs: 300 }));
    expect(model.view()).toMatchObject({ state: 'done', label: 'Done in 0.3 s' });
    model.update({ ...event('resolve', 0), jobId: 'k' });
    expect(model.view()).toMatchObject({ state: 'running', percent: 0 });
  });
});

describe('ProgressViewModel ETA and curves', () => {
  it('follows the server ETA between events, counting down the time left', () => {
    const { model, advance } = fakeClock();
    model.update(event('queued', 0.1, { where: 'remote', queuePosition: 2, etaMs: 10_000 }));
    expect(model.view()).toMatchObject({ mode: 'eta', eta: 'about 10 s left', animating: true });
    advance(4000);
    expect(model.view().eta).toBe('about 6 s left');
    advance(1000);
    // Half the ETA gone: half of what was left of the bar (below its 99% cap) is shown.
    expect(model.view().value).toBeCloseTo(10 + (99 - 10) * 0.5, 6);
    advance(60_000);
    const late = model.view();
    expect(late.eta).toBe('almost done');
    expect(late.value).toBeLessThan(99);
    expect(late.percent).toBeLessThan(99);
  });

  it('estimates a download from its measured byte rate', () => {
    const { model, advance } = fakeClock();
    model.update(event('download', 0, { loaded: 0, total: 44_000_000 }));
    expect(model.view().eta).toBe('');
    advance(1000);
    model.update(event('download', 0.06, { loaded: 4_400_000, total: 44_000_000 }));
    expect(model.view().eta).toBe('about 9 s left · 4.4 MB/s');
  });

  it('fills a stage of unknown length quickly at first, then slower, never to the end', () => {
    const { model, advance } = fakeClock();
    model.update(event('running', 0.5));
    const values = [model.view().value];
    for (let i = 0; i < 10; i++) {
      advance(1000);
      values.push(model.view().value);
    }
    const steps = values.slice(1).map((v, i) => v - values[i]!);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!).toBeLessThan(steps[i - 1]!);
    advance(10 * 60_000);
    expect(model.view().value).toBeLessThan(99.00001);
    expect(model.view().percent).toBeLessThanOrEqual(99);
    expect(model.view().state).toBe('running');
  });

  it('does not restart the curve on more events of the same stage', () => {
    const { model, advance } = fakeClock();
    model.update(event('compile', 0.3));
    advance(2000);
    const before = model.view().value;
    model.update(event('compile', 0.3));
    advance(1000);
    const a = model.view().value - before;
    // A restarted curve would move faster than the first one did in its third second.
    const { model: fresh, advance: freshAdvance } = fakeClock();
    fresh.update(event('compile', 0.3));
    freshAdvance(2000);
    const freshBefore = fresh.view().value;
    freshAdvance(1000);
    expect(a).toBeCloseTo(fresh.view().value - freshBefore, 9);
  });

  it('never shows less than before when an event reports a lower fraction', () => {
    const { model, advance } = fakeClock();
    model.update(event('download', 0.5, { loaded: 5, total: 10 }));
    advance(100);
    model.update(event('compile', 0.2));
    expect(model.view().value).toBeGreaterThanOrEqual(50);
    model.update(event('running', 0.99));
    expect(model.view().value).toBeLessThanOrEqual(99);
  });

  it('never decreases, and reaches 100 only when done (property)', () => {
    const stages = [
      'resolve',
      'download',
      'cache',
      'compile',
      'warmup',
      'queued',
      'loading',
      'running',
    ] as const;
    const progress = fc.record({
      kind: fc.constant('event' as const),
      stage: fc.constantFrom(...stages),
      where: fc.constantFrom('local' as const, 'remote' as const),
      fraction: fc.double({ min: 0, max: 1, noNaN: true }),
      bytes: fc.option(fc.tuple(fc.nat(1e9), fc.integer({ min: 1, max: 1e9 }))),
      queuePosition: fc.option(fc.nat(100)),
      etaMs: fc.option(fc.double({ min: 0, max: 1e6, noNaN: true })),
    });
    const action = fc.oneof(
      { weight: 8, arbitrary: progress },
      {
        weight: 8,
        arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.nat(20_000) }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('end' as const),
          how: fc.constantFrom('done-event', 'result', 'error', 'cancel', 'error-event'),
        }),
      },
    );
    fc.assert(
      fc.property(fc.array(action, { maxLength: 60 }), (actions) => {
        const { model, advance } = fakeClock();
        let previous = model.view();
        for (const a of actions) {
          if (a.kind === 'wait') advance(a.ms);
          else if (a.kind === 'event') {
            const extra: Partial<ProgressEvent> & { where: 'local' | 'remote' } = {
              where: a.where,
            };
            const e: ProgressEvent = {
              ...event(a.stage, a.fraction, extra),
              ...(a.bytes === null
                ? {}
                : { loaded: Math.min(a.bytes[0], a.bytes[1]), total: a.bytes[1] }),
              ...(a.queuePosition === null ? {} : { queuePosition: a.queuePosition }),
              ...(a.etaMs === null ? {} : { etaMs: a.etaMs }),
            };
            model.update(e);
          } else if (a.how === 'done-event') model.update(event('done', 1));
          else if (a.how === 'error-event') model.update(event('error', 0));
          else if (a.how === 'result') model.showResult({ placement: 'local', backend: 'wasm' });
          else
            model.showError(new TandemError(a.how === 'cancel' ? 'E_CANCELLED' : 'E_RUNTIME', 'x'));
          const view = model.view();
          expect(view.value).toBeGreaterThanOrEqual(previous.value);
          expect(view.percent).toBeGreaterThanOrEqual(previous.percent);
          expect(view.value === 100).toBe(view.state === 'done');
          expect(view.percent === 100).toBe(view.state === 'done');
          expect(view.value).toBeGreaterThanOrEqual(0);
          expect(view.percent).toBe(view.state === 'done' ? 100 : Math.floor(view.value));
          if (view.state !== 'running') expect(view.animating).toBe(false);
          previous = view;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('progress words', () => {
  it('formats bytes, durations and time left', () => {
    expect(formatBytes(12)).toBe('12 B');
    expect(formatBytes(600_000)).toBe('600 kB');
    expect(formatBytes(44_000_000)).toBe('44.0 MB');
    expect(formatBytes(2_500_000_000)).toBe('2.5 GB');
    expect(formatByteProgress(120_000, 600_000)).toBe('120 / 600 kB');
    expect(formatByteProgress(12_345_678, 44_000_000)).toBe('12.3 / 44.0 MB');
    expect(formatByteProgress(512, 900)).toBe('512 / 900 B');
    expect(formatByteProgress(3_000_000, undefined)).toBe('3.0 MB');
    expect(formatDuration(412)).toBe('0.4 s');
    expect(formatDuration(1400)).toBe('1.4 s');
    expect(formatDuration(12_400)).toBe('12 s');
    expect(formatDuration(120_000)).toBe('2 min');
    expect(formatDuration(3_780_000)).toBe('1 h 3 min');
    expect(formatEta(400)).toBe('less than a second left');
    expect(formatEta(4000)).toBe('about 4 s left');
    expect(formatEta(150_000)).toBe('about 3 min left');
    expect(formatEta(0)).toBe('almost done');
  });
});
