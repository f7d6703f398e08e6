import { describe, expect, it } from 'vitest';
import { compareVersions } from '../src/model-version.js';

describe('compareVersions', () => {
  it('orders integers numerically and other names naturally', () => {
    expect(['10', '9', '1', '100'].sort(compareVersions)).toEqual(['1', '9', '10', '100']);
    expect(['v10', 'v2', 'v1'].sort(compareVersions)).toEqual(['v1', 'v2', 'v10']);
    expect(compareVersions('2024-05-01', '2024-12-01')).toBeLessThan(0);
  });
});
