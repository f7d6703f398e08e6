// The dependency rules from DESIGN.md, checked on the real files: the contract package depends on
// nothing and touches neither DOM nor Node; client and server never import each other.

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  // A package may not have a test folder yet (git keeps no empty folders).
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|tsx|js|mjs)$/.test(entry) && !entry.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every module specifier a file imports or re-exports, statically or dynamically. */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  const patterns = [
    /\bfrom\s+['"]([^'"]+)['"]/g,
    /\bimport\s+['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of text.matchAll(pattern)) found.push(match[1]!);
  }
  return found;
}

interface PackageJson {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

function packageJson(name: string): PackageJson {
  return JSON.parse(
    readFileSync(join(ROOT, 'packages', name, 'package.json'), 'utf8'),
  ) as PackageJson;
}

describe('package boundaries', () => {
  it('@tandem/shared has no runtime dependencies', () => {
    const pkg = packageJson('shared');
    expect(pkg.dependencies ?? {}).toEqual({});
    expect(pkg.peerDependencies ?? {}).toEqual({});
    expect(pkg.optionalDependencies ?? {}).toEqual({});
  });

  it('@tandem/shared imports only its own files (no packages, no node: builtins)', () => {
    const files = sourceFiles(join(ROOT, 'packages/shared/src'));
    expect(files.length).toBeGreaterThan(3);
    for (const file of files) {
      for (const specifier of specifiers(file)) {
        expect(specifier, `${file} imports ${specifier}`).toMatch(/^\.\.?\//);
      }
    }
  });

  it('@tandem/shared compiles without DOM or Node ambient types', () => {
    const config = JSON.parse(
      readFileSync(join(ROOT, 'packages/shared/tsconfig.json'), 'utf8').replace(
        /^\s*\/\/.*$/gm,
        '',
      ),
    ) as { compilerOptions: { types?: string[]; lib?: string[] } };
    expect(config.compilerOptions.types).toEqual([]);
    expect(config.compilerOptions.lib ?? []).not.toContain('DOM');
  });

  for (const [from, to] of [
    ['client', 'server'],
    ['server', 'client'],
  ] as const) {
    it(`@tandem/${from} does not depend on or import @tandem/${to}`, () => {
      const pkg = packageJson(from);
      const declared = { ...pkg.dependencies, ...pkg.devDependencies, ...pkg.peerDependencies };
      expect(Object.keys(declared)).not.toContain(`@tandem/${to}`);
      for (const dir of ['src', 'test']) {
        for (const file of sourceFiles(join(ROOT, 'packages', from, dir))) {
          for (const specifier of specifiers(file)) {
            expect(specifier, `${file} imports ${specifier}`).not.toMatch(
              new RegExp(`^@tandem/${to}(/|$)|packages/${to}/|^\\.\\./\\.\\./${to}/`),
            );
          }
        }
      }
    });
  }
});
