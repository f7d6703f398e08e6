// One vitest run for the whole repo. Package imports resolve to their sources so tests never
// depend on a stale build.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const source = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@tandem/shared': source('./packages/shared/src/index.ts'),
      // Before '@tandem/client': an alias also matches as a path prefix.
      '@tandem/client/progress': source('./packages/client/src/progress-element.ts'),
      '@tandem/client': source('./packages/client/src/index.ts'),
      '@tandem/server': source('./packages/server/src/index.ts'),
      '@tandem/test-support': source('./test/support/src/index.ts'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'demo/test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
