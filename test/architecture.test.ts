// The dependency rules from DESIGN.md, checked on the real files: the contract package depends on
// nothing and touches neither DOM nor Node; client and server never import each other. And the
// house rule that every export is documented: what each package's index exports, and every
// public member of the types it exports, carries JSDoc (what an IDE shows on hover).

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
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

/**
 * What a package's index exports without JSDoc: the export itself, or a public member of an
 * exported interface, class or object type. A class member that implements a documented interface
 * member inherits its documentation (as IDEs show it); a message's `type` tag needs none.
 */
function undocumentedExports(name: string): string[] {
  const packages = join(ROOT, 'packages') + '/';
  const index = join(packages, name, 'src/index.ts');
  const program = ts.createProgram([index], {
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
    skipLibCheck: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const own = (declaration: ts.Declaration): boolean =>
    declaration.getSourceFile().fileName.startsWith(packages);
  const where = (declaration: ts.Declaration): string => {
    const file = declaration.getSourceFile();
    const line = file.getLineAndCharacterOfPosition(declaration.getStart()).line + 1;
    return `${file.fileName.slice(ROOT.length)}:${line}`;
  };
  const documented = (symbol: ts.Symbol): boolean =>
    ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim() !== '';
  const isTag = (declaration: ts.Declaration): boolean =>
    ts.isPropertySignature(declaration) &&
    declaration.name.getText() === 'type' &&
    declaration.type !== undefined &&
    ts.isLiteralTypeNode(declaration.type);
  const hidden = ts.ModifierFlags.Private | ts.ModifierFlags.Protected;

  const missing: string[] = [];
  const module = checker.getSymbolAtLocation(program.getSourceFile(index)!)!;
  for (const exported of checker.getExportsOfModule(module)) {
    const symbol =
      exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declaration = symbol.declarations?.[0];
    if (declaration === undefined || !own(declaration)) continue;
    if (!documented(symbol)) missing.push(`${where(declaration)} ${symbol.name}`);
    const shape = ts.SymbolFlags.Interface | ts.SymbolFlags.Class | ts.SymbolFlags.TypeAlias;
    if ((symbol.flags & shape) === 0) continue;
    const type = checker.getDeclaredTypeOfSymbol(symbol);
    if ((type.flags & ts.TypeFlags.Object) === 0 && !type.isIntersection()) continue;
    for (const member of checker.getPropertiesOfType(type)) {
      const at = member.declarations?.[0];
      // Well-known symbols (Symbol.toStringTag) are the language's, documented there.
      if (at === undefined || !own(at) || isTag(at) || /^(#|__@)/.test(member.name)) continue;
      if (ts.getCombinedModifierFlags(at) & hidden) continue;
      if (!documented(member)) missing.push(`${where(at)} ${symbol.name}.${member.name}`);
    }
  }
  return missing;
}

describe('every export is documented', () => {
  for (const name of ['shared', 'client', 'server']) {
    it(`@tandem/${name}: each export and each public member of an exported type has JSDoc`, () => {
      expect(undocumentedExports(name)).toEqual([]);
    }, 60_000);
  }
});
