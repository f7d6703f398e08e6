// The call options a call's entry refuses (E_INVALID_ARGUMENT) and those it lets through: what the
// protocol carries, so a server never sees a frame it must refuse as malformed.

import { describe, expect, it } from 'vitest';
import { PLACEMENTS } from '@tandem/shared';
import {
  checkModelName,
  checkPlacement,
  checkRunOptions,
  checkWarmWhere,
} from '../src/run-options.js';

const codeOf = (call: () => void): string | undefined => {
  try {
    call();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
};

describe('checkRunOptions', () => {
  it('lets through every value the protocol carries', () => {
    expect(codeOf(() => checkRunOptions({}))).toBeUndefined();
    for (const placement of PLACEMENTS)
      expect(codeOf(() => checkPlacement(placement))).toBeUndefined();
    for (const priority of [0, 5, 10])
      expect(codeOf(() => checkRunOptions({ priority }))).toBeUndefined();
    for (const deadlineMs of [0, 0.5, 30_000, Number.MAX_SAFE_INTEGER])
      expect(codeOf(() => checkRunOptions({ deadlineMs }))).toBeUndefined();
    for (const outputs of [[], ['y'], ['a'.repeat(256)], Array<string>(1024).fill('y')])
      expect(codeOf(() => checkRunOptions({ outputs }))).toBeUndefined();
  });

  it('refuses anything else with E_INVALID_ARGUMENT', () => {
    const bad: Record<string, unknown>[] = [
      { placement: 'anywhere' },
      { placement: null },
      { priority: -1 },
      { priority: 11 },
      { priority: 2.5 },
      { priority: '5' },
      { priority: Number.NaN },
      { deadlineMs: -1 },
      { deadlineMs: Number.NaN },
      { deadlineMs: Number.POSITIVE_INFINITY },
      { deadlineMs: '100' },
      { outputs: 'y' },
      { outputs: [''] },
      { outputs: [3] },
      { outputs: ['a'.repeat(257)] },
      { outputs: Array<string>(1025).fill('y') },
    ];
    for (const options of bad)
      expect(codeOf(() => checkRunOptions(options))).toBe('E_INVALID_ARGUMENT');
  });
});

describe('checkWarmWhere', () => {
  it('takes local, remote, both or nothing, and refuses the rest with E_INVALID_ARGUMENT', () => {
    for (const where of [undefined, 'local', 'remote', 'both'])
      expect(codeOf(() => checkWarmWhere(where))).toBeUndefined();
    for (const where of ['server', '', 1])
      expect(codeOf(() => checkWarmWhere(where))).toBe('E_INVALID_ARGUMENT');
  });
});

describe('checkModelName', () => {
  it('takes names of 1 to 256 characters and refuses anything else with E_INVALID_ARGUMENT', () => {
    for (const name of ['m', 'paddleocr-det', 'x'.repeat(256)])
      expect(codeOf(() => checkModelName(name))).toBeUndefined();
    for (const name of ['', 'x'.repeat(257), undefined, 7])
      expect(codeOf(() => checkModelName(name))).toBe('E_INVALID_ARGUMENT');
  });
});
