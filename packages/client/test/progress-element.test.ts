// The element module in Node: importing it (the '@tandem/client/progress' subpath) must not throw
// where there is no DOM, and the main entry must not import it. Its behaviour in a real browser is
// tested in test/progress-element-browser.test.ts.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('progress-element in Node', () => {
  it('imports without a DOM and defines nothing', async () => {
    expect(typeof (globalThis as { HTMLElement?: unknown }).HTMLElement).toBe('undefined');
    const module = await import('../src/progress-element.js');
    expect(module.defineTandemProgress()).toBe(module.TandemProgressElement);
    expect(module.TANDEM_PROGRESS_TAG).toBe('tandem-progress');
  });

  it('is kept out of the main entry', () => {
    const index = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8');
    expect(index).not.toMatch(/progress-element/);
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, { types: string; import: string }>;
    };
    expect(Object.keys(pkg.exports['./progress']!)).toEqual(['types', 'import']);
    expect(pkg.exports['./progress']!.import).toBe('./dist/progress-element.js');
  });
});
