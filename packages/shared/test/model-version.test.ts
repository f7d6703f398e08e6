import { describe, expect, it } from 'vitest';
import { compareVersions } from '../src/model-version.js';

describe('compareVersions', () => {
  it('orders integers numerically and other names naturally', () => {
    expect(['10', '9', '1', '100'].sort(compareVersions)).toEqual(['1', '9', '10', '100']);
    expect(['v10', 'v2', 'v1'].sort(compareVersions)).toEqual(['v1', 'v2', 'v10']);
    expect(compareVersions('2024-05-01', '2024-12-01')).toBeLessThan(0);
  });

  it('gives names that read as the same number one order, whichever comes first', () => {
    expect(['10', '010'].sort(compareVersions)).toEqual(['010', '10']);
    expect(['010', '10'].sort(compareVersions)).toEqual(['010', '10']);
    expect(Math.sign(compareVersions('v01', 'v1'))).toBe(-Math.sign(compareVersions('v1', 'v01')));
    expect(compareVersions('v01', 'v1')).not.toBe(0);
    expect(compareVersions('7', '7')).toBe(0);
  });
});
