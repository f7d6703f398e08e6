import { describe, expect, it } from 'vitest';
import { TandemError } from '@tandem/shared';
import { Job } from '../src/job.js';
import { JobRegistry } from '../src/job-registry.js';

function job(id: string, owner = 'alice'): Job {
  return new Job({ id, owner, model: 'm', inputs: {}, priority: 5 }, undefined, 0);
}

/** Lets the registry see settled outcomes (it hears them on the outcome promise). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('JobRegistry', () => {
  it('keeps a live job, refuses a second live job with its id, and scopes ids by owner', () => {
    const registry = new JobRegistry(1000, () => 0);
    const first = job('a');
    expect(registry.add(first)).toBe(true);
    expect(registry.add(job('a'))).toBe(false);
    expect(registry.add(job('a', 'bob'))).toBe(true);
    expect(registry.get('alice', 'a')).toBe(first);
    expect(registry.size).toBe(2);
  });

  it('keeps a settled job until its TTL has passed, then a sweep forgets it', async () => {
    let now = 0;
    const registry = new JobRegistry(1000, () => now);
    const early = job('early');
    const late = job('late');
    registry.add(early);
    registry.add(late);
    early.fail(new TandemError('E_RUNTIME', 'x'));
    await settle();
    now = 500;
    late.fail(new TandemError('E_RUNTIME', 'y'));
    await settle();
    now = 999;
    registry.sweep();
    expect(registry.get('alice', 'early')).toBe(early);
    now = 1000;
    registry.sweep();
    expect(registry.get('alice', 'early')).toBeUndefined();
    expect(registry.get('alice', 'late')).toBe(late);
    now = 1500;
    registry.sweep();
    expect(registry.size).toBe(0);
  });

  it('never expires a job that has not settled', () => {
    let now = 0;
    const registry = new JobRegistry(10, () => now);
    const live = job('live');
    registry.add(live);
    now = 1e9;
    registry.sweep();
    expect(registry.get('alice', 'live')).toBe(live);
  });

  it('forgets a job on delete, only if it is the one held', async () => {
    const registry = new JobRegistry(1000, () => 0);
    const first = job('a');
    registry.add(first);
    first.fail(new TandemError('E_RUNTIME', 'x'));
    await settle();
    const second = job('a');
    expect(registry.add(second)).toBe(true); // the first settled: its id may be used again
    expect(registry.delete(first)).toBe(false);
    expect(registry.get('alice', 'a')).toBe(second);
    expect(registry.delete(second)).toBe(true);
    expect(registry.size).toBe(0);
  });

  it('does not let an earlier job with the same id expire its successor', async () => {
    let now = 0;
    const registry = new JobRegistry(100, () => now);
    const first = job('a');
    registry.add(first);
    first.fail(new TandemError('E_RUNTIME', 'x'));
    await settle();
    const second = job('a');
    registry.add(second);
    now = 1000;
    registry.sweep();
    expect(registry.get('alice', 'a')).toBe(second);
  });
});

describe('Job', () => {
  it('drops its inputs once settled, keeping the rest of the request', () => {
    const data = new Float32Array(4);
    const made = new Job(
      {
        id: 'j',
        owner: 'o',
        model: 'm',
        inputs: { x: { dtype: 'float32', dims: [4], data } },
        priority: 5,
      },
      undefined,
      0,
    );
    expect(made.request.inputs.x?.data).toBe(data);
    made.fail(new TandemError('E_CANCELLED', 'stop'));
    expect(made.request.inputs).toEqual({});
    expect(made.request.id).toBe('j');
  });

  it('counts elapsed time from receipt even when its first event comes later', () => {
    const receivedAt = performance.now() - 250;
    const made = new Job(
      { id: 'j', owner: 'o', model: 'm', inputs: {}, priority: 5 },
      undefined,
      receivedAt,
    );
    const events: number[] = [];
    made.listen((event) => events.push(event.elapsedMs));
    made.progress({ stage: 'queued', queuePosition: 0 });
    expect(events[0]).toBeGreaterThanOrEqual(250);
  });
});
