import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PLACEMENTS, type ModelManifest } from '@tandem/shared';
import {
  FALLBACK_CODES,
  allowsFallback,
  decidePlacement,
  meetsBackend,
  skippedFallbackSide,
} from '../src/router.js';
import type { RuntimeEstimate } from '../src/runtime.js';

const manifest: ModelManifest = { name: 'm' };
const up = (ms?: number): RuntimeEstimate =>
  ms === undefined ? { available: true, reason: 'ok' } : { available: true, reason: 'ok', ms };
const down: RuntimeEstimate = { available: false, reason: 'no backend' };

describe('decidePlacement', () => {
  it('honours the -only policies whatever the estimates', () => {
    expect(decidePlacement('local-only', manifest, down, up(1)).order).toEqual(['local']);
    expect(decidePlacement('remote-only', manifest, up(1), down).order).toEqual(['remote']);
  });

  it('prefers a side but falls back to the other, or skips it when unavailable', () => {
    expect(decidePlacement('prefer-local', manifest, up(), up()).order).toEqual([
      'local',
      'remote',
    ]);
    expect(decidePlacement('prefer-remote', manifest, up(), up()).order).toEqual([
      'remote',
      'local',
    ]);
    expect(decidePlacement('prefer-remote', manifest, up(), down).order).toEqual([
      'local',
      'remote',
    ]);
    expect(decidePlacement('prefer-local', manifest, up(), down).order).toEqual(['local']);
  });

  it('auto: picks the lower measured estimate and keeps the other as fallback', () => {
    const d = decidePlacement('auto', manifest, up(40), up(300));
    expect(d.order).toEqual(['local', 'remote']);
    expect(d.reason).toContain('local ~40 ms');
    expect(decidePlacement('auto', manifest, up(900), up(300)).order).toEqual(['remote', 'local']);
  });

  it('auto: skips an unavailable side and says why', () => {
    const d = decidePlacement('auto', manifest, down, up(300));
    expect(d.order).toEqual(['remote']);
    expect(d.reason).toContain('no backend');
  });

  it('auto: a server that answered E_BUSY goes second until its retryAfterMs has passed, whatever else says', () => {
    const busy = { ...up(20), busyForMs: 800 };
    const d = decidePlacement('auto', manifest, up(300), busy);
    expect(d.order).toEqual(['local', 'remote']);
    expect(d.reason).toContain('E_BUSY');
    const hinted: ModelManifest = { name: 'm', placement: { prefer: 'remote' } };
    expect(decidePlacement('auto', hinted, up(), { ...up(), busyForMs: 800 }).order).toEqual([
      'local',
      'remote',
    ]);
    // Only auto: an explicit preference is the caller's.
    expect(decidePlacement('prefer-remote', manifest, up(300), busy).order[0]).toBe('remote');
    expect(decidePlacement('auto', manifest, up(300), up(20)).order[0]).toBe('remote');
  });

  it('auto: without estimates follows the manifest hint, else this device', () => {
    const hinted: ModelManifest = { name: 'm', placement: { prefer: 'remote' } };
    expect(decidePlacement('auto', hinted, up(), up()).order).toEqual(['remote', 'local']);
    expect(decidePlacement('auto', manifest, up(), up()).order).toEqual(['local', 'remote']);
  });

  it("auto: a side known to take longer than the other side's whole estimate goes second, before it is fully measured", () => {
    // A large model: its download alone (at the measured bandwidth) outlasts the server's answer.
    const tooBig: RuntimeEstimate = {
      available: true,
      reason: 'wasm, download ~4000 ms',
      atLeastMs: 4000,
    };
    const d = decidePlacement('auto', manifest, tooBig, up(300));
    expect(d.order).toEqual(['remote', 'local']);
    expect(d.reason).toBe(
      'auto: remote ~300 ms vs local at least ~4000 ms (wasm, download ~4000 ms)',
    );
    // Over a manifest hint too: the hint stands for "no measurements", and these are some.
    const hinted: ModelManifest = { name: 'm', placement: { prefer: 'local' } };
    expect(decidePlacement('auto', hinted, tooBig, up(300)).order).toEqual(['remote', 'local']);
    // A floor under the other side's estimate decides nothing.
    const small: RuntimeEstimate = { available: true, reason: 'wasm', atLeastMs: 100 };
    expect(decidePlacement('auto', manifest, small, up(300)).order).toEqual(['local', 'remote']);
    // Either way round.
    const coldServer: RuntimeEstimate = { available: true, reason: 'cold', atLeastMs: 9000 };
    expect(decidePlacement('auto', hinted, up(500), coldServer).order).toEqual(['local', 'remote']);
  });

  it('auto: says which side is not measured yet, not "no estimates" when one side has one', () => {
    expect(decidePlacement('auto', manifest, up(), up()).reason).toBe(
      'auto: no estimates yet, trying this device first',
    );
    expect(decidePlacement('auto', manifest, up(120), up()).reason).toBe(
      'auto: remote not measured yet; local ~120 ms, trying this device first',
    );
    const hinted: ModelManifest = { name: 'm', placement: { prefer: 'local' } };
    expect(decidePlacement('auto', hinted, up(), up(14)).reason).toBe(
      'auto: model prefers local (local not measured yet; remote ~14 ms)',
    );
  });

  it('always returns at least one side, each side at most once', () => {
    const estimate = fc.oneof(
      fc.constant(down),
      fc.option(fc.double({ min: 0, max: 1e6, noNaN: true }), { nil: undefined }).map(up),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...PLACEMENTS),
        estimate,
        estimate,
        (placement, local, remote) => {
          const { order, reason } = decidePlacement(placement, manifest, local, remote);
          expect(order.length).toBeGreaterThan(0);
          expect(new Set(order).size).toBe(order.length);
          expect(reason.length).toBeGreaterThan(0);
          if (!allowsFallback(placement)) expect(order).toHaveLength(1);
        },
      ),
    );
  });
});

describe('skippedFallbackSide', () => {
  const failed: RuntimeEstimate = { available: false, reason: 'unreachable', code: 'E_NETWORK' };

  it('counts a failed side only where the placement would have tried it first', () => {
    // prefer-*: the preferred side only; the other one was never needed.
    expect(skippedFallbackSide('prefer-remote', 'local', up(), failed)).toBe('remote');
    expect(skippedFallbackSide('prefer-local', 'remote', failed, up())).toBe('local');
    expect(skippedFallbackSide('prefer-local', 'local', up(), failed)).toBeUndefined();
    expect(skippedFallbackSide('prefer-remote', 'remote', failed, up())).toBeUndefined();
    // auto weighs both sides: a failed one decided the call.
    expect(skippedFallbackSide('auto', 'local', up(), failed)).toBe('remote');
    expect(skippedFallbackSide('auto', 'remote', failed, up())).toBe('local');
  });

  it('ignores a side that is merely unavailable, the side that ran, and the -only placements', () => {
    expect(skippedFallbackSide('prefer-remote', 'local', up(), down)).toBeUndefined();
    expect(skippedFallbackSide('auto', 'local', up(), down)).toBeUndefined();
    expect(skippedFallbackSide('auto', 'remote', up(), failed)).toBeUndefined();
    expect(skippedFallbackSide('local-only', 'local', up(), failed)).toBeUndefined();
    expect(skippedFallbackSide('remote-only', 'remote', failed, up())).toBeUndefined();
  });
});

describe('meetsBackend', () => {
  it('orders wasm below webgpu', () => {
    expect(meetsBackend('webgpu', 'wasm')).toBe(true);
    expect(meetsBackend('wasm', 'webgpu')).toBe(false);
    expect(meetsBackend('wasm', undefined)).toBe(true);
    expect(meetsBackend(undefined, undefined)).toBe(false);
  });
});

describe('FALLBACK_CODES', () => {
  it('falls back for failures of a side (server, queue, device), not of the call', () => {
    for (const code of [
      'E_NETWORK',
      'E_BUSY',
      'E_QUEUE_UNAVAILABLE',
      'E_NO_BACKEND',
      'E_ROUTE_NOT_FOUND',
    ] as const)
      expect(FALLBACK_CODES.has(code), code).toBe(true);
    for (const code of ['E_INPUT_SHAPE', 'E_CANCELLED', 'E_DEADLINE_EXCEEDED'] as const)
      expect(FALLBACK_CODES.has(code), code).toBe(false);
  });
});
