import { describe, expect, it } from 'vitest';
import type { ModelStatus } from '@tandem/shared';
import { MODEL_HEARTBEAT_MS, ModelStates } from '../src/redis-model-states.js';

const status = (fields: Partial<ModelStatus>): ModelStatus => ({
  name: 'm',
  version: '1',
  state: 'ready',
  instances: 1,
  ...fields,
});

describe('ModelStates', () => {
  it("keeps each measured average from the freshest report that has it: a fresh worker's empty one hides none", () => {
    const states = new ModelStates(() => undefined);
    states.report('a', status({ estimates: { loadMs: 300, warmupMs: 40, runMs: 20 } }), 1000);
    states.report('b', status({ state: 'unloaded', instances: 0, estimates: {} }), 1100);
    states.report('c', status({ estimates: { runMs: 30 } }), 1200);
    expect(states.merged('m', '1', 1300)).toMatchObject({
      state: 'ready',
      instances: 2,
      estimates: { loadMs: 300, warmupMs: 40, runMs: 30 },
    });
    expect(states.capacity('m', '1', 1300)).toEqual({
      estimates: { loadMs: 300, warmupMs: 40, runMs: 30 },
      instances: 2,
      ready: 2,
    });
  });

  it('reports the worker furthest along in a cold start, timed from its first report of the stage', () => {
    const states = new ModelStates(() => undefined);
    const estimates = { loadMs: 300, warmupMs: 40, runMs: 20 };
    states.report('a', status({ state: 'loading', instances: 0, estimates }), 1000);
    states.report('a', status({ state: 'loading', instances: 0, estimates }), 1200);
    expect(states.capacity('m', '1', 1250)?.starting).toEqual({ stage: 'loading', elapsedMs: 250 });
    states.report('b', status({ state: 'warming', instances: 0, estimates }), 1300);
    expect(states.capacity('m', '1', 1310)).toMatchObject({
      ready: 0,
      starting: { stage: 'warming', elapsedMs: 10 },
    });
  });

  it('has no capacity for a model no live worker reports (a pool scaled to zero)', () => {
    const states = new ModelStates(() => undefined);
    expect(states.capacity('m', '1', 0)).toBeUndefined();
    states.report('a', status({ estimates: { runMs: 20 } }), 0);
    expect(states.capacity('m', '1', 3 * MODEL_HEARTBEAT_MS + 1)).toBeUndefined();
  });
});
